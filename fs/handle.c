/* handle.c - open files: create and open, read and write, and the ingest
 * queued when the writer is told its data is saved (close, fsync). */
#include "fs/handle.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/conn.h"
#include "db/evict.h"
#include "db/queue.h"
#include "fs/audit.h"
#include "fs/cache.h"
#include "fs/context.h"
#include "fs/deferred.h"
#include "fs/job.h"
#include "fs/log.h"
#include "fs/remote.h"
#include "fs/spool.h"
#include "fs/status.h"
#include "fs/thumbfs.h"
#include "fs/users.h"

struct handle *fs_handle(struct fuse_file_info *fi)
{
	return fi ? (struct handle *)(uintptr_t)fi->fh : NULL;
}

int fs_queue_ingest(struct thumbfs *fs, const struct fs_path *p, int64_t size,
		    uid_t uid)
{
	char who[256], what[PATH_MAX];
	cfg_uploaded_by(&fs->cfg, uid, who, sizeof(who));
	int ret =
	    db_image_written(fs->db, p->patient, p->date, p->name, size, who);
	if (ret) {
		fs_tree_path(what, sizeof(what), NULL, p->patient, p->date,
			     p->name);
		log_error("catalog write of '%s' failed: %s", what,
			  strerror(-ret));
		/* the file is in the spool: the next mount's walk finds it,
		 * even after a clean end */
		atomic_store(&fs->walk_spool, true);
	} else {
		fs_jobs_kick(fs);
	}
	return ret;
}

/* The image p is about to change: tell the catalog first, so that a
 * daemon that dies before the writer is told it is saved leaves the file
 * whole or absent at the next mount (fs_reconcile). */
int fs_mark_writing(struct thumbfs *fs, const struct fs_path *p)
{
	char what[PATH_MAX];
	if (p->kind != FS_FILE || p->local || p->thumb)
		return 0;
	/* synced: after a power cut too, the next mount knows the file was
	 * changing and makes it whole or absent */
	int ret = db_image_writing(fs->db, p->patient, p->date, p->name);
	if (ret == 0)
		ret = db_sync(fs->db);
	if (ret) {
		fs_tree_path(what, sizeof(what), NULL, p->patient, p->date,
			     p->name);
		if (ret == -EEXIST)
			return fs_refused(ret, "write of", what,
					  "a thumbnail took the name a moment "
					  "ago");
		log_error("catalog write of '%s' failed: %s", what,
			  strerror(-ret));
		return ret == -ENOSPC ? ret : -EIO;
	}
	return 0;
}

/* The file's name as this request gives it (NULL: none given): the
 * handle follows it, into *p. A new name has nothing written under it
 * yet: what was written before the rename was queued by the rename. */
static void follow(struct thumbfs *fs, struct handle *h, const char *path,
		   struct fs_path *p)
{
	struct fs_path now;
	if (path)
		fs_parse_name(fs, path, &now);
	pthread_mutex_lock(&h->lock);
	if (path &&
	    (now.kind != h->path.kind || strcmp(now.name, h->path.name) ||
	     strcmp(now.date, h->path.date) ||
	     strcmp(now.patient, h->path.patient))) {
		h->path = now;
		h->image = now.kind == FS_FILE && !now.local && !now.thumb;
		atomic_store(&h->dirty, false);
	}
	*p = h->path;
	pthread_mutex_unlock(&h->lock);
}

static bool is_image(const struct fs_path *p)
{
	return p->kind == FS_FILE && !p->local && !p->thumb;
}

static int begin_write(struct thumbfs *fs, struct handle *h, const char *path)
{
	struct fs_path p;
	follow(fs, h, path, &p);
	if (atomic_load(&h->dirty) || !is_image(&p))
		return 0;
	int ret = fs_mark_writing(fs, &p);
	if (ret == 0)
		atomic_store(&h->dirty, true);
	return ret;
}

/* 1 if the file fd holds the bytes of the file at path, 0 if not, or
 * -errno. */
static int same_bytes(int fd, const char *path)
{
	char a[65536], b[65536];
	struct stat sa, sb;
	int other = open(path, O_RDONLY | O_CLOEXEC), ret = -EIO;
	if (other < 0)
		return -errno;
	if (fstat(fd, &sa) || fstat(other, &sb)) {
		ret = -errno;
	} else if (sa.st_size != sb.st_size) {
		ret = 0;
	} else {
		off_t off = 0;
		ssize_t n = 1, m;
		while (n > 0) {
			n = pread(fd, a, sizeof(a), off);
			m = n > 0 ? pread(other, b, (size_t)n, off) : 0;
			if (n < 0 || m < 0) {
				ret = -errno;
				break;
			}
			if (m != n || memcmp(a, b, (size_t)n)) {
				n = -1;
				ret = 0;
				break;
			}
			off += n;
		}
		if (n == 0)
			ret = 1;
	}
	close(other);
	return ret;
}

int fs_thumb_copy_check(struct thumbfs *fs, int fd, const struct fs_path *p,
			const char *op)
{
	char tp[PATH_MAX], shown[PATH_MAX];
	int same = 0;
	if (p->kind == FS_FILE && p->thumb &&
	    fs_local_thumb(fs, p, tp, sizeof(tp)) == 0)
		same = same_bytes(fd, tp);
	if (same)
		return same < 0 ? same : 0;
	fs_tree_path(shown, sizeof(shown), "", p->patient, p->date, p->name);
	return fs_refused(-EPERM, op, shown,
			  "the name is a thumbnail's, and only the "
			  "thumbnail's own bytes may be put there (a folder "
			  "copied back in); give the file another name");
}

/* The writer of h is told its data is saved (close, fsync): queue the
 * ingest of what it wrote, under the name it has now. */
static int end_write(struct thumbfs *fs, struct handle *h, const char *name)
{
	struct stat st;
	struct fs_path p;
	char path[PATH_MAX];
	follow(fs, h, name, &p);
	if (!(is_image(&p) || h->copy) || !atomic_exchange(&h->dirty, false))
		return 0;
	int ret = fstat(h->fd, &st) ? -errno : 0;
	if (h->copy) { /* the thumbnail's bytes are saved already, or refused */
		if (ret == 0)
			ret = fs_thumb_copy_check(fs, h->fd, &p, "write of");
	} else {
		if (ret == 0)
			ret = fs_queue_ingest(fs, &p, (int64_t)st.st_size,
					      h->uid);
		if (ret && ret != -ENOSPC)
			ret = -EIO;
		if (ret) /* told it failed: still due */
			atomic_store(&h->dirty, true);
	}
	if (fs->audit &&
	    !fs_tree_path(path, sizeof(path), "", p.patient, p.date, p.name)) {
		/* by the writer: release has no caller */
		struct audit_event e = {.op = "write",
					.path = path,
					.size = ret ? -1 : (int64_t)st.st_size,
					.result = ret,
					.uid = h->uid,
					.pid = h->pid};
		audit_log(fs->audit, &e);
	}
	return ret;
}

/* The open handles, so that none outlives the mount. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct handle *open_list; /* guarded by open_lock */

static void track(struct handle *h)
{
	pthread_mutex_lock(&open_lock);
	h->prev = NULL;
	h->next = open_list;
	if (open_list)
		open_list->prev = h;
	open_list = h;
	pthread_mutex_unlock(&open_lock);
}

static void untrack(struct handle *h)
{
	pthread_mutex_lock(&open_lock);
	if (h->prev)
		h->prev->next = h->next;
	else if (open_list == h)
		open_list = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&open_lock);
}

static int new_handle(struct fuse_file_info *fi, int fd,
		      const struct fs_path *p, bool dirty)
{
	struct handle *h = calloc(1, sizeof(*h));
	if (!h) {
		close(fd);
		return -ENOMEM;
	}
	h->fd = fd;
	h->path = *p;
	h->image = is_image(p);
	h->writable = (fi->flags & O_ACCMODE) != O_RDONLY;
	h->uid = fs_ctx()->uid;
	h->pid = fs_ctx()->pid;
	/* if so, the caller marked it before the change */
	atomic_init(&h->dirty, dirty);
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->win.lock, NULL);
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0) {
		h->ino = st.st_ino;
		fs_cache_hold(fs_get()->cache, h->ino);
	}
	track(h);
	fi->fh = (uint64_t)(uintptr_t)h;
	return 0;
}

static void release(struct fs_cache *cache, struct handle *h)
{
	untrack(h);
	if (h->ino)
		fs_cache_put(cache, h->ino);
	if (h->fd >= 0)
		close(h->fd);
	pthread_mutex_destroy(&h->lock);
	pthread_mutex_destroy(&h->win.lock);
	free(h->win.buf);
	free(h->status);
	free(h);
}

static void free_handle(struct handle *h)
{
	release(fs_get()->cache, h);
}

bool fs_handle_writer_open(const char *patient, const char *date,
			   const char *name)
{
	bool open = false;
	pthread_mutex_lock(&open_lock);
	for (struct handle *h = open_list; h && !open; h = h->next) {
		if (!h->writable)
			continue;
		pthread_mutex_lock(&h->lock);
		open = h->image && !strcmp(h->path.name, name) &&
		       !strcmp(h->path.date, date) &&
		       !strcmp(h->path.patient, patient);
		pthread_mutex_unlock(&h->lock);
	}
	pthread_mutex_unlock(&open_lock);
	return open;
}

void fs_handles_release_all(struct thumbfs *fs)
{
	for (;;) {
		pthread_mutex_lock(&open_lock);
		struct handle *h = open_list;
		pthread_mutex_unlock(&open_lock);
		if (!h)
			break;
		release(fs->cache, h);
	}
}

/* Undo a handle made by an open that then failed with ret. */
static int drop_handle(struct fuse_file_info *fi, int ret)
{
	free_handle(fs_handle(fi));
	fi->fh = 0;
	return ret;
}

/* An image that is in the store only, opened to read: a handle that reads
 * it by ranges, keeping fd (-1: none) for its metadata. */
static int remote_handle(struct fuse_file_info *fi, int fd,
			 const struct fs_path *p, const struct db_image *img)
{
	int ret = new_handle(fi, fd, p, false);
	if (ret)
		return ret;
	struct handle *h = fs_handle(fi);
	struct stat st;
	h->remote = true;
	snprintf(h->win.key, sizeof(h->win.key), "%s", img->s3_key);
	snprintf(h->win.id, sizeof(h->win.id), "%s", img->id);
	h->win.size =
	    fd >= 0 && fstat(fd, &st) == 0 ? st.st_size : img->file_size;
	fi->keep_cache = 0;
	return 0;
}

/* Rows of the batch that the store has with no thumbnail (imported before
 * thumbnails) get one made, when they are first listed or read. */
static void backfill_batch(struct thumbfs *fs, const struct fs_path *p)
{
	if (db_backfill_queue(fs->db, p->patient, p->date) > 0)
		fs_jobs_kick(fs);
}

/* The change fs_mark_writing announced did not happen: as it was. */
static void unmark(struct thumbfs *fs, const struct fs_path *p, bool evicted)
{
	/* until the catalog takes it, the next mount would take the
	 * acknowledged content for a partial write, and drop it */
	if (is_image(p))
		FS_SETTLE(fs, "a write that did not happen",
			  db_writing_undo(fs->db, p->patient, p->date, p->name,
					  evicted));
}

/* A writer makes the file at sp anew: a new file, or O_TRUNC (trunc). The
 * catalog is told first (fs_mark_writing): before the name exists, or
 * before the truncate. Whatever fails on the way changes nothing: the
 * acknowledged content that was waiting to upload stays due, now and at
 * the next mount, and a name made here goes again. A handle on success. */
static int open_fresh(struct thumbfs *fs, struct fuse_file_info *fi,
		      const struct fs_path *p, const char *sp, int flags,
		      mode_t mode, bool take_owner)
{
	struct stat sb;
	bool existed = lstat(sp, &sb) == 0;
	bool trunc = existed && (flags & O_TRUNC);
	bool evicted =
	    trunc && is_image(p) &&
	    db_image_evicted(fs->db, p->patient, p->date, p->name) == 1;
	int ret = 0;
	if ((!existed || trunc) && (ret = fs_mark_writing(fs, p)))
		return ret;
	/* opened untouched, truncated below once the catalog knows; a new
	 * file takes the requester's mode and owner (fs_take_owner) */
	int fd =
	    open(sp, (flags & ~(O_NOFOLLOW | O_TRUNC)) | O_CREAT | O_CLOEXEC,
		 take_owner ? 0600 : mode);
	if (fd < 0)
		ret = -errno;
	else if (!existed && take_owner && (ret = fs_take_owner(fd, sp, mode)))
		close(fd);
	else
		ret = new_handle(fi, fd, p, false);
	if (ret == 0 && trunc && ftruncate(fd, 0)) {
		ret = -errno;
		drop_handle(fi, ret);
	}
	if (ret) {
		if (!existed && fd >= 0)
			unlink(sp);
		if (!existed || trunc)
			unmark(fs, p, evicted);
		return ret;
	}
	atomic_store(&fs_handle(fi)->dirty, (!existed || trunc) && is_image(p));
	return 0;
}

/* A thumbnail's name opened to write: a folder downloaded from the
 * archive, thumbnails and all, copied back in. What is written goes to a
 * file of its own, never the thumbnail, and is compared with the
 * thumbnail when it is saved (end_write): its own bytes are saved
 * already; others are refused there. keep: the thumbnail's bytes first
 * (opened without O_TRUNC). */
static int open_copy(struct thumbfs *fs, struct fuse_file_info *fi,
		     const struct fs_path *p, bool keep)
{
	char tmp[PATH_MAX], tp[PATH_MAX], buf[65536];
	snprintf(tmp, sizeof(tmp), "%s/copy.XXXXXX", fs->tmp);
	int fd = mkostemp(tmp, O_CLOEXEC), ret = 0;
	if (fd < 0)
		return -errno;
	unlink(tmp);
	if (keep && (ret = fs_local_thumb(fs, p, tp, sizeof(tp))) == 0) {
		int in = open(tp, O_RDONLY | O_CLOEXEC);
		ssize_t n = 0;
		if (in < 0)
			ret = -errno;
		while (in >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
			if (write(fd, buf, (size_t)n) != n) {
				n = -1;
				break;
			}
		if (n < 0)
			ret = -EIO;
		if (in >= 0)
			close(in);
	}
	if (ret) {
		close(fd);
		return ret;
	}
	if ((ret = new_handle(fi, fd, p, !keep)) == 0) /* (fd closed if not) */
		fs_handle(fi)->copy = true;
	return ret;
}

int fs_op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	char sp[PATH_MAX];
	fs_parse(fs, path, &p);
	if (p.kind == FS_FILE && p.thumb)
		return open_copy(fs, fi, &p, false); /* (not shown yet) */
	int ret = fs_may_create(fs, "create of", path, &p);
	if (ret)
		return ret;
	if (fs_spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	struct stat sb;
	bool existed = lstat(sp, &sb) == 0;
	if ((ret = open_fresh(fs, fi, &p, sp, fi->flags, mode, true)))
		return ret;
	if (!existed || (fi->flags & O_TRUNC))
		return 0;
	/* an existing image opened to write: whole first */
	if ((ret = fs_cache_restore(fs, &p, sp)))
		return drop_handle(fi, ret);
	return 0;
}

static int open_status(struct thumbfs *fs, bool json, struct fuse_file_info *fi)
{
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EACCES;
	struct handle *h = calloc(1, sizeof(*h));
	if (!h || !(h->status = fs_status_render(fs, json))) {
		free(h);
		return -ENOMEM;
	}
	h->fd = -1;
	h->status_len = strlen(h->status);
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->win.lock, NULL);
	track(h);
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = 1;
	return 0;
}

/* An image the spool has no file for: in the store only, written by
 * another mount or the web app. */
static int open_stored(struct thumbfs *fs, const struct fs_path *p,
		       const char *path, int flags, struct fuse_file_info *fi)
{
	struct db_image img;
	char sp[PATH_MAX];
	ino_t held;
	if (db_image_get(fs->db, p->patient, p->date, p->name, &img) ||
	    strcmp(img.state, "uploaded") || !img.s3_key[0])
		return -ENOENT;
	if (!img.s3_thumbnail_key[0] && !img.error[0])
		backfill_batch(fs, p);
	if ((flags & O_ACCMODE) == O_RDONLY)
		return remote_handle(fi, -1, p, &img);
	int ret = fs_whole_image(fs, p, path, sp, sizeof(sp), &held);
	if (ret)
		return ret;
	int fd = open(sp, flags);
	ret = fd < 0 ? -errno : new_handle(fi, fd, p, false);
	fs_cache_put(fs->cache, held);
	return ret;
}

int fs_op_open(const char *path, struct fuse_file_info *fi)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	char sp[PATH_MAX];
	int acc = fi->flags & O_ACCMODE, ret, fd;
	fs_parse(fs, path, &p);
	if (p.kind == FS_STATUS)
		return open_status(fs, p.json, fi);
	if (p.kind != FS_FILE)
		return p.kind == FS_INVALID ? -ENOENT : -EISDIR;
	bool trunc = (fi->flags & O_TRUNC) && acc != O_RDONLY;
	int flags = (fi->flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW)) | O_CLOEXEC;
	if (p.thumb) {
		if (acc != O_RDONLY)
			return open_copy(fs, fi, &p, !trunc);
		if ((ret = fs_local_thumb(fs, &p, sp, sizeof(sp))))
			return ret;
		fd = open(sp, flags);
		return fd < 0 ? -errno : new_handle(fi, fd, &p, false);
	}
	if (fs_spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	if (trunc) /* of an image in the store only, too: made anew */
		return open_fresh(fs, fi, &p, sp, flags | O_TRUNC, 0644, false);
	fd = open(sp, flags);
	if (fd < 0)
		return errno != ENOENT || p.local
			   ? -errno
			   : open_stored(fs, &p, path, flags, fi);
	/* held from here: an evicted file stays as it is until restored */
	if ((ret = new_handle(fi, fd, &p, false)) || p.local ||
	    db_image_evicted(fs->db, p.patient, p.date, p.name) != 1)
		return ret;
	if (acc != O_RDONLY) {
		if ((ret = fs_cache_restore(fs, &p, sp)))
			return drop_handle(fi, ret);
		return 0;
	}
	struct db_image img;
	struct handle *h = fs_handle(fi);
	struct stat st;
	if (db_image_get(fs->db, p.patient, p.date, p.name, &img))
		return drop_handle(fi, -EIO);
	h->remote = true;
	snprintf(h->win.key, sizeof(h->win.key), "%s", img.s3_key);
	snprintf(h->win.id, sizeof(h->win.id), "%s", img.id);
	h->win.size = fstat(fd, &st) ? img.file_size : st.st_size;
	return 0;
}

int fs_op_read(const char *path, char *buf, size_t size, off_t off,
	       struct fuse_file_info *fi)
{
	struct handle *h = fs_handle(fi);
	(void)path;
	if (h->status) {
		if ((size_t)off >= h->status_len)
			return 0;
		if (size > h->status_len - (size_t)off)
			size = h->status_len - (size_t)off;
		memcpy(buf, h->status + off, size);
		return (int)size;
	}
	if (h->remote)
		return fs_remote_read(fs_get(), &h->win, buf, size, off);
	ssize_t n = pread(h->fd, buf, size, off);
	return n < 0 ? -errno : (int)n;
}

int fs_op_write(const char *path, const char *buf, size_t size, off_t off,
		struct fuse_file_info *fi)
{
	struct handle *h = fs_handle(fi);
	if (h->status)
		return -EBADF;
	int ret = begin_write(fs_get(), h, path);
	if (ret)
		return ret;
	ssize_t n = pwrite(h->fd, buf, size, off);
	if (n < 0)
		return -errno;
	atomic_store(&h->dirty, true);
	return (int)n;
}

int fs_handle_truncate(struct thumbfs *fs, struct handle *h, const char *path,
		       off_t size)
{
	int ret = begin_write(fs, h, path);
	if (ret)
		return ret;
	if (ftruncate(h->fd, size))
		return -errno;
	atomic_store(&h->dirty, true);
	return 0;
}

int fs_op_release(const char *path, struct fuse_file_info *fi)
{
	struct handle *h = fs_handle(fi);
	struct fs_path p;
	bool writer = h->writable;
	if (h->fd >= 0)
		end_write(fs_get(), h, path); /* written after the last flush */
	follow(fs_get(), h, NULL, &p);
	free_handle(h);
	if (writer && is_image(&p)) /* what waited for it may go now */
		fs_deferred_closed(fs_get(), &p);
	return 0;
}

/* What fsync() returns: the data, its name and its catalog row are on
 * disk, across a power cut, and the writer may rely on them; so it is
 * queued for ingest as a close() would, and the catalog synced. */
int fs_op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct thumbfs *fs = fs_get();
	struct handle *h = fs_handle(fi);
	char sp[PATH_MAX];
	struct fs_path p;
	if (h->status || h->fd < 0)
		return 0;
	if (datasync ? fdatasync(h->fd) : fsync(h->fd))
		return -errno;
	int ret = end_write(fs, h, path);
	if (ret == 0 && (ret = db_sync(fs->db)))
		ret = ret == -ENOSPC ? ret : -EIO;
	follow(fs, h, path, &p);
	if (ret == 0 && p.kind == FS_FILE &&
	    !fs_spool_file(fs, p.patient, p.date, p.name, sp, sizeof(sp)))
		ret = fs_sync_parent(sp);
	return ret;
}

/* close(): what it returns is what the writer is told, so the ingest is
 * queued here (release comes later, and its result reaches no one). */
int fs_op_flush(const char *path, struct fuse_file_info *fi)
{
	struct handle *h = fs_handle(fi);
	return h->status ? 0 : end_write(fs_get(), h, path);
}

/* A request that came with an open handle of a spool file. */
struct handle *fs_file_handle(struct fuse_file_info *fi)
{
	struct handle *h = fs_handle(fi);
	return h && !h->status && h->fd >= 0 ? h : NULL;
}
