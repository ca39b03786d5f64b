/* test_audit.c - the audit log's lines, their escaping, its mode and its
 * rotation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/audit.h"
#include "tests/unit/check.h"

static char *slurp(const char *path)
{
	static char buf[65536];
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static int lines(const char *s)
{
	int n = 0;
	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

int main(void)
{
	char dir[] = "/tmp/thumbfs-audit-XXXXXX", path[256], old[300], err[512];
	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/audit.log", dir);

	umask(0); /* the log is 0600 whatever the umask */
	struct audit *a = audit_open(path, 1 << 20, 3, err, sizeof(err));
	CHECK(a != NULL);
	struct audit_event e = {.op = "write",
				.path = "/patients/P1/2025-11-10/a.jpg",
				.size = 1234,
				.uid = 0,
				.pid = 42};
	CHECK_INT(audit_log(a, &e), 0);
	e = (struct audit_event){.op = "rename",
				 .path = "/patients/P1/2025-11-10/a \"q\".jpg",
				 .to =
				     "/patients/P1/2025-11-10/\xc3\xa4\xff\x01"
				     ".jpg",
				 .sha256 = "ab12",
				 .size = -1,
				 .result = -EPERM,
				 .uid = 4242424,
				 .pid = 7};
	CHECK_INT(audit_log(a, &e), 0);
	char *text = slurp(path);
	CHECK(text && lines(text) == 2);
	CHECK(strstr(text, "\"uid\":0,\"user\":\"root\",\"pid\":42,"
			   "\"op\":\"write\",\"path\":\"/patients/P1/"
			   "2025-11-10/a.jpg\",\"size\":1234,"
			   "\"result\":\"ok\"}\n") != NULL);
	CHECK(strstr(text, "{\"time\":\"20") == text);
	CHECK(strstr(text, "Z\",\"uid\":0") != NULL);
	/* quotes escaped, UTF-8 kept, a stray byte and a control character
	 * written as escapes; an unknown uid is its number */
	CHECK(strstr(text, "\"user\":\"4242424\"") != NULL);
	CHECK(strstr(text, "a \\\"q\\\".jpg\"") != NULL);
	CHECK(strstr(text, "\"to\":\"/patients/P1/2025-11-10/\xc3\xa4\\u00ff"
			   "\\u0001.jpg\"") != NULL);
	CHECK(strstr(text, "\"sha256\":\"ab12\",\"result\":\"EPERM\"}") !=
	      NULL);
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	audit_close(a);

	/* rotation: a file never passes max_bytes; keep old files, no more */
	a = audit_open(path, 400, 2, err, sizeof(err));
	CHECK(a != NULL);
	e = (struct audit_event){.op = "unlink",
				 .path = "/patients/P1/2025-11-10/b.jpg",
				 .size = -1};
	for (int i = 0; i < 12; i++)
		CHECK_INT(audit_log(a, &e), 0);
	audit_close(a);
	snprintf(old, sizeof(old), "%s.1", path);
	CHECK(stat(path, &st) == 0 && st.st_size <= 400 &&
	      (st.st_mode & 0777) == 0600);
	CHECK(stat(old, &st) == 0 && st.st_size <= 400);
	CHECK(lines(slurp(old)) >= 2);
	snprintf(old, sizeof(old), "%s.2", path);
	CHECK(stat(old, &st) == 0);
	snprintf(old, sizeof(old), "%s.3", path);
	CHECK(stat(old, &st) != 0 && errno == ENOENT);

	/* a directory that is not there: a clear error */
	CHECK(audit_open("/nonexistent-thumbfs/audit.log", 1000, 1, err,
			 sizeof(err)) == NULL);
	CHECK(strstr(err, "/nonexistent-thumbfs/audit.log") != NULL);

	for (int i = 0; i <= 3; i++) {
		snprintf(old, sizeof(old), i ? "%s.%d" : "%s", path, i);
		unlink(old);
	}
	rmdir(dir);
	return check_report("test_audit");
}
