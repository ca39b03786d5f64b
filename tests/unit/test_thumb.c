/* test_thumb.c - sizes as Pillow gives them, the resampler's properties,
 * decode and encode round trips, and bad input refused cleanly. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "tests/unit/pngs.h"
#include "thumb/thumb.h"
#include "thumb/worker.h"

/* {w, h, Pillow's thumbnail((300, 300)) w, h}, from Debian's Pillow 9.4. */
static const int fits[][4] = {
    {4032, 3024, 300, 225}, {3024, 4032, 225, 300}, {1000, 1, 300, 1},
    {1, 1000, 1, 300},	    {300, 300, 300, 300},   {200, 100, 200, 100},
    {301, 300, 300, 299},   {5640, 3172, 300, 169}, {3840, 2160, 300, 169},
    {1920, 1080, 300, 169}, {1234, 567, 300, 138},  {999, 333, 300, 100},
    {640, 480, 300, 225},   {2000, 1999, 300, 300}, {7, 1500, 1, 300},
    {1500, 7, 300, 2},
};

static void test_fit(void)
{
	for (size_t i = 0; i < sizeof(fits) / sizeof(fits[0]); i++) {
		int w, h;
		thumb_fit(fits[i][0], fits[i][1], 300, 300, &w, &h);
		CHECK_INT(w, fits[i][2]);
		CHECK_INT(h, fits[i][3]);
	}
}

static struct thumb_image make_image(int w, int h, int ch)
{
	struct thumb_image img = {.width = w,
				  .height = h,
				  .channels = ch,
				  .pixels = malloc((size_t)w * h * ch),
				  .orientation = 1};
	return img;
}

static void test_flat_stays_flat(void)
{
	for (int ch = 1; ch <= 4; ch++) {
		struct thumb_image src = make_image(1000, 700, ch), dst;
		for (size_t i = 0; i < (size_t)1000 * 700 * ch; i++)
			src.pixels[i] = (unsigned char)(i % ch == 0 ? 77 : 200);
		CHECK_INT(thumb_resample(&src, 300, 210, &dst), 0);
		int bad = 0;
		for (size_t i = 0; i < (size_t)300 * 210 * ch; i++)
			bad += dst.pixels[i] != (i % ch == 0 ? 77 : 200);
		CHECK_INT(bad, 0); /* exactly flat, edges included */
		thumb_image_release(&src);
		thumb_image_release(&dst);
	}
}

static void test_mean_preserved(void)
{
	struct thumb_image src = make_image(997, 613, 3), dst;
	uint32_t x = 12345;
	double in = 0, out = 0;
	for (size_t i = 0; i < (size_t)997 * 613 * 3; i++) {
		x = x * 1103515245u + 12345u;
		src.pixels[i] = (unsigned char)(x >> 24);
		in += src.pixels[i];
	}
	CHECK_INT(thumb_resample(&src, 300, 184, &dst), 0);
	for (size_t i = 0; i < (size_t)300 * 184 * 3; i++)
		out += dst.pixels[i];
	in /= 997.0 * 613 * 3;
	out /= 300.0 * 184 * 3;
	CHECK(fabs(in - out) < 0.5);
	thumb_image_release(&src);
	thumb_image_release(&dst);
}

/* A gradient: no dark or light border, every pixel near the ideal. */
static void test_no_edge(void)
{
	struct thumb_image src = make_image(900, 900, 1), dst;
	for (int y = 0; y < 900; y++)
		for (int xx = 0; xx < 900; xx++)
			src.pixels[y * 900 + xx] =
			    (unsigned char)(xx * 255 / 899);
	CHECK_INT(thumb_resample(&src, 300, 300, &dst), 0);
	int worst = 0;
	for (int y = 0; y < 300; y++)
		for (int xx = 0; xx < 300; xx++) {
			double ideal = ((xx + 0.5) * 3 - 0.5) * 255 / 899;
			int d = (int)fabs(dst.pixels[y * 300 + xx] - ideal);
			if (d > worst)
				worst = d;
		}
	CHECK(worst <= 2);
	thumb_image_release(&src);
	thumb_image_release(&dst);
}

static void test_roundtrip(enum thumb_format fmt, int ch)
{
	struct thumb_image src = make_image(640, 480, ch);
	struct thumb_opts opts;
	struct thumb_result res;
	unsigned char *enc;
	size_t len;
	char err[256];
	for (int y = 0; y < 480; y++)
		for (int xx = 0; xx < 640; xx++)
			for (int c = 0; c < ch; c++)
				src.pixels[(y * 640 + xx) * ch + c] =
				    (unsigned char)(c == 3 ? 255
							   : (xx + y) / 5);
	CHECK_INT(thumb_encode(&src, fmt, 95, &enc, &len, err, sizeof(err)), 0);
	CHECK(thumb_detect(enc, len) == fmt);
	thumb_opts_init(&opts);
	CHECK_INT(thumb_make(enc, len, &opts, &res, err, sizeof(err)), 0);
	CHECK_INT(res.width, 640);
	CHECK_INT(res.height, 480);
	CHECK_INT(res.thumb_width, 300);
	CHECK_INT(res.thumb_height, 225);
	CHECK(res.thumb_format == fmt);
	CHECK(thumb_detect(res.data, res.size) == fmt);
	/* and the thumbnail decodes to its stated size */
	struct thumb_image back;
	int w, h;
	CHECK_INT(thumb_decode(res.data, res.size, 0, 0, 0, &back, &w, &h, err,
			       sizeof(err)),
		  0);
	CHECK_INT(back.width, 300);
	CHECK_INT(back.height, 225);
	thumb_image_release(&back);
	thumb_result_release(&res);
	free(enc);
	thumb_image_release(&src);
}

static void test_bad_input(void)
{
	struct thumb_opts opts;
	struct thumb_result res;
	char err[256];
	struct thumb_image src = make_image(400, 400, 3);
	unsigned char *enc;
	size_t len;

	thumb_opts_init(&opts);
	CHECK_INT(thumb_make((const unsigned char *)"", 0, &opts, &res, err,
			     sizeof(err)),
		  -EINVAL);
	CHECK_INT(thumb_make((const unsigned char *)"hello, world", 12, &opts,
			     &res, err, sizeof(err)),
		  -ENOTSUP);
	memset(src.pixels, 128, (size_t)400 * 400 * 3);
	CHECK_INT(thumb_encode(&src, THUMB_FMT_JPEG, 85, &enc, &len, err,
			       sizeof(err)),
		  0);
	/* truncated: libjpeg fills the rest; a header alone is corrupt */
	CHECK_INT(thumb_make(enc, 20, &opts, &res, err, sizeof(err)), -EINVAL);
	/* cut in the middle of the scan: refused, not half gray */
	CHECK_INT(thumb_make(enc, len / 2, &opts, &res, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, "Premature end") != NULL);
	CHECK(err[0] != '\0');
	opts.max_pixels = 1000;
	CHECK_INT(thumb_make(enc, len, &opts, &res, err, sizeof(err)), -EFBIG);
	CHECK(strstr(err, "400x400") != NULL);
	free(enc);
	CHECK_INT(
	    thumb_encode(&src, THUMB_FMT_PNG, 85, &enc, &len, err, sizeof(err)),
	    0);
	thumb_opts_init(&opts);
	CHECK_INT(thumb_make(enc, len / 2, &opts, &res, err, sizeof(err)),
		  -EINVAL);
	free(enc);
	thumb_image_release(&src);
}

/* thumb_make_fd over a file gives what thumb_make gives over its bytes:
 * the same return, the same thumbnail, byte for byte. */
static void check_same_from_a_file(const unsigned char *buf, size_t len,
				   const struct thumb_opts *opts)
{
	char path[] = "/tmp/thumbfs-thumb-XXXXXX", err[256], err2[256];
	struct thumb_result a, b;
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	unlink(path);
	CHECK(write(fd, buf, len) == (ssize_t)len);
	/* where the file's offset is does not matter */
	int ra = thumb_make(buf, len, opts, &a, err, sizeof(err));
	int rb = thumb_make_fd(fd, opts, &b, err2, sizeof(err2));
	CHECK_INT(rb, ra);
	CHECK(!strcmp(err, err2) || ra == 0);
	CHECK(a.format == b.format && a.width == b.width &&
	      a.height == b.height && a.size == b.size &&
	      (!a.size || !memcmp(a.data, b.data, a.size)));
	thumb_result_release(&a);
	thumb_result_release(&b);
	close(fd);
}

static void test_from_a_file(void)
{
	struct thumb_opts opts;
	struct thumb_image src = make_image(700, 500, 3);
	unsigned char *enc;
	size_t len;
	char err[256];
	thumb_opts_init(&opts);
	for (int i = 0; i < 700 * 500 * 3; i++)
		src.pixels[i] = (unsigned char)(i * 7 % 251);
	for (int f = 0; f < 2; f++) {
		enum thumb_format fmt = f ? THUMB_FMT_PNG : THUMB_FMT_JPEG;
		CHECK_INT(
		    thumb_encode(&src, fmt, 90, &enc, &len, err, sizeof(err)),
		    0);
		check_same_from_a_file(enc, len, &opts);
		check_same_from_a_file(enc, len / 2, &opts); /* truncated */
		check_same_from_a_file(enc, 20, &opts);
		opts.max_bytes = len - 1;
		check_same_from_a_file(enc, len, &opts);
		thumb_opts_init(&opts);
		free(enc);
	}
	check_same_from_a_file((const unsigned char *)"", 0, &opts);
	check_same_from_a_file((const unsigned char *)"hello, world", 12,
			       &opts);
	thumb_image_release(&src);
}

/* The PNG set (tests/unit/pngs.c): every valid file thumbnails to the
 * size the fit gives, every broken one is refused with a reason. */
static void test_pngs(void)
{
	struct png_case *cases;
	size_t n;
	struct thumb_opts opts;
	struct thumb_result res;
	char err[256];
	int broken = 0, valid = 0;
	thumb_opts_init(&opts);
	CHECK_INT(pngs_make(&cases, &n), 0);
	for (size_t i = 0; i < n; i++) {
		struct png_case *c = &cases[i];
		err[0] = '\0';
		int ret =
		    thumb_make(c->data, c->len, &opts, &res, err, sizeof(err));
		if (c->valid) {
			if (ret)
				fprintf(stderr, "%s: %s\n", c->name, err);
			CHECK_INT(ret, 0);
			if (!ret) {
				CHECK(res.thumb_width >= 1 &&
				      res.thumb_width <= 300);
				CHECK(res.thumb_height >= 1 &&
				      res.thumb_height <= 300);
				thumb_result_release(&res);
			}
			valid++;
			continue;
		}
		if (!ret) {
			fprintf(stderr, "%s: accepted\n", c->name);
			thumb_result_release(&res);
		}
		CHECK(ret == -EINVAL || ret == -ENOTSUP);
		CHECK(err[0] != '\0');
		broken++;
	}
	CHECK(valid >= 40);
	CHECK_INT(broken, 13);
	pngs_free(cases, n);
}

/* Bit flips anywhere in a JPEG: an image or a clear error, never a crash
 * (the sanitizer build runs this too). */
static void test_bit_flips(void)
{
	struct thumb_image src = make_image(320, 240, 3);
	struct thumb_opts opts;
	struct thumb_result res;
	unsigned char *enc;
	size_t len;
	char err[256];
	uint32_t x = 7;
	for (size_t i = 0; i < (size_t)320 * 240 * 3; i++)
		src.pixels[i] = (unsigned char)(i * 7 / 3);
	CHECK_INT(thumb_encode(&src, THUMB_FMT_JPEG, 90, &enc, &len, err,
			       sizeof(err)),
		  0);
	thumb_opts_init(&opts);
	unsigned char *copy = malloc(len);
	int bad = 0;
	for (int n = 0; n < 300; n++) {
		memcpy(copy, enc, len);
		for (int k = 0; k < 1 + n % 4; k++) {
			x = x * 1103515245u + 12345u;
			copy[(x >> 8) % len] ^= (unsigned char)(1u << (x % 8));
		}
		int ret = thumb_make(copy, len, &opts, &res, err, sizeof(err));
		if (ret == 0)
			thumb_result_release(&res);
		else if (ret != -EINVAL && ret != -ENOTSUP && ret != -EFBIG)
			bad++;
	}
	CHECK_INT(bad, 0);
	free(copy);
	free(enc);
	thumb_image_release(&src);
}

/* The format comes from the bytes, never from a name. */
static void test_detect(void)
{
	CHECK(thumb_detect((const unsigned char *)"\xff\xd8\xff\xe0", 4) ==
	      THUMB_FMT_JPEG);
	CHECK(thumb_detect((const unsigned char *)"\x89PNG\r\n\x1a\n", 8) ==
	      THUMB_FMT_PNG);
	CHECK(thumb_detect((const unsigned char *)"RIFF\0\0\0\0WEBPVP8 ", 16) ==
	      THUMB_FMT_WEBP);
	CHECK(thumb_detect((const unsigned char *)"II*\0", 4) ==
	      THUMB_FMT_TIFF);
	CHECK(thumb_detect((const unsigned char *)"MM\0*", 4) ==
	      THUMB_FMT_TIFF);
	CHECK(thumb_detect((const unsigned char *)"GIF89a", 6) ==
	      THUMB_FMT_GIF);
	CHECK(thumb_detect((const unsigned char *)"\0\0\0\x18"
						  "ftypheic",
			   12) == THUMB_FMT_HEIF);
	static const struct {
		const char *head;
		size_t len;
		enum thumb_format fmt;
	} videos[] = {
	    {"\0\0\0\x18"
	     "ftypisom",
	     12, THUMB_FMT_MP4},
	    {"\0\0\0\x14"
	     "ftypqt  ",
	     12, THUMB_FMT_MOV},
	    {"\0\0\0\x08"
	     "wide",
	     8, THUMB_FMT_MOV},
	    {"\x1a\x45\xdf\xa3"
	     "\x42\x82\x84webm",
	     12, THUMB_FMT_WEBM},
	    {"\x1a\x45\xdf\xa3"
	     "\x42\x82\x88matroska",
	     16, THUMB_FMT_MKV},
	    {"RIFF\0\0\0\0AVI LIST", 16, THUMB_FMT_AVI},
	};
	for (size_t i = 0; i < sizeof(videos) / sizeof(videos[0]); i++)
		CHECK(thumb_detect((const unsigned char *)videos[i].head,
				   videos[i].len) == videos[i].fmt);
	unsigned char dicm[THUMB_HEAD] = {0};
	memcpy(dicm + 128, "DICM", 4);
	CHECK(thumb_detect(dicm, sizeof(dicm)) == THUMB_FMT_DICOM);
	CHECK(thumb_detect(dicm, 131) == THUMB_FMT_UNKNOWN);
	CHECK(!strcmp(thumb_mime_type(THUMB_FMT_DICOM), "application/dicom"));
	CHECK(thumb_is_video(THUMB_FMT_MKV) && !thumb_is_video(THUMB_FMT_PDF));
	CHECK(!strcmp(thumb_mime_type(THUMB_FMT_AVI), "video/x-msvideo"));
	CHECK(thumb_detect((const unsigned char *)"GIF", 3) ==
	      THUMB_FMT_UNKNOWN);
	CHECK(!strcmp(thumb_mime_type(THUMB_FMT_HEIF), "image/heic"));
}

/* A confined process (a worker's filter) may read a file but not write
 * or make one, start a program or open a socket; checked in a child,
 * which says by its exit status which of these failed. */
static void test_confined(void)
{
	char path[] = "/tmp/thumbfs-confine-XXXXXX";
	int tmp = mkstemp(path);
	CHECK(tmp >= 0);
	close(tmp);
	pid_t pid = fork();
	if (pid == 0) {
		char err[256];
		if (thumb_worker_confine(err, sizeof(err)))
			_exit(10);
		int rd = open(path, O_RDONLY);
		if (rd < 0)
			_exit(11);
		close(rd);
		if (open(path, O_WRONLY) >= 0 || errno != EPERM)
			_exit(12);
		if (open("/tmp/thumbfs-confine-new", O_RDONLY | O_CREAT,
			 0600) >= 0 ||
		    errno != EPERM)
			_exit(13);
		char *argv[] = {(char *)"true", NULL};
		execv("/bin/true", argv);
		if (errno != EPERM)
			_exit(14);
		if (socket(AF_INET, SOCK_STREAM, 0) >= 0 || errno != EPERM)
			_exit(15);
		if (unlink(path) == 0 || errno != EPERM)
			_exit(16);
		_exit(0);
	}
	int status = -1;
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fprintf(stderr, "confined child: status %d\n", status);
	CHECK(access(path, F_OK) == 0); /* not removed */
	unlink(path);
}

int main(void)
{
	test_confined();
	test_detect();
	test_fit();
	test_flat_stays_flat();
	test_mean_preserved();
	test_no_edge();
	test_roundtrip(THUMB_FMT_JPEG, 3);
	test_roundtrip(THUMB_FMT_JPEG, 1);
	test_roundtrip(THUMB_FMT_PNG, 4);
	test_roundtrip(THUMB_FMT_PNG, 2);
	test_bad_input();
	test_from_a_file();
	test_pngs();
	test_bit_flips();
	return check_report("test_thumb");
}
