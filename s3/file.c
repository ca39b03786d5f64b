/* file.c - the file:// store: each object a file under a local directory,
 * written whole or not at all. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3/internal.h"

int s3_mkdir_p(const char *dir, mode_t mode)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

int s3_write_atomic(const char *dest, int (*fill)(int fd, void *arg), void *arg)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	int fd, ret;
	if (snprintf(dir, sizeof(dir), "%s", dest) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		ret = s3_mkdir_p(dir, 0700);
		if (ret)
			return ret;
	}
	/* beside dest, under a short name of its own: any name dest may
	 * have fits, and no key is hidden (every key's name is visible) */
	if (snprintf(tmp, sizeof(tmp), "%s/.tmp.XXXXXX",
		     slash ? (slash == dir ? "" : dir) : ".") >=
	    (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = mkstemp(tmp);
	if (fd < 0)
		return -errno;
	ret = fill(fd, arg);
	if (!ret && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, dest))
		ret = -errno;
	if (ret) {
		unlink(tmp);
	} else if (slash && slash != dir) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	return ret;
}

struct buf_arg {
	const unsigned char *buf;
	size_t len;
};

static int fill_buf(int fd, void *arg)
{
	struct buf_arg *b = arg;
	size_t off = 0;
	while (off < b->len) {
		ssize_t n = write(fd, b->buf + off, b->len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)n;
	}
	return 0;
}

/* Copy what is left of the file *arg (an fd) into fd. */
static int fill_copy(int fd, void *arg)
{
	int in = *(int *)arg;
	char buf[1 << 16];
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return 0;
		struct buf_arg b = {(unsigned char *)buf, (size_t)n};
		int ret = fill_buf(fd, &b);
		if (ret)
			return ret;
	}
}

/* ret, with "what of 'key' failed: why" in err when it is a failure. */
static int said(int ret, const char *what, const char *key, char *err,
		size_t errlen)
{
	if (ret)
		snprintf(err, errlen, "%s of '%s' failed: %s", what, key,
			 strerror(-ret));
	return ret;
}

static int object_path(struct s3_store *st, const char *key, char *out,
		       size_t n)
{
	if (snprintf(out, n, "%s/%s", st->root, key) >= (int)n)
		return -ENAMETOOLONG;
	return 0;
}

/* The object key opened to read, or -errno with err set. */
static int open_object(struct s3_store *st, const char *key, char *err,
		       size_t errlen)
{
	char src[PATH_MAX];
	int ret = object_path(st, key, src, sizeof(src));
	int fd = ret ? -1 : open(src, O_RDONLY | O_CLOEXEC);
	if (!ret && fd < 0)
		ret = -errno;
	return ret ? said(ret, "GET", key, err, errlen) : fd;
}

static int file_open(struct s3_store *st, const struct s3_config *cfg,
		     char *err, size_t errlen)
{
	const char *dir = cfg->url + 7;
	if (*dir != '/') {
		snprintf(err, errlen,
			 "store url '%s' needs an absolute path (file:///dir)",
			 cfg->url);
		return -EINVAL;
	}
	st->root = strdup(dir);
	st->bucket = strdup(cfg->url);
	if (!st->root || !st->bucket) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int ret = s3_mkdir_p(st->root, 0700);
	if (ret)
		snprintf(err, errlen, "cannot create store '%s': %s", st->root,
			 strerror(-ret));
	return ret;
}

static void file_release(struct s3_store *st)
{
	free(st->root);
}

static int file_check(struct s3_store *st, char *err, size_t errlen)
{
	if (access(st->root, W_OK | X_OK) == 0)
		return 0;
	int ret = -errno;
	snprintf(err, errlen, "store '%s' is not writable: %s", st->root,
		 strerror(-ret));
	return ret;
}

static int file_set_credentials(struct s3_store *st, const char *key_id,
				const char *secret, const char *token)
{
	(void)st, (void)key_id, (void)secret, (void)token;
	return 0; /* none needed */
}

/* Store what fill writes under key. */
static int put(struct s3_store *st, const char *key,
	       int (*fill)(int fd, void *arg), void *arg, char *err,
	       size_t errlen)
{
	char path[PATH_MAX];
	int ret = object_path(st, key, path, sizeof(path));
	if (!ret)
		ret = s3_write_atomic(path, fill, arg);
	return said(ret, "store", key, err, errlen);
}

/* Copy the file fd from its start. */
static int fill_from_start(int fd, void *arg)
{
	int in = *(int *)arg;
	if (lseek(in, 0, SEEK_SET) < 0)
		return -errno;
	return fill_copy(fd, arg);
}

static int file_put_fd(struct s3_store *st, const char *key, int fd,
		       const struct s3_digest *d, const char *content_type,
		       char *err, size_t errlen)
{
	(void)d, (void)content_type;
	return put(st, key, fill_from_start, &fd, err, errlen);
}

static int file_put_buf(struct s3_store *st, const char *key, const void *buf,
			size_t len, const char *content_type, char *err,
			size_t errlen)
{
	struct buf_arg b = {buf, len};
	(void)content_type;
	return put(st, key, fill_buf, &b, err, errlen);
}

static int file_get_fd(struct s3_store *st, const char *key, int fd, char *err,
		       size_t errlen)
{
	int in = open_object(st, key, err, errlen);
	if (in < 0)
		return in;
	int ret = fill_copy(fd, &in);
	close(in);
	return said(ret, "GET", key, err, errlen);
}

static int file_get_range(struct s3_store *st, const char *key, uint64_t off,
			  size_t len, void *buf, size_t *got, char *err,
			  size_t errlen)
{
	int fd = open_object(st, key, err, errlen), ret = 0;
	if (fd < 0)
		return fd;
	while (!ret && *got < len) {
		ssize_t n = pread(fd, (char *)buf + *got, len - *got,
				  (off_t)(off + *got));
		if (n < 0 && errno != EINTR)
			ret = -errno;
		else if (n == 0)
			break;
		else if (n > 0)
			*got += (size_t)n;
	}
	close(fd);
	return said(ret, "GET", key, err, errlen);
}

static int file_delete(struct s3_store *st, const char *key, char *err,
		       size_t errlen)
{
	char path[PATH_MAX];
	int ret = object_path(st, key, path, sizeof(path));
	if (!ret && unlink(path) && errno != ENOENT)
		ret = -errno;
	return said(ret, "DELETE", key, err, errlen);
}

static int file_copy(struct s3_store *st, const char *from, const char *to,
		     char *err, size_t errlen)
{
	int in = open_object(st, from, err, errlen);
	if (in < 0)
		return in;
	int ret = put(st, to, fill_copy, &in, err, errlen);
	close(in);
	return ret;
}

static char *file_presign(struct s3_store *st, const char *key, int expires,
			  time_t now)
{
	char *out = NULL;
	(void)expires, (void)now;
	if (asprintf(&out, "file://%s/%s", st->root, key) < 0)
		out = NULL;
	return out;
}

/* Walk dir (the key rel so far) for keys starting with prefix. */
static int walk(const char *dir, const char *rel, const char *prefix,
		int (*fn)(const struct s3_object *obj, void *arg), void *arg)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int ret = 0;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while (ret == 0 && (e = readdir(d))) {
		char path[PATH_MAX], key[PATH_MAX];
		struct stat st;
		if (e->d_name[0] == '.') /* ., .., and .tmp.* being written */
			continue;
		snprintf(key, sizeof(key), "%s%s%s", rel, *rel ? "/" : "",
			 e->d_name);
		/* a directory is walked when the prefix may lie below it */
		size_t kl = strlen(key), pl = strlen(prefix);
		if (strncmp(key, prefix, kl < pl ? kl : pl))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >=
			(int)sizeof(path) ||
		    lstat(path, &st))
			continue;
		if (S_ISDIR(st.st_mode)) {
			ret = walk(path, key, prefix, fn, arg);
		} else if (S_ISREG(st.st_mode) && kl >= pl &&
			   kl < sizeof(((struct s3_object *)0)->key)) {
			struct s3_object o = {.size = (uint64_t)st.st_size};
			memcpy(o.key, key, kl + 1);
			ret = fn(&o, arg);
		}
	}
	closedir(d);
	return ret;
}

static int file_list(struct s3_store *st, const char *prefix,
		     int (*fn)(const struct s3_object *obj, void *arg),
		     void *arg, char *err, size_t errlen)
{
	int ret = walk(st->root, "", prefix, fn, arg);
	if (ret < 0)
		snprintf(err, errlen, "listing '%s' failed: %s", st->root,
			 strerror(-ret));
	return ret;
}

const struct s3_backend s3_file_backend = {
    .open = file_open,
    .release = file_release,
    .check = file_check,
    .ping = file_check,
    .set_credentials = file_set_credentials,
    .put_fd = file_put_fd,
    .put_buf = file_put_buf,
    .get_fd = file_get_fd,
    .get_range = file_get_range,
    .delete = file_delete,
    .copy = file_copy,
    .presign = file_presign,
    .list = file_list,
};
