/* attr.c - what stat() shows of a path: the spool's file, the cached
 * thumbnail, or the row of what is in the store only; the status file;
 * with [fs] uid, gid and umask applied. */
#include "fs/attr.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db/catalog.h"
#include "fs/cache.h"
#include "fs/handle.h"
#include "fs/request.h"
#include "fs/rowino.h"
#include "fs/spool.h"
#include "fs/status.h"
#include "fs/thumbfs.h"

/* What a file that is in the store only shows: its row's size and time. */
void fs_stored_stat(int64_t size, const char *updated_at, struct stat *st)
{
	struct tm tm;
	memset(st, 0, sizeof(*st));
	memset(&tm, 0, sizeof(tm));
	st->st_mode = S_IFREG | 0644;
	st->st_nlink = 1;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_size = size;
	st->st_blksize = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
	if (strptime(updated_at, "%Y-%m-%dT%H:%M:%S", &tm))
		st->st_mtime = timegm(&tm);
	st->st_atime = st->st_ctime = st->st_mtime;
}

static void row_stat(const struct db_image *img, bool thumb, struct stat *st)
{
	fs_stored_stat(thumb ? img->thumbnail_size : img->file_size,
		       img->updated_at, st);
	st->st_ino = fs_rowino(img->rowid, img->id, thumb);
}

static void status_stat(struct thumbfs *fs, bool json, struct stat *st)
{
	char *text = fs_status_render(fs, json);
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_size = text ? (off_t)strlen(text) : 0;
	st->st_mtime = time(NULL);
	st->st_atime = st->st_ctime = st->st_mtime;
	free(text);
}

/* An image or a thumbnail: its spool or cached file, else its row. */
static int file_stat(struct thumbfs *fs, const char *path,
		     const struct fs_path *p, struct stat *st)
{
	struct db_image img;
	char sp[PATH_MAX];
	if (p->thumb) {
		if (fs_thumb_path(fs, p->patient, p->date, p->name, sp,
				  sizeof(sp)) == 0 &&
		    lstat(sp, st) == 0) {
			/* writable, as a folder copied back in needs
			 * (handle.c, open_copy); read-only in effect */
			st->st_mode = S_IFREG | 0644;
			return 0;
		}
		if (db_image_get_by_thumb(fs->db, p->patient, p->date, p->name,
					  &img) ||
		    !img.s3_thumbnail_key[0])
			return -ENOENT;
		row_stat(&img, true, st);
		return 0;
	}
	if (fs_spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	int ret = fs_cache_stat(fs->cache, sp, -1, st);
	if (ret != -ENOENT)
		return ret;
	if (p->local ||
	    db_image_get(fs->db, p->patient, p->date, p->name, &img) ||
	    strcmp(img.state, "uploaded"))
		return -ENOENT;
	row_stat(&img, false, st);
	return 0;
}

static int getattr(struct thumbfs *fs, const char *path, struct stat *st,
		   struct fuse_file_info *fi)
{
	struct fs_path p;
	char sp[PATH_MAX];
	struct handle *h = fs_file_handle(fi);
	if (h) {
		int ret = fs_cache_stat(fs->cache, NULL, h->fd, st);
		if (ret)
			return ret;
		/* unlinked while open: it has no name left */
		if (path && strstr(path, "/" FS_HIDDEN_PREFIX))
			st->st_nlink = 0;
		return 0;
	}
	fs_parse(fs, path, &p);
	switch (p.kind) {
	case FS_INVALID:
		return p.err == -ENAMETOOLONG ? p.err : -ENOENT;
	case FS_ROOT:
		/* the spool itself is private (0700); the mount's root is
		 * open to whoever may reach it, patients/ decides the rest */
		if (lstat(fs->spool, st))
			return -errno;
		st->st_mode = S_IFDIR | 0755;
		return 0;
	case FS_META:
		if (lstat(fs->spool, st))
			return -errno;
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	case FS_STATUS:
		status_stat(fs, p.json, st);
		return 0;
	case FS_FILE:
		return file_stat(fs, path, &p, st);
	default:
		if (fs_spool_path(fs, path, sp, sizeof(sp)))
			return -ENAMETOOLONG;
		return lstat(sp, st) ? -errno : 0;
	}
}

/* The kernel checks access against what getattr shows
 * (default_permissions): [fs] uid, gid and umask apply here. */
/* What stat() shows of path: getattr's, with [fs] uid, gid and umask. */
void fs_shown(const struct thumbfs *fs, struct stat *st)
{
	if (fs->cfg.show_uid >= 0)
		st->st_uid = (uid_t)fs->cfg.show_uid;
	if (fs->cfg.show_gid >= 0)
		st->st_gid = (gid_t)fs->cfg.show_gid;
	st->st_mode &= ~(mode_t)fs->cfg.show_umask;
	/* the most one FUSE write carries (libfuse's max_write): cp sizes
	 * its buffer by it, and writes a file in 8 times fewer requests
	 * than with its usual 128 KiB */
	st->st_blksize = FS_IO_SIZE;
}

int fs_op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct thumbfs *fs = fs_get();
	int ret = getattr(fs, path, st, fi);
	if (ret == 0)
		fs_shown(fs, st);
	return ret;
}
