/*
 * cache.h - the bound on what the mount keeps on its own disk ([cache]
 * max_bytes): the spool files of uploaded images and the cached
 * thumbnails. Past the bound, the least recently used of them that the
 * store has whole (settled, see db_image_evict) give their data back to
 * the disk: a thumbnail is removed (it is fetched again when read), a
 * spool file keeps its name, size, mode, times and xattrs and has its
 * data punched out (it is read from the store, and restored before it is
 * written). Content not yet uploaded is never evicted.
 *
 * An open file is never evicted: every handle holds its spool file's
 * inode (fs_cache_hold) until it is released (fs_cache_put).
 */
#ifndef FS_CACHE_H
#define FS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct thumbfs;
struct fs_path;
struct fs_cache;

/* max_bytes 0: no bound. */
struct fs_cache *fs_cache_new(uint64_t max_bytes);
/* Another bound from now on (SIGHUP); the next trim measures against it. */
void fs_cache_set_bound(struct fs_cache *c, uint64_t max_bytes);
void fs_cache_free(struct fs_cache *c);

/* The file ino is open (and used now) / closed. */
void fs_cache_hold(struct fs_cache *c, ino_t ino);
void fs_cache_put(struct fs_cache *c, ino_t ino);

/* bytes more are on the disk (an upload is done, a fetch): the next
 * fs_cache_trim() measures once enough has come since the last. */
void fs_cache_added(struct fs_cache *c, uint64_t bytes);

/* Measure and, past the bound, evict. Run by a job runner; one at a time
 * (another caller returns at once). */
void fs_cache_trim(struct thumbfs *fs);

/* The spool file sp of image p with its content: if it was evicted, the
 * content is fetched into it from the store (its metadata kept), once
 * even when several ask at the same time. 0 or -errno. */
int fs_cache_restore(struct thumbfs *fs, const struct fs_path *p,
		     const char *sp);

/* The stat of the spool file sp (or of fd, when it is not -1) as a client
 * sees it: an eviction or a restore changes its times while it writes
 * its data, and puts them back; none of that shows. 0 or -errno. */
struct stat;
int fs_cache_stat(struct fs_cache *c, const char *sp, int fd, struct stat *st);

/* The bytes on disk (as last measured, and added since) into used and
 * the bound (0: none) into max; false while the first walk measures. */
bool fs_cache_figures(struct fs_cache *c, uint64_t *used, uint64_t *max);

/* "N of M bytes" (as last measured) into out, for the status file. */
void fs_cache_describe(struct fs_cache *c, char *out, size_t n);

#endif
