/* remote.c - content that is in the store only: thumbnails and images
 * fetched whole, images read by ranges, and the one switch from a store
 * failure to what a FUSE request returns. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/catalog.h"
#include "fs/cache.h"
#include "fs/log.h"
#include "fs/remote.h"
#include "fs/request.h"
#include "fs/spool.h"
#include "fs/thumbfs.h"
#include "s3/s3.h"

/* The window a remote read fetches: partial reads cost one small GET, a
 * whole read one GET per MiB. */
#define WINDOW (1u << 20)

/* A GET the store answered as transient (-EAGAIN: a 5xx, SlowDown, a
 * dropped connection) is tried again, 0.1 s and then 0.4 s later, before
 * the request that needs it fails, as the S3 SDKs do: one 503 would
 * otherwise fail a read or a rename. true: try again. */
#define GET_TRIES 3
static bool again(int ret, int *tries)
{
	if (ret != -EAGAIN || ++*tries >= GET_TRIES)
		return false;
	usleep(100000u << (2 * (*tries - 1)));
	return true;
}

/* How many times a read follows its object to a new key (db_key_moved) */
#define MOVES 3

/* Bring key from the store to dest, whole or not at all (through tmp/). */
static int fetch(struct thumbfs *fs, const char *key, const char *dest)
{
	char tmp[PATH_MAX], err[512];
	int ret, tries = 0;
	snprintf(tmp, sizeof(tmp), "%s/fetch.%lx.%lx", fs->tmp,
		 (unsigned long)getpid(), (unsigned long)pthread_self());
	do
		ret = s3_get_file(fs->store, key, tmp, err, sizeof(err));
	while (again(ret, &tries));
	if (!ret && rename(tmp, dest)) {
		ret = -errno;
		snprintf(err, sizeof(err), "%s", strerror(errno));
	}
	if (ret) {
		unlink(tmp);
		log_error("fetch of '%s' failed: %s", key, err);
	}
	return fs_store_errno(ret);
}

int fs_local_thumb(struct thumbfs *fs, const struct fs_path *p, char *tp,
		   size_t n)
{
	struct db_image img;
	struct stat st;
	char dir[PATH_MAX];
	if (fs_thumb_path(fs, p->patient, p->date, p->name, tp, n))
		return -ENAMETOOLONG;
	if (lstat(tp, &st) == 0 || errno != ENOENT)
		return 0;
	if (db_image_get_by_thumb(fs->db, p->patient, p->date, p->name, &img) ||
	    !img.s3_thumbnail_key[0])
		return -ENOENT;
	if (!fs_thumb_path(fs, p->patient, NULL, NULL, dir, sizeof(dir)))
		mkdir(dir, 0700);
	if (!fs_thumb_path(fs, p->patient, p->date, NULL, dir, sizeof(dir)))
		mkdir(dir, 0700);
	return fetch(fs, img.s3_thumbnail_key, tp);
}

int fs_whole_image(struct thumbfs *fs, const struct fs_path *p,
		   const char *path, char *sp, size_t n, ino_t *held)
{
	struct db_image img;
	struct stat st;
	int ret;
	*held = 0;
	if (fs_spool_path(fs, path, sp, n))
		return -ENAMETOOLONG;
	if (lstat(sp, &st)) {
		if (errno != ENOENT)
			return -errno;
		if (p->local ||
		    db_image_get(fs->db, p->patient, p->date, p->name, &img) ||
		    strcmp(img.state, "uploaded") || !img.s3_key[0])
			return -ENOENT;
		if ((ret = fetch(fs, img.s3_key, sp)))
			return ret;
		fs_cache_added(fs->cache, (uint64_t)img.file_size);
		if (lstat(sp, &st))
			return -errno;
	}
	fs_cache_hold(fs->cache, st.st_ino);
	if ((ret = fs_cache_restore(fs, p, sp)))
		fs_cache_put(fs->cache, st.st_ino);
	else
		*held = st.st_ino;
	return ret;
}

int fs_remote_read(struct thumbfs *fs, struct fs_window *w, char *buf,
		   size_t size, off_t off)
{
	char err[512];
	size_t done = 0;
	int ret = 0;
	pthread_mutex_lock(&w->lock);
	while (done < size && off + (int64_t)done < w->size) {
		uint64_t at = (uint64_t)off + done;
		if (!w->buf || at < w->off || at >= w->off + w->len) {
			size_t got = 0;
			uint64_t start = at - at % WINDOW;
			if (!w->buf && !(w->buf = malloc(WINDOW))) {
				ret = -ENOMEM;
				break;
			}
			w->len = 0;
			int tries = 0, moves = 0;
			do
				ret = s3_get_range(fs->store, w->key, start,
						   WINDOW, w->buf, &got, err,
						   sizeof(err));
			while (again(ret, &tries) ||
			       (ret == -ENOENT && moves++ < MOVES &&
				db_key_moved(fs->db, w->id, w->key,
					     sizeof(w->key))));
			if (ret) {
				log_error("read of '%s' from the store failed: "
					  "%s",
					  w->key, err);
				ret = fs_store_errno(ret);
				break;
			}
			w->off = start;
			w->len = got;
			if (at >= start + got)
				break; /* the object is shorter than its row */
		}
		size_t take = (size_t)(w->off + w->len - at);
		if (take > size - done)
			take = size - done;
		memcpy(buf + done, w->buf + (at - w->off), take);
		done += take;
	}
	pthread_mutex_unlock(&w->lock);
	return ret ? ret : (int)done;
}
