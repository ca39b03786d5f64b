/* audit.c - the audit log: JSON lines appended under a lock, rotated by
 * size. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs/audit.h"
#include "fs/config.h"
#include "fs/users.h"
#include "fs/log.h"
#include "fs/path.h"

/* two whole paths fit, each escaped at worst (6 bytes a byte) */
#define LINE_MAX_BYTES 65536
#define TAIL_BYTES     256 /* room kept for the fields after a string */

struct audit {
	pthread_mutex_t lock;
	int fd;
	uint64_t size; /* of the current file */
	uint64_t max_bytes;
	int keep;
	bool failed;	/* a write failed and the log said so */
	uid_t last_uid; /* the last name looked up, kept: most lines are by */
	char last_user[64]; /* the same few users */
	char path[];
};

static int open_log(struct audit *a)
{
	struct stat st;
	int fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || fchmod(fd, 0600)) {
		int e = errno;
		close(fd);
		return -e;
	}
	a->fd = fd;
	a->size = (uint64_t)st.st_size;
	return 0;
}

struct audit *audit_open(const char *path, uint64_t max_bytes, int keep,
			 char *err, size_t errlen)
{
	struct audit *a = calloc(1, sizeof(*a) + strlen(path) + 1);
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	strcpy(a->path, path);
	a->max_bytes = max_bytes;
	a->keep = keep;
	a->last_uid = (uid_t)-1;
	int ret = open_log(a);
	if (ret) {
		snprintf(err, errlen, "cannot open audit log '%s': %s", path,
			 strerror(-ret));
		free(a);
		return NULL;
	}
	pthread_mutex_init(&a->lock, NULL);
	return a;
}

void audit_close(struct audit *a)
{
	if (!a)
		return;
	close(a->fd);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

/* path.N-1 to path.N, ..., path to path.1; a new path. */
static int rotate(struct audit *a)
{
	size_t n = strlen(a->path) + 16;
	char from[n], to[n];
	for (int i = a->keep; i >= 1; i--) {
		snprintf(to, n, "%s.%d", a->path, i);
		if (i == 1)
			snprintf(from, n, "%s", a->path);
		else
			snprintf(from, n, "%s.%d", a->path, i - 1);
		if (rename(from, to) && errno != ENOENT)
			return -errno;
	}
	if (a->keep < 1 && unlink(a->path) && errno != ENOENT)
		return -errno;
	close(a->fd);
	a->fd = -1;
	return open_log(a);
}

/* s as a JSON string into out at *len: control characters, quotes and
 * backslashes escaped, bytes that are not UTF-8 written as \u00XX. */
static void put_string(char *out, size_t n, size_t *len, const char *s)
{
	size_t l = *len;
	out[l++] = '"';
	while (*s && l + 8 + TAIL_BYTES < n) {
		unsigned char c = (unsigned char)*s;
		size_t k = c >= 0x80 ? fs_utf8_char(s) : 1;
		if (c == '"' || c == '\\') {
			out[l++] = '\\';
			out[l++] = (char)c;
		} else if (c < 0x20 || c == 0x7f || k == 0) {
			l += (size_t)snprintf(out + l, n - l, "\\u%04x", c);
			k = 1;
		} else {
			memcpy(out + l, s, k);
			l += k;
		}
		s += k;
	}
	out[l++] = '"';
	*len = l;
}

static void user_name(struct audit *a, uid_t uid, char *out, size_t n)
{
	if (uid != a->last_uid) {
		cfg_user_name(uid, a->last_user, sizeof(a->last_user));
		a->last_uid = uid;
	}
	snprintf(out, n, "%s", a->last_user);
}

static const char *result_name(int result)
{
	if (!result)
		return "ok";
	const char *name = strerrorname_np(-result);
	return name ? name : "error";
}

int audit_log(struct audit *a, const struct audit_event *e)
{
	char line[LINE_MAX_BYTES], user[64], when[32];
	struct timespec ts;
	struct tm tm;
	size_t len;
	int ret = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	pthread_mutex_lock(&a->lock);
	user_name(a, e->uid, user, sizeof(user));
	len = (size_t)snprintf(line, sizeof(line),
			       "{\"time\":\"%s.%03ldZ\",\"uid\":%u,\"user\":",
			       when, ts.tv_nsec / 1000000, (unsigned)e->uid);
	put_string(line, sizeof(line), &len, user);
	len += (size_t)snprintf(line + len, sizeof(line) - len,
				",\"pid\":%d,\"op\":", (int)e->pid);
	put_string(line, sizeof(line), &len, e->op);
	len += (size_t)snprintf(line + len, sizeof(line) - len, ",\"path\":");
	put_string(line, sizeof(line), &len, e->path);
	if (e->to) {
		len += (size_t)snprintf(line + len, sizeof(line) - len,
					",\"to\":");
		put_string(line, sizeof(line), &len, e->to);
	}
	if (e->sha256 && e->sha256[0])
		len += (size_t)snprintf(line + len, sizeof(line) - len,
					",\"sha256\":\"%.64s\"", e->sha256);
	if (e->size >= 0)
		len += (size_t)snprintf(line + len, sizeof(line) - len,
					",\"size\":%lld", (long long)e->size);
	len +=
	    (size_t)snprintf(line + len, sizeof(line) - len,
			     ",\"result\":\"%s\"}\n", result_name(e->result));
	if (a->fd < 0)
		ret = open_log(a); /* it failed last time */
	else if (a->size && a->size + len > a->max_bytes)
		ret = rotate(a);
	if (ret == 0) {
		ssize_t n = write(a->fd, line, len);
		if (n == (ssize_t)len)
			a->size += len;
		else
			ret = n < 0 ? -errno : -EIO;
	}
	if (ret && !a->failed)
		log_error("audit log '%s' cannot be written: %s", a->path,
			  strerror(-ret));
	a->failed = ret != 0;
	pthread_mutex_unlock(&a->lock);
	return ret;
}
