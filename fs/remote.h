/*
 * remote.h - content the mount's disk does not hold: fetched from the
 * store whole (a thumbnail, an image about to change), restored (an
 * evicted spool file), or read by ranges (an image opened to read). Store
 * errors become what a FUSE request returns by request.h's
 * fs_store_errno().
 */
#ifndef FS_REMOTE_H
#define FS_REMOTE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "db/catalog.h"

struct thumbfs;
struct fs_path;

/* An image read from the store by ranges (opened to read while its
 * content is in the store only): a window around the offset asked for,
 * fetched by a ranged GET. */
struct fs_window {
	char id[37]; /* the row's: its key now, if the object moves */
	char key[DB_KEY_MAX];
	int64_t size;
	pthread_mutex_t lock; /* guards buf, off, len */
	unsigned char *buf;
	uint64_t off;
	size_t len;
};

/* The cached thumbnail p into tp, fetched from the store if it is not
 * cached. 0, -ENOENT (no such thumbnail), or a store failure. */
int fs_local_thumb(struct thumbfs *fs, const struct fs_path *p, char *tp,
		   size_t n);

/* The spool file of image p (path as FUSE gives it) with its content,
 * fetched from the store if only the catalog has it, restored if it was
 * evicted, and held in the cache (*held, for fs_cache_put) so that it
 * stays whole. 0 with sp holding its path, or -errno (-ENOENT: no such
 * image). */
int fs_whole_image(struct thumbfs *fs, const struct fs_path *p,
		   const char *path, char *sp, size_t n, ino_t *held);

/* Read up to size bytes at off of the remote handle h (ranged GETs of a
 * 1 MiB window): how many, or -errno. */
int fs_remote_read(struct thumbfs *fs, struct fs_window *w, char *buf,
		   size_t size, off_t off);

#endif
