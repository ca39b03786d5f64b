/* store_put.c - bench: upload files through thumbfs's store client (s3/),
 * as the job runners do: THREADS at once, each file by s3_put_file (single
 * PUT, or multipart past the threshold, read from the file as it is sent).
 * Prints seconds, bytes and the peak resident memory.
 * Usage: store_put ENDPOINT BUCKET THREADS FILE... (keys: the file names) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "s3/s3.h"

static struct s3_store *st;
static char **files;
static int n_files;
static atomic_int next;
static atomic_int failed;

static void *put_all(void *arg)
{
	char err[512];
	(void)arg;
	for (int i; (i = atomic_fetch_add(&next, 1)) < n_files;) {
		const char *key = strrchr(files[i], '/');
		key = key ? key + 1 : files[i];
		if (s3_put_file(st, key, files[i], "image/jpeg", err,
				sizeof(err))) {
			fprintf(stderr, "%s\n", err);
			atomic_fetch_add(&failed, 1);
		}
	}
	return NULL;
}

/* This process's peak resident memory: VmHWM, not getrusage(), whose
 * ru_maxrss keeps the parent's size from before the exec. */
static long peak_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	char err[512], url[300];
	if (argc < 5) {
		fprintf(stderr, "usage: %s ENDPOINT BUCKET THREADS FILE...\n",
			argv[0]);
		return 2;
	}
	snprintf(url, sizeof(url), "s3://%s", argv[2]);
	struct s3_config cfg = {.url = url,
				.endpoint = argv[1],
				/* NULL: AWS_ACCESS_KEY_ID and
				 * AWS_SECRET_ACCESS_KEY */
				.access_key_id = NULL,
				.secret_access_key = NULL,
				.path_style = true};
	st = s3_open(&cfg, err, sizeof(err));
	if (!st) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	int threads = atoi(argv[3]);
	files = argv + 4;
	n_files = argc - 4;
	long long bytes = 0;
	for (int i = 0; i < n_files; i++) {
		struct stat sb;
		if (stat(files[i], &sb) == 0)
			bytes += sb.st_size;
	}
	pthread_t t[64];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < threads && i < 64; i++)
		pthread_create(&t[i], NULL, put_all, NULL);
	for (int i = 0; i < threads && i < 64; i++)
		pthread_join(t[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("seconds %.3f bytes %lld files %d failed %d maxrss_kb %ld\n",
	       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, bytes,
	       n_files, atomic_load(&failed), peak_kb());
	s3_free(st);
	return failed ? 1 : 0;
}
