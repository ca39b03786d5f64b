/* test_store.c - the file:// store through the same interface as S3. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3/s3.h"
#include "tests/unit/check.h"

int main(void)
{
	char dir[] = "/tmp/thumbfs-store-XXXXXX", url[256], path[512];
	char err[512];
	size_t len;
	CHECK(mkdtemp(dir) != NULL);
	snprintf(url, sizeof(url), "file://%s/objects", dir);
	struct s3_config cfg = {.url = url};
	struct s3_store *st = s3_open(&cfg, err, sizeof(err));
	CHECK(st != NULL);
	if (!st)
		return check_report("test_store");
	CHECK_INT(s3_check(st, err, sizeof(err)), 0);
	CHECK(!strcmp(s3_bucket(st), url));

	CHECK_INT(s3_put_buf(st, "patients/P1/2025-11-10/a b.jpg", "hello", 5,
			     "image/jpeg", err, sizeof(err)),
		  0);
	snprintf(path, sizeof(path),
		 "%s/objects/patients/P1/2025-11-10/a b.jpg", dir);
	unsigned char *got = check_slurp(path, &len);
	CHECK(got && len == 5 && !memcmp(got, "hello", 5));
	free(got);

	/* put_file and get_file copy whole files */
	snprintf(path, sizeof(path), "%s/src", dir);
	FILE *f = fopen(path, "w");
	for (int i = 0; f && i < 100000; i++)
		fputc(i % 251, f);
	if (f)
		fclose(f);
	CHECK_INT(s3_put_file(st, "k/big", path, "application/octet-stream",
			      err, sizeof(err)),
		  0);
	snprintf(path, sizeof(path), "%s/back", dir);
	CHECK_INT(s3_get_file(st, "k/big", path, err, sizeof(err)), 0);
	got = check_slurp(path, &len);
	CHECK(got && len == 100000 && got[99999] == 99999 % 251);
	free(got);

	/* ranged reads: a slice, one that runs past the end, one past it */
	unsigned char part[300];
	size_t n = 0;
	CHECK_INT(
	    s3_get_range(st, "k/big", 1000, 300, part, &n, err, sizeof(err)),
	    0);
	CHECK(n == 300 && part[0] == 1000 % 251 && part[299] == 1299 % 251);
	CHECK_INT(
	    s3_get_range(st, "k/big", 99900, 300, part, &n, err, sizeof(err)),
	    0);
	CHECK(n == 100 && part[99] == 99999 % 251);
	CHECK_INT(
	    s3_get_range(st, "k/big", 100000, 300, part, &n, err, sizeof(err)),
	    0);
	CHECK(n == 0);
	CHECK_INT(
	    s3_get_range(st, "k/none", 0, 300, part, &n, err, sizeof(err)),
	    -ENOENT);

	/* copies: whole, of a missing object, to a key that would escape;
	 * a name of 255 bytes is stored (its temporary name is short) */
	char long_key[300];
	snprintf(long_key, sizeof(long_key), "k/%0255d", 7);
	CHECK_INT(s3_copy(st, "k/big", long_key, err, sizeof(err)), 0);
	CHECK_INT(
	    s3_get_range(st, long_key, 99999, 10, part, &n, err, sizeof(err)),
	    0);
	CHECK(n == 1 && part[0] == 99999 % 251);
	CHECK_INT(s3_copy(st, "k/none", "k/new", err, sizeof(err)), -ENOENT);
	CHECK_INT(s3_copy(st, "k/big", "../escape", err, sizeof(err)), -EINVAL);
	CHECK_INT(s3_delete(st, long_key, err, sizeof(err)), 0);

	/* a missing object, deletes, and keys that would escape */
	CHECK_INT(s3_get_file(st, "k/none", path, err, sizeof(err)), -ENOENT);
	CHECK_INT(s3_delete(st, "k/big", err, sizeof(err)), 0);
	CHECK_INT(s3_delete(st, "k/big", err, sizeof(err)), 0);
	CHECK_INT(s3_put_buf(st, "../escape", "x", 1, NULL, err, sizeof(err)),
		  -EINVAL);
	CHECK_INT(
	    s3_put_buf(st, "a/../../escape", "x", 1, NULL, err, sizeof(err)),
	    -EINVAL);
	CHECK_INT(s3_put_buf(st, "/abs", "x", 1, NULL, err, sizeof(err)),
		  -EINVAL);
	CHECK_INT(s3_put_buf(st, "a//b", "x", 1, NULL, err, sizeof(err)),
		  -EINVAL);
	s3_free(st);

	/* bad URLs and missing credentials are clear errors */
	struct s3_config bad = {.url = "ftp://x"};
	CHECK(s3_open(&bad, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "ftp://x") != NULL);
	bad.url = "file://relative";
	CHECK(s3_open(&bad, err, sizeof(err)) == NULL);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	bad.url = "s3://bucket";
	CHECK(s3_open(&bad, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "credentials") != NULL);
	struct s3_config s3 = {.url = "s3://bucket",
			       .endpoint = "http://127.0.0.1:1",
			       .access_key_id = "AK",
			       .secret_access_key = "SECRETVALUE",
			       .path_style = true};
	st = s3_open(&s3, err, sizeof(err));
	CHECK(st != NULL);
	if (st) {
		/* nothing listens on port 1: transient, and no secret shown */
		CHECK_INT(s3_put_buf(st, "k", "x", 1, NULL, err, sizeof(err)),
			  -EAGAIN);
		CHECK(strstr(err, "SECRETVALUE") == NULL);
		s3_free(st);
	}
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK_INT(system(cmd), 0);
	return check_report("test_store");
}
