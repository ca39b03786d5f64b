/* store.c - the object store's interface: open the backend the URL names,
 * check every key once, and dispatch (see s3.h and internal.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3/internal.h"

/* A key is built from validated parts; this is the last line of defence. */
static bool key_ok(const char *key)
{
	if (!*key || *key == '/' || strlen(key) > 1024)
		return false;
	for (const char *p = key; *p;) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

/* 0 if key may be used, else -EINVAL with err said. */
static int check_key(const char *key, char *err, size_t errlen)
{
	if (key_ok(key))
		return 0;
	snprintf(err, errlen, "refused key '%s'", key);
	return -EINVAL;
}

struct s3_store *s3_open(const struct s3_config *cfg, char *err, size_t errlen)
{
	struct s3_store *st = calloc(1, sizeof(*st));
	const char *url = cfg->url ? cfg->url : "";
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&st->lock, NULL);
	if (strncmp(url, "file://", 7) == 0)
		st->be = &s3_file_backend;
	else if (strncmp(url, "s3://", 5) == 0)
		st->be = &s3_bucket_backend;
	if (!st->be) {
		snprintf(err, errlen,
			 "store url '%s' is neither file:///dir nor "
			 "s3://bucket",
			 url);
	} else if (st->be->open(st, cfg, err, errlen) == 0) {
		return st;
	}
	s3_free(st);
	return NULL;
}

void s3_free(struct s3_store *st)
{
	if (!st)
		return;
	if (st->be)
		st->be->release(st);
	free(st->bucket);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

const char *s3_bucket(const struct s3_store *st)
{
	return st->bucket;
}

int s3_set_credentials(struct s3_store *st, const char *key_id,
		       const char *secret, const char *token)
{
	return st->be->set_credentials(st, key_id, secret, token);
}

int s3_check(struct s3_store *st, char *err, size_t errlen)
{
	return st->be->check(st, err, errlen);
}

int s3_ping(struct s3_store *st, char *err, size_t errlen)
{
	return st->be->ping(st, err, errlen);
}

int s3_put_buf(struct s3_store *st, const char *key, const void *buf,
	       size_t len, const char *content_type, char *err, size_t errlen)
{
	int ret = check_key(key, err, errlen);
	return ret ? ret
		   : st->be->put_buf(st, key, buf, len, content_type, err,
				     errlen);
}

int s3_put_file(struct s3_store *st, const char *key, const char *path,
		const char *content_type, char *err, size_t errlen)
{
	int ret = check_key(key, err, errlen);
	if (ret)
		return ret;
	struct s3_digest d;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ret = fd < 0 ? -errno : s3_digest_fd(st, fd, &d);
	if (ret) {
		snprintf(err, errlen, "cannot read '%s': %s", path,
			 strerror(-ret));
	} else {
		ret =
		    st->be->put_fd(st, key, fd, &d, content_type, err, errlen);
		s3_digest_release(&d);
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

int s3_put_fd(struct s3_store *st, const char *key, int fd,
	      const struct s3_digest *d, const char *content_type, char *err,
	      size_t errlen)
{
	int ret = check_key(key, err, errlen);
	return ret ? ret
		   : st->be->put_fd(st, key, fd, d, content_type, err, errlen);
}

int s3_get_fd(struct s3_store *st, const char *key, int fd, char *err,
	      size_t errlen)
{
	int ret = check_key(key, err, errlen);
	return ret ? ret : st->be->get_fd(st, key, fd, err, errlen);
}

struct get_arg {
	struct s3_store *st;
	const char *key;
	char *err;
	size_t errlen;
};

static int fill_get(int fd, void *arg)
{
	struct get_arg *g = arg;
	return g->st->be->get_fd(g->st, g->key, fd, g->err, g->errlen);
}

int s3_get_file(struct s3_store *st, const char *key, const char *dest,
		char *err, size_t errlen)
{
	struct get_arg g = {st, key, err, errlen};
	int ret = check_key(key, err, errlen);
	if (ret)
		return ret;
	err[0] = '\0';
	ret = s3_write_atomic(dest, fill_get, &g);
	if (ret && !err[0]) /* not the GET: the file beside dest */
		snprintf(err, errlen, "cannot write '%s': %s", dest,
			 strerror(-ret));
	return ret;
}

int s3_get_range(struct s3_store *st, const char *key, uint64_t off, size_t len,
		 void *buf, size_t *got, char *err, size_t errlen)
{
	*got = 0;
	int ret = check_key(key, err, errlen);
	if (ret || len == 0)
		return ret;
	return st->be->get_range(st, key, off, len, buf, got, err, errlen);
}

int s3_delete(struct s3_store *st, const char *key, char *err, size_t errlen)
{
	int ret = check_key(key, err, errlen);
	return ret ? ret : st->be->delete (st, key, err, errlen);
}

int s3_list(struct s3_store *st, const char *prefix,
	    int (*fn)(const struct s3_object *obj, void *arg), void *arg,
	    char *err, size_t errlen)
{
	return st->be->list(st, prefix, fn, arg, err, errlen);
}

int s3_copy(struct s3_store *st, const char *from, const char *to, char *err,
	    size_t errlen)
{
	int ret = check_key(from, err, errlen);
	if (!ret)
		ret = check_key(to, err, errlen);
	return ret ? ret : st->be->copy(st, from, to, err, errlen);
}

char *s3_presign_url(struct s3_store *st, const char *key, int expires,
		     time_t now)
{
	return key_ok(key) ? st->be->presign(st, key, expires, now) : NULL;
}
