/* main.c - thumbfs-thumb: the thumbnail engine as a command, for users and
 * for bench/thumb, without a mount.
 *
 *   thumbfs-thumb [-s WxH] [-q Q] [--png] [--isolated] [-v] IN OUT
 *   thumbfs-thumb [-s WxH] [-q Q] [--png] [--isolated] [-v] -d DIR IN...
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "thumb/thumb.h"
#include "thumb/worker.h"

static int usage(void)
{
	fprintf(stderr,
		"usage: thumbfs-thumb [-s WxH] [-q QUALITY] [--png] "
		"[--isolated] [-v] "
		"IN OUT\n"
		"       thumbfs-thumb [-s WxH] [-q QUALITY] [--png] "
		"[--isolated] [-v] "
		"-d DIR IN...\n"
		"Fit IN in WxH (default 300x300) with Lanczos, as the web "
		"app's Pillow code,\nand write it as JPEG (quality 85) or PNG "
		"as the original is; --png: always\nlossless PNG. With -d, "
		"each IN becomes DIR/STEM_thumb.EXT. --isolated: decoded in a "
		"worker process,\nas the mount does. -v: print each IN's type, "
		"size, its thumbnail's and a video's\nposter frame's time.\n");
	return 2;
}

static bool isolated, verbose;

static int one(const struct thumb_opts *opts, const char *in, const char *out,
	       const char *dir)
{
	struct thumb_result res;
	char err[512], path[4096];
	/* read from the file as the mount reads a spool file: JPEG, PNG
	 * and TIFF as they decode, the others mapped */
	int fd = open(in, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "thumbfs-thumb: cannot read '%s': %s\n", in,
			strerror(errno));
		return 1;
	}
	int ret = isolated ? thumb_worker_make(fd, opts, &res, err, sizeof(err))
			   : thumb_make_fd(fd, opts, &res, err, sizeof(err));
	close(fd);
	if (ret) {
		fprintf(stderr, "thumbfs-thumb: '%s': %s\n", in, err);
		return 1;
	}
	if (verbose) {
		printf("%s: %s %dx%d, thumbnail %dx%d", in, res.mime_type,
		       res.width, res.height, res.thumb_width,
		       res.thumb_height);
		if (res.frame_ms >= 0)
			printf(", frame at %lld.%03lld s", res.frame_ms / 1000,
			       res.frame_ms % 1000);
		printf("\n");
	}
	if (dir) {
		const char *base = strrchr(in, '/');
		base = base ? base + 1 : in;
		const char *dot = strrchr(base, '.');
		int stem =
		    dot && dot != base ? (int)(dot - base) : (int)strlen(base);
		snprintf(path, sizeof(path), "%s/%.*s_thumb%s", dir, stem, base,
			 res.thumb_ext);
		out = path;
	}
	FILE *f = fopen(out, "wb");
	if (!f || fwrite(res.data, 1, res.size, f) != res.size || fclose(f)) {
		fprintf(stderr, "thumbfs-thumb: cannot write '%s': %s\n", out,
			strerror(errno));
		thumb_result_release(&res);
		return 1;
	}
	thumb_result_release(&res);
	return 0;
}

int main(int argc, char **argv)
{
	struct thumb_opts opts;
	const char *dir = NULL;
	int i = 1, failed = 0;
	if (argc > 1 && !strcmp(argv[1], THUMB_WORKER_ARG))
		return thumb_worker_main(argc, argv);
	thumb_opts_init(&opts);
	/* Keep freed image buffers in the heap: each image otherwise maps
	 * fresh pages and faults them in again. */
	mallopt(M_MMAP_THRESHOLD, 256 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--png")) {
			opts.out_format = THUMB_FMT_PNG;
		} else if (!strcmp(argv[i], "--isolated")) {
			isolated = true;
		} else if (!strcmp(argv[i], "-v")) {
			verbose = true;
		} else if (!strcmp(argv[i], "-s") && i + 1 < argc) {
			if (sscanf(argv[++i], "%dx%d", &opts.max_width,
				   &opts.max_height) != 2 ||
			    opts.max_width < 1 || opts.max_height < 1)
				return usage();
		} else if (!strcmp(argv[i], "-q") && i + 1 < argc) {
			opts.jpeg_quality = atoi(argv[++i]);
			if (opts.jpeg_quality < 1 || opts.jpeg_quality > 100)
				return usage();
		} else if (!strcmp(argv[i], "-d") && i + 1 < argc) {
			dir = argv[++i];
		} else {
			return usage();
		}
	}
	if (dir) {
		if (i >= argc)
			return usage();
		for (; i < argc; i++)
			failed += one(&opts, argv[i], NULL, dir);
		return failed ? 1 : 0;
	}
	if (argc - i != 2)
		return usage();
	return one(&opts, argv[i], argv[i + 1], NULL);
}
