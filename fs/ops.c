/* ops.c - the FUSE operations: the spool as the tree, thumbnails and the
 * status file laid over it, and ingest queued when a write is done. */
#define FUSE_USE_VERSION 314
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <fuse.h>

#include "fs/log.h"
#include "fs/thumbfs.h"

/* An open file. status is set for .thumbfs/status, fd otherwise. */
struct handle {
	int fd;
	/* written, truncated or created through this handle since the writer
	 * was last told it is saved (close, fsync); for an image, the catalog
	 * knows it is being written */
	bool dirty;
	bool image; /* a visible image: ingested when it is saved */
	struct fs_path path;
	char *status;
	size_t status_len;
	uid_t uid; /* who opened it: the writer uploaded_by names */
	pid_t pid;
	ino_t ino; /* its spool file, held in the cache; 0: none */
	/* an image whose content is in the store only (evicted, or written
	 * by another mount), opened to read: read by ranged GETs of a
	 * window around the offset asked for */
	bool remote;
	char key[DB_KEY_MAX];
	int64_t size;
	pthread_mutex_t win_lock; /* reads of one handle may come at once */
	unsigned char *win;
	uint64_t win_off;
	size_t win_len;
};

/* The window a remote read fetches: partial reads cost one small GET, a
 * whole read one GET per MiB. */
#define WINDOW (1u << 20)

static struct thumbfs *fs_get(void)
{
	return fuse_get_context()->private_data;
}

static struct handle *fh(struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

/* Parse path; log the rule an invalid one broke when the caller is making
 * something (the errno alone does not say which rule failed). */
static void parse(struct thumbfs *fs, const char *path, struct fs_path *p,
		  bool creating)
{
	fs_path_parse(&fs->rules, path, p);
	if (p->kind == FS_INVALID && creating)
		log_warn("refused '%s': %s", path, p->why);
}

static int spool_path(struct thumbfs *fs, const char *path, char *out, size_t n)
{
	if (snprintf(out, n, "%s%s", fs->spool,
		     strcmp(path, "/") ? path : "") >= (int)n)
		return -ENAMETOOLONG;
	return 0;
}

/* Make a file at p: only a non-thumbnail name in a date directory. */
static int may_create_file(const char *path, const struct fs_path *p)
{
	if (p->kind == FS_FILE && !p->thumb)
		return 0;
	if (p->kind == FS_FILE) {
		log_warn("refused '%s': '*_thumb.*' names are made by thumbfs",
			 path);
		return -EPERM;
	}
	if (p->kind == FS_INVALID && p->depth == 4)
		return p->err;
	log_warn("refused '%s': files belong in patients/<id>/<YYYY-MM-DD>/",
		 path);
	return -EPERM;
}

static int queue_ingest(struct thumbfs *fs, const struct fs_path *p,
			int64_t size, uid_t uid)
{
	char who[256];
	cfg_uploaded_by(&fs->cfg, uid, who, sizeof(who));
	int ret =
	    db_image_written(fs->db, p->patient, p->date, p->name, size, who);
	if (ret)
		log_error("catalog write of 'patients/%s/%s/%s' failed: %s",
			  p->patient, p->date, p->name, strerror(-ret));
	else
		fs_worker_kick(fs);
	return ret;
}

/* The sha256 the catalog has for the image at path, or "". */
static void image_sha(struct thumbfs *fs, const char *path, char sha[65])
{
	struct fs_path p;
	struct db_image img;
	sha[0] = '\0';
	fs_path_parse(&fs->rules, path, &p);
	if (p.kind == FS_FILE && !p.local && !p.thumb &&
	    db_image_get(fs->db, p.patient, p.date, p.name, &img) == 0)
		memcpy(sha, img.sha256, 65);
}

/* The audit log's line for the request being served: a change made, or
 * an operation refused. Returns ret. */
static int audited(const char *op, const char *path, const char *to,
		   const char *sha256, int64_t size, int ret)
{
	struct thumbfs *fs = fs_get();
	const struct fuse_context *c = fuse_get_context();
	struct audit_event e = {.op = op,
				.path = path,
				.to = to,
				.sha256 = sha256,
				.size = size,
				.result = ret,
				.uid = c->uid,
				.pid = c->pid};
	if (fs->audit)
		audit_log(fs->audit, &e);
	return ret;
}

/* The image p left the mount: forget its row and its cached thumbnail. */
static void forget_image(struct thumbfs *fs, const struct fs_path *p)
{
	struct db_image img;
	char tp[PATH_MAX];
	if (db_image_get(fs->db, p->patient, p->date, p->name, &img))
		return;
	if (img.thumbnail_name[0] &&
	    !fs_thumb_path(fs, p->patient, p->date, img.thumbnail_name, tp,
			   sizeof(tp)))
		unlink(tp);
	char who[64];
	cfg_user_name(fuse_get_context()->uid, who, sizeof(who));
	int ret = db_image_removed(fs->db, p->patient, p->date, p->name, who);
	if (ret && ret != -ENOENT)
		log_error("catalog removal of 'patients/%s/%s/%s' failed: %s",
			  p->patient, p->date, p->name, strerror(-ret));
	fs_worker_kick(fs);
}

/* The stat of content that lives in the store only (written by another
 * mount or the web app), from its catalog row. */
static void row_stat(const struct db_image *img, bool thumb, struct stat *st)
{
	struct tm tm;
	memset(st, 0, sizeof(*st));
	memset(&tm, 0, sizeof(tm));
	st->st_mode = S_IFREG | (thumb ? 0444 : 0644);
	st->st_nlink = 1;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_size = thumb ? img->thumbnail_size : img->file_size;
	st->st_blksize = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
	if (strptime(img->updated_at, "%Y-%m-%dT%H:%M:%S", &tm))
		st->st_mtime = timegm(&tm);
	st->st_atime = st->st_ctime = st->st_mtime;
}

/* Bring key from the store to dest, whole or not at all (through tmp/). */
static int fetch(struct thumbfs *fs, const char *key, const char *dest)
{
	char tmp[PATH_MAX], err[512];
	snprintf(tmp, sizeof(tmp), "%s/fetch.%lx.%lx", fs->tmp,
		 (unsigned long)getpid(), (unsigned long)pthread_self());
	int ret = s3_get_file(fs->store, key, tmp, err, sizeof(err));
	if (!ret && rename(tmp, dest))
		ret = -errno;
	if (ret) {
		unlink(tmp);
		log_error("fetch of '%s' failed: %s", key,
			  ret == -errno ? strerror(-ret) : err);
	}
	return ret == -ENOENT ? -EIO : ret;
}

/* The cached thumbnail p, fetched from the store if it is not cached. */
static int local_thumb(struct thumbfs *fs, const struct fs_path *p, char *tp,
		       size_t n)
{
	struct db_image img;
	struct stat st;
	if (fs_thumb_path(fs, p->patient, p->date, p->name, tp, n))
		return -ENAMETOOLONG;
	if (lstat(tp, &st) == 0 || errno != ENOENT)
		return 0;
	if (db_image_get_by_thumb(fs->db, p->patient, p->date, p->name, &img) ||
	    !img.s3_thumbnail_key[0])
		return -ENOENT;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/%s", fs->thumbs, p->patient);
	mkdir(dir, 0700);
	snprintf(dir, sizeof(dir), "%s/%s/%s", fs->thumbs, p->patient, p->date);
	mkdir(dir, 0700);
	return fetch(fs, img.s3_thumbnail_key, tp);
}

/* The spool file of image p with its content, fetched from the store if
 * only the catalog has it, restored if it was evicted, and held in the
 * cache (*held, for fs_cache_put) so that it stays whole. 0 with sp
 * holding its path, or -errno (-ENOENT: no such image). */
static int whole_image(struct thumbfs *fs, const struct fs_path *p,
		       const char *path, char *sp, size_t n, ino_t *held)
{
	struct db_image img;
	struct stat st;
	int ret;
	*held = 0;
	if (spool_path(fs, path, sp, n))
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

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	/* O_TRUNC arrives with open(), so a truncate-and-write is one
	 * write, not an empty file ingested first. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->max_write > FS_IO_SIZE)
		conn->max_write = FS_IO_SIZE;
	cfg->use_ino = 0;
	cfg->entry_timeout = 1.0;
	cfg->attr_timeout = 1.0;
	cfg->negative_timeout = 0.0;
	cfg->hard_remove = 1;
	return fuse_get_context()->private_data;
}

static void status_stat(struct thumbfs *fs, struct stat *st)
{
	char *text = fs_status_text(fs);
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_size = text ? (off_t)strlen(text) : 0;
	st->st_mtime = time(NULL);
	st->st_atime = st->st_ctime = st->st_mtime;
	free(text);
}

static int getattr(struct thumbfs *fs, const char *path, struct stat *st,
		   struct fuse_file_info *fi)
{
	struct fs_path p;
	struct db_image img;
	char sp[PATH_MAX];

	if (fi && fh(fi) && !fh(fi)->status && fh(fi)->fd >= 0)
		return fstat(fh(fi)->fd, st) ? -errno : 0;
	parse(fs, path, &p, false);
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
		status_stat(fs, st);
		return 0;
	case FS_FILE:
		if (p.thumb) {
			if (fs_thumb_path(fs, p.patient, p.date, p.name, sp,
					  sizeof(sp)) == 0 &&
			    lstat(sp, st) == 0) {
				st->st_mode = S_IFREG | 0444;
				return 0;
			}
			if (db_image_get_by_thumb(fs->db, p.patient, p.date,
						  p.name, &img) ||
			    !img.s3_thumbnail_key[0])
				return -ENOENT;
			row_stat(&img, true, st);
			return 0;
		}
		if (spool_path(fs, path, sp, sizeof(sp)))
			return -ENAMETOOLONG;
		if (lstat(sp, st) == 0)
			return 0;
		if (errno != ENOENT)
			return -errno;
		if (p.local ||
		    db_image_get(fs->db, p.patient, p.date, p.name, &img) ||
		    strcmp(img.state, "uploaded"))
			return -ENOENT;
		row_stat(&img, false, st);
		return 0;
	default:
		if (spool_path(fs, path, sp, sizeof(sp)))
			return -ENAMETOOLONG;
		return lstat(sp, st) ? -errno : 0;
	}
}

/* The kernel checks access against what getattr shows
 * (default_permissions): [fs] uid, gid and umask apply here. */
static int op_getattr(const char *path, struct stat *st,
		      struct fuse_file_info *fi)
{
	struct thumbfs *fs = fs_get();
	int ret = getattr(fs, path, st, fi);
	if (ret)
		return ret;
	if (fs->cfg.show_uid >= 0)
		st->st_uid = (uid_t)fs->cfg.show_uid;
	if (fs->cfg.show_gid >= 0)
		st->st_gid = (gid_t)fs->cfg.show_gid;
	st->st_mode &= ~(mode_t)fs->cfg.show_umask;
	/* the most one FUSE write carries (libfuse's max_write): cp sizes
	 * its buffer by it, and writes a file in 8 times fewer requests
	 * than with its usual 128 KiB */
	st->st_blksize = FS_IO_SIZE;
	return 0;
}

/* Something new in the spool takes the mode the client asked for (the
 * kernel has applied its umask; the daemon's own must not apply again),
 * and, when the daemon runs as root, the owner of the request. */
static int take_owner(int fd, const char *sp, mode_t mode)
{
	const struct fuse_context *ctx = fuse_get_context();
	if (fd >= 0 ? fchmod(fd, mode & 07777) : chmod(sp, mode & 07777))
		return -errno;
	if (geteuid() != 0)
		return 0;
	if (fd >= 0 ? fchown(fd, ctx->uid, ctx->gid)
		    : lchown(sp, ctx->uid, ctx->gid))
		return -errno;
	return 0;
}

/* A batch lists its images and their thumbnails from the catalog (some
 * live in the store only), then the spool's other files (hidden, ignored,
 * or still being written). */
struct listing {
	void *buf;
	fuse_fill_dir_t filler;
	char **names; /* the catalog's image names, sorted */
	size_t n;
	size_t cap;
	int err;
	int unthumbed; /* rows with no thumbnail (yet) */
};

static int list_row(const char *name, const char *thumb, void *arg)
{
	struct listing *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		char **nn = realloc(l->names, cap * sizeof(char *));
		if (!nn)
			return -ENOMEM;
		l->names = nn;
		l->cap = cap;
	}
	if (!(l->names[l->n] = strdup(name)))
		return -ENOMEM;
	l->n++;
	l->filler(l->buf, name, NULL, 0, 0);
	if (thumb[0])
		l->filler(l->buf, thumb, NULL, 0, 0);
	else
		l->unthumbed++;
	return 0;
}

/* Rows of the batch that the store has with no thumbnail (imported before
 * thumbnails) get one made, when they are first listed or read. */
static void backfill(struct thumbfs *fs, const char *patient, const char *date)
{
	if (db_backfill_queue(fs->db, patient, date) > 0)
		fs_worker_kick(fs);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int fill_dir(const char *dir, void *buf, fuse_fill_dir_t filler,
		    const struct listing *skip)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		const char *name = e->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		if (skip && skip->n &&
		    bsearch(&name, skip->names, skip->n, sizeof(char *),
			    cmp_name))
			continue;
		if (filler(buf, name, NULL, 0, 0))
			break;
	}
	closedir(d);
	return 0;
}

static int fill_batch(struct thumbfs *fs, const struct fs_path *p,
		      const char *sp, void *buf, fuse_fill_dir_t filler)
{
	struct listing l = {.buf = buf, .filler = filler};
	int ret = db_list_batch(fs->db, p->patient, p->date, list_row, &l);
	/* ORDER BY name sorts as strcmp() (BINARY): ready for bsearch */
	if (ret == 0)
		ret = fill_dir(sp, buf, filler, &l);
	if (l.unthumbed)
		backfill(fs, p->patient, p->date);
	for (size_t i = 0; i < l.n; i++)
		free(l.names[i]);
	free(l.names);
	return ret;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
		      off_t off, struct fuse_file_info *fi,
		      enum fuse_readdir_flags flags)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	char sp[PATH_MAX];
	(void)off;
	(void)fi;
	(void)flags;

	parse(fs, path, &p, false);
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	switch (p.kind) {
	case FS_ROOT:
		/* .thumbfs is reached by name only, so that a copy or an
		 * rsync --delete of the whole mount never meets it */
		filler(buf, "patients", NULL, 0, 0);
		return 0;
	case FS_META:
		filler(buf, "status", NULL, 0, 0);
		return 0;
	case FS_PATIENTS:
	case FS_PATIENT:
	case FS_BATCH:
		if (spool_path(fs, path, sp, sizeof(sp)))
			return -ENAMETOOLONG;
		if (p.kind == FS_BATCH)
			return fill_batch(fs, &p, sp, buf, filler);
		return fill_dir(sp, buf, filler, NULL);
	default:
		return -ENOTDIR;
	}
}

static int do_mkdir(const char *path, mode_t mode)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	char sp[PATH_MAX];
	parse(fs, path, &p, true);
	switch (p.kind) {
	case FS_PATIENT:
	case FS_BATCH:
		break;
	case FS_INVALID:
		return p.depth >= 4 || p.depth <= 1 ? -EPERM : p.err;
	case FS_FILE:
		log_warn("refused '%s': nothing may be below a date directory",
			 path);
		return -EPERM;
	default:
		return -EEXIST;
	}
	if (spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	if (mkdir(sp, 0700))
		return -errno;
	int ret = take_owner(-1, sp, mode);
	if (ret)
		rmdir(sp);
	return ret;
}

static int do_rmdir(const char *path)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	char sp[PATH_MAX];
	parse(fs, path, &p, false);
	if (p.kind != FS_PATIENT && p.kind != FS_BATCH)
		return p.kind == FS_FILE ? -ENOTDIR : -EPERM;
	if (spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	if (rmdir(sp))
		return -errno;
	if (p.kind == FS_BATCH) {
		snprintf(sp, sizeof(sp), "%s/%s/%s", fs->thumbs, p.patient,
			 p.date);
		rmdir(sp);
	} else {
		snprintf(sp, sizeof(sp), "%s/%s", fs->thumbs, p.patient);
		rmdir(sp);
	}
	return 0;
}

/* The image p is about to change: tell the catalog first, so that a
 * daemon that dies before the writer is told it is saved leaves the file
 * whole or absent at the next mount (fs_reconcile). */
static int mark_writing(struct thumbfs *fs, const struct fs_path *p)
{
	if (p->kind != FS_FILE || p->local || p->thumb)
		return 0;
	int ret = db_image_writing(fs->db, p->patient, p->date, p->name);
	if (ret) {
		log_error("catalog write of 'patients/%s/%s/%s' failed: %s",
			  p->patient, p->date, p->name, strerror(-ret));
		return ret == -ENOSPC ? ret : -EIO;
	}
	return 0;
}

static int begin_write(struct thumbfs *fs, struct handle *h)
{
	if (h->dirty || !h->image)
		return 0;
	int ret = mark_writing(fs, &h->path);
	if (ret == 0)
		h->dirty = true;
	return ret;
}

/* The writer of h is told its data is saved (close, fsync): queue the
 * ingest of what it wrote. */
static int end_write(struct thumbfs *fs, struct handle *h)
{
	struct stat st;
	char path[PATH_MAX];
	if (!h->dirty || !h->image)
		return 0;
	int ret = fstat(h->fd, &st) ? -errno : 0;
	if (ret == 0)
		ret = queue_ingest(fs, &h->path, (int64_t)st.st_size, h->uid);
	if (ret && ret != -ENOSPC)
		ret = -EIO;
	if (ret == 0)
		h->dirty = false;
	if (fs->audit) { /* by the writer: release has no caller */
		snprintf(path, sizeof(path), "/patients/%s/%s/%s",
			 h->path.patient, h->path.date, h->path.name);
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
	h->image = p->kind == FS_FILE && !p->local && !p->thumb;
	h->uid = fuse_get_context()->uid;
	h->pid = fuse_get_context()->pid;
	h->dirty = dirty; /* if so, the caller marked it before the change */
	pthread_mutex_init(&h->win_lock, NULL);
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0) {
		h->ino = st.st_ino;
		fs_cache_hold(fs_get()->cache, h->ino);
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	return 0;
}

static void free_handle(struct handle *h)
{
	if (h->ino)
		fs_cache_put(fs_get()->cache, h->ino);
	if (h->fd >= 0)
		close(h->fd);
	pthread_mutex_destroy(&h->win_lock);
	free(h->win);
	free(h->status);
	free(h);
}

/* An image that is in the store only, opened to read: a handle that reads
 * it by ranges, keeping fd (-1: none) for its metadata. */
static int remote_handle(struct fuse_file_info *fi, int fd,
			 const struct fs_path *p, const struct db_image *img)
{
	int ret = new_handle(fi, fd, p, false);
	if (ret)
		return ret;
	struct handle *h = fh(fi);
	h->remote = true;
	snprintf(h->key, sizeof(h->key), "%s", img->s3_key);
	h->size = img->file_size;
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0)
		h->size = st.st_size;
	fi->keep_cache = 0;
	return 0;
}

static int remote_read(struct handle *h, char *buf, size_t size, off_t off)
{
	struct thumbfs *fs = fs_get();
	char err[512];
	size_t done = 0;
	int ret = 0;
	pthread_mutex_lock(&h->win_lock);
	while (done < size && off + (int64_t)done < h->size) {
		uint64_t at = (uint64_t)off + done;
		if (!h->win || at < h->win_off ||
		    at >= h->win_off + h->win_len) {
			size_t got = 0;
			uint64_t start = at - at % WINDOW;
			if (!h->win && !(h->win = malloc(WINDOW))) {
				ret = -ENOMEM;
				break;
			}
			h->win_len = 0;
			ret = s3_get_range(fs->store, h->key, start, WINDOW,
					   h->win, &got, err, sizeof(err));
			if (ret) {
				log_error("read of '%s' from the store failed: "
					  "%s",
					  h->key, err);
				ret = -EIO;
				break;
			}
			h->win_off = start;
			h->win_len = got;
			if (at >= start + got)
				break; /* the object is shorter than its row */
		}
		size_t take = (size_t)(h->win_off + h->win_len - at);
		if (take > size - done)
			take = size - done;
		memcpy(buf + done, h->win + (at - h->win_off), take);
		done += take;
	}
	pthread_mutex_unlock(&h->win_lock);
	return ret ? ret : (int)done;
}

static int do_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	char sp[PATH_MAX];
	parse(fs, path, &p, true);
	int ret = may_create_file(path, &p);
	if (ret)
		return ret;
	if (spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	struct stat sb;
	bool existed = lstat(sp, &sb) == 0;
	bool fresh = !existed || (fi->flags & O_TRUNC);
	if (fresh && (ret = mark_writing(fs, &p)))
		return ret;
	int fd =
	    open(sp, (fi->flags & ~O_NOFOLLOW) | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (!existed && (ret = take_owner(fd, sp, mode))) {
		close(fd);
		unlink(sp);
		return ret;
	}
	if ((ret = new_handle(fi, fd, &p, fresh)) || fresh)
		return ret;
	/* an existing image opened to write: whole first */
	if ((ret = fs_cache_restore(fs, &p, sp))) {
		free_handle(fh(fi));
		fi->fh = 0;
	}
	return ret;
}

static int do_open(const char *path, struct fuse_file_info *fi)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	char sp[PATH_MAX];
	int acc = fi->flags & O_ACCMODE;
	parse(fs, path, &p, false);
	if (p.kind == FS_STATUS) {
		if (acc != O_RDONLY)
			return -EACCES;
		struct handle *h = calloc(1, sizeof(*h));
		if (!h || !(h->status = fs_status_text(fs))) {
			free(h);
			return -ENOMEM;
		}
		h->fd = -1;
		h->status_len = strlen(h->status);
		fi->fh = (uint64_t)(uintptr_t)h;
		fi->direct_io = 1;
		return 0;
	}
	if (p.kind != FS_FILE)
		return p.kind == FS_INVALID ? -ENOENT : -EISDIR;
	int ret;
	bool trunc = (fi->flags & O_TRUNC) && acc != O_RDONLY;
	int flags = (fi->flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW)) | O_CLOEXEC;
	if (p.thumb) {
		if (acc != O_RDONLY)
			return -EACCES;
		if ((ret = local_thumb(fs, &p, sp, sizeof(sp))))
			return ret;
		int fd = open(sp, flags);
		return fd < 0 ? -errno : new_handle(fi, fd, &p, false);
	}
	if (spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	if (trunc) {
		if ((ret = mark_writing(fs, &p)))
			return ret;
		/* truncating an image that lives in the store only makes it
		 * anew */
		int fd = open(sp, flags | O_CREAT, 0644);
		return fd < 0 ? -errno : new_handle(fi, fd, &p, true);
	}
	int fd = open(sp, flags);
	if (fd < 0 && (errno != ENOENT || p.local))
		return -errno;
	if (fd < 0) { /* in the store only, written by another mount */
		struct db_image img;
		if (db_image_get(fs->db, p.patient, p.date, p.name, &img) ||
		    strcmp(img.state, "uploaded") || !img.s3_key[0])
			return -ENOENT;
		if (!img.s3_thumbnail_key[0] && !img.error[0])
			backfill(fs, p.patient, p.date);
		if (acc == O_RDONLY)
			return remote_handle(fi, -1, &p, &img);
		ino_t held;
		if ((ret = whole_image(fs, &p, path, sp, sizeof(sp), &held)))
			return ret;
		fd = open(sp, flags);
		ret = fd < 0 ? -errno : new_handle(fi, fd, &p, false);
		fs_cache_put(fs->cache, held);
		return ret;
	}
	/* held from here: an evicted file stays as it is until restored */
	if ((ret = new_handle(fi, fd, &p, false)) || p.local)
		return ret;
	int evicted = db_image_evicted(fs->db, p.patient, p.date, p.name);
	if (evicted != 1)
		return 0;
	if (acc == O_RDONLY) {
		struct db_image img;
		struct handle *h = fh(fi);
		if (db_image_get(fs->db, p.patient, p.date, p.name, &img) ==
		    0) {
			h->remote = true;
			snprintf(h->key, sizeof(h->key), "%s", img.s3_key);
			struct stat st;
			h->size = fstat(fd, &st) ? img.file_size : st.st_size;
			return 0;
		}
		ret = -EIO;
	} else {
		ret = fs_cache_restore(fs, &p, sp);
	}
	if (ret) {
		free_handle(fh(fi));
		fi->fh = 0;
	}
	return ret;
}

/* An open refused by thumbfs (not a missing name) is in the audit log. */
static int op_open(const char *path, struct fuse_file_info *fi)
{
	int ret = do_open(path, fi);
	return ret && ret != -ENOENT
		   ? audited("open", path, NULL, NULL, -1, ret)
		   : ret;
}

static int op_read(const char *path, char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	struct handle *h = fh(fi);
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
		return remote_read(h, buf, size, off);
	ssize_t n = pread(h->fd, buf, size, off);
	return n < 0 ? -errno : (int)n;
}

static int op_write(const char *path, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct handle *h = fh(fi);
	(void)path;
	if (h->status)
		return -EBADF;
	int ret = begin_write(fs_get(), h);
	if (ret)
		return ret;
	ssize_t n = pwrite(h->fd, buf, size, off);
	if (n < 0)
		return -errno;
	h->dirty = true;
	return (int)n;
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
	struct handle *h = fh(fi);
	(void)path;
	if (h->fd >= 0)
		end_write(fs_get(), h); /* written after the last flush */
	free_handle(h);
	return 0;
}

/* What fsync() returns: the data is on disk and the writer may rely on
 * it, so it is queued for ingest as a close() would. */
static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct handle *h = fh(fi);
	(void)path;
	if (h->status || h->fd < 0)
		return 0;
	if (datasync ? fdatasync(h->fd) : fsync(h->fd))
		return -errno;
	return end_write(fs_get(), h);
}

/* close(): what it returns is what the writer is told, so the ingest is
 * queued here (release comes later, and its result reaches no one). */
static int op_flush(const char *path, struct fuse_file_info *fi)
{
	struct handle *h = fh(fi);
	(void)path;
	return h->status ? 0 : end_write(fs_get(), h);
}

static int do_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	char sp[PATH_MAX];
	if (fi && fh(fi) && !fh(fi)->status) {
		int ret = begin_write(fs, fh(fi));
		if (ret)
			return ret;
		if (ftruncate(fh(fi)->fd, size))
			return -errno;
		fh(fi)->dirty = true;
		return 0;
	}
	parse(fs, path, &p, false);
	if (p.kind != FS_FILE)
		return p.kind == FS_INVALID ? -ENOENT : -EISDIR;
	if (p.thumb)
		return -EPERM;
	ino_t held;
	int ret = whole_image(fs, &p, path, sp, sizeof(sp), &held);
	if (ret)
		return ret;
	/* held until the catalog knows: until then its row says the old
	 * content is settled, and an eviction would punch the new one */
	ret = truncate(sp, size) ? -errno : 0;
	if (!ret && !p.local)
		queue_ingest(fs, &p, (int64_t)size, fuse_get_context()->uid);
	fs_cache_put(fs->cache, held);
	return ret;
}

static int do_unlink(const char *path)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	char sp[PATH_MAX];
	parse(fs, path, &p, false);
	if (p.kind == FS_STATUS)
		return -EPERM;
	if (p.kind != FS_FILE)
		return p.kind == FS_INVALID ? -ENOENT : -EISDIR;
	if (p.thumb)
		return -EPERM;
	if (spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	if (unlink(sp)) {
		struct db_image img;
		int e = errno;
		/* in the store only: removing it is removing its row */
		if (e != ENOENT || p.local ||
		    db_image_get(fs->db, p.patient, p.date, p.name, &img))
			return -e;
	}
	if (!p.local)
		forget_image(fs, &p);
	return 0;
}

static int do_rename(const char *from, const char *to, unsigned int flags)
{
	struct thumbfs *fs = fs_get();
	struct fs_path pf, pt;
	char sf[PATH_MAX], st_[PATH_MAX];
	struct stat sb;

	if (flags & ~RENAME_NOREPLACE)
		return -EINVAL;
	parse(fs, from, &pf, false);
	parse(fs, to, &pt, true);
	if (pf.kind == FS_PATIENT || pf.kind == FS_BATCH)
		return -EXDEV; /* mv copies a directory then removes it */
	if (pf.kind != FS_FILE)
		return pf.kind == FS_INVALID ? -ENOENT : -EPERM;
	if (pf.thumb)
		return -EPERM;
	int ret = may_create_file(to, &pt);
	if (ret)
		return ret;
	ino_t held;
	ret = whole_image(fs, &pf, from, sf, sizeof(sf), &held);
	if (ret)
		return ret;
	if (spool_path(fs, to, st_, sizeof(st_)))
		ret = -ENAMETOOLONG;
	else if (renameat2(AT_FDCWD, sf, AT_FDCWD, st_, flags))
		ret = -errno;
	if (!ret && !pf.local)
		forget_image(fs, &pf);
	if (!ret && !pt.local && lstat(st_, &sb) == 0)
		queue_ingest(fs, &pt, (int64_t)sb.st_size,
			     fuse_get_context()->uid);
	fs_cache_put(fs->cache, held); /* after the catalog knows, as above */
	return ret;
}

/* Files and directories of the spool may change their metadata; the
 * thumbnails and the status file may not. The root may take times and
 * xattrs (rsync -a sets them on "."), but not a mode or an owner: it is
 * the spool itself, which stays 0700 (the mount shows 0755). */
static int meta_path(const char *path, char *sp, size_t n, bool owner)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	parse(fs, path, &p, false);
	if (p.kind == FS_INVALID)
		return -ENOENT;
	if ((owner && p.kind == FS_ROOT) || p.kind == FS_STATUS ||
	    p.kind == FS_META || (p.kind == FS_FILE && p.thumb))
		return -EPERM;
	return spool_path(fs, path, sp, n);
}

static int do_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	char sp[PATH_MAX];
	if (fi && fh(fi) && !fh(fi)->status)
		return fchmod(fh(fi)->fd, mode) ? -errno : 0;
	int ret = meta_path(path, sp, sizeof(sp), true);
	if (ret)
		return ret;
	return chmod(sp, mode) ? -errno : 0;
}

static int do_chown(const char *path, uid_t uid, gid_t gid,
		    struct fuse_file_info *fi)
{
	char sp[PATH_MAX];
	if (fi && fh(fi) && !fh(fi)->status)
		return fchown(fh(fi)->fd, uid, gid) ? -errno : 0;
	int ret = meta_path(path, sp, sizeof(sp), true);
	if (ret)
		return ret;
	return lchown(sp, uid, gid) ? -errno : 0;
}

static int do_utimens(const char *path, const struct timespec tv[2],
		      struct fuse_file_info *fi)
{
	char sp[PATH_MAX];
	if (fi && fh(fi) && !fh(fi)->status)
		return futimens(fh(fi)->fd, tv) ? -errno : 0;
	int ret = meta_path(path, sp, sizeof(sp), false);
	if (ret)
		return ret;
	return utimensat(AT_FDCWD, sp, tv, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}

static int op_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return statvfs(fs_get()->spool, sv) ? -errno : 0;
}

/* Only user.* attributes, kept on the spool file. */
static int xattr_path(const char *path, const char *name, char *sp, size_t n)
{
	if (name && strncmp(name, "user.", 5))
		return -ENOTSUP;
	if (name && !strncmp(name, "user.thumbfs.", 13))
		return -EPERM; /* thumbfs's own, read-only */
	return meta_path(path, sp, n, false);
}

/* user.category and user.filemaker_id of an image are its row's columns
 * of those names: a change reaches the catalog and PostgreSQL. */
static void meta_changed(const char *path, const char *name, const char *sp)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	struct db_image meta;
	if (strcmp(name, "user.category") && strcmp(name, "user.filemaker_id"))
		return;
	parse(fs, path, &p, false);
	if (p.kind != FS_FILE || p.local || p.thumb)
		return;
	fs_read_meta(sp, &meta);
	if (db_image_meta(fs->db, p.patient, p.date, p.name, meta.category,
			  meta.filemaker_id) == 0)
		fs_worker_kick(fs);
}

static int do_setxattr(const char *path, const char *name, const char *value,
		       size_t size, int flags)
{
	char sp[PATH_MAX];
	int ret = xattr_path(path, name, sp, sizeof(sp));
	if (ret)
		return ret;
	if (lsetxattr(sp, name, value, size, flags))
		return -errno;
	meta_changed(path, name, sp);
	return 0;
}

/* Read-only user.thumbfs.* attributes: what the catalog knows of an image. */
#define STATE_ATTR "user.thumbfs."
static const char *const state_attrs[] = {
    "user.thumbfs.state",
    "user.thumbfs.s3_key",
    "user.thumbfs.s3_thumbnail_key",
    "user.thumbfs.sha256",
    "user.thumbfs.width",
    "user.thumbfs.height",
    "user.thumbfs.error",
};
#define N_STATE_ATTRS (sizeof(state_attrs) / sizeof(state_attrs[0]))

static int image_row(const char *path, struct db_image *img)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	parse(fs, path, &p, false);
	if (p.kind != FS_FILE || p.local || p.thumb)
		return -ENODATA;
	return db_image_get(fs->db, p.patient, p.date, p.name, img) ? -ENODATA
								    : 0;
}

static int state_attr(const char *path, const char *name, char *value,
		      size_t size)
{
	struct db_image img;
	char buf[DB_KEY_MAX];
	const char *v = NULL;
	if (image_row(path, &img))
		return -ENODATA;
	const char *key = name + strlen(STATE_ATTR);
	if (!strcmp(key, "state"))
		v = img.state;
	else if (!strcmp(key, "s3_key"))
		v = img.s3_key;
	else if (!strcmp(key, "s3_thumbnail_key"))
		v = img.s3_thumbnail_key;
	else if (!strcmp(key, "sha256"))
		v = img.sha256;
	else if (!strcmp(key, "error"))
		v = img.error;
	else if (!strcmp(key, "width") || !strcmp(key, "height")) {
		snprintf(buf, sizeof(buf), "%d",
			 key[0] == 'w' ? img.width : img.height);
		v = buf;
	}
	if (!v)
		return -ENODATA;
	size_t len = strlen(v);
	if (size == 0)
		return (int)len;
	if (size < len)
		return -ERANGE;
	memcpy(value, v, len);
	return (int)len;
}

static int op_getxattr(const char *path, const char *name, char *value,
		       size_t size)
{
	char sp[PATH_MAX];
	if (!strncmp(name, STATE_ATTR, strlen(STATE_ATTR)))
		return state_attr(path, name, value, size);
	int ret = xattr_path(path, name, sp, sizeof(sp));
	if (ret)
		return ret == -EPERM ? -ENODATA : ret;
	ssize_t n = lgetxattr(sp, name, value, size);
	return n < 0 ? -errno : (int)n;
}

static int op_listxattr(const char *path, char *list, size_t size)
{
	struct db_image img;
	char sp[PATH_MAX];
	ssize_t n = 0;
	int ret = xattr_path(path, NULL, sp, sizeof(sp));
	if (ret)
		return ret == -EPERM ? 0 : ret;
	n = llistxattr(sp, list, size);
	if (n < 0 && errno != ENOENT) /* ENOENT: in the store only */
		return -errno;
	if (n < 0)
		n = 0;
	if (image_row(path, &img))
		return (int)n;
	for (size_t i = 0; i < N_STATE_ATTRS; i++) {
		size_t len = strlen(state_attrs[i]) + 1;
		if (size && (size_t)n + len > size)
			return -ERANGE;
		if (size)
			memcpy(list + n, state_attrs[i], len);
		n += (ssize_t)len;
	}
	return (int)n;
}

static int do_removexattr(const char *path, const char *name)
{
	char sp[PATH_MAX];
	int ret = xattr_path(path, name, sp, sizeof(sp));
	if (ret)
		return ret;
	if (lremovexattr(sp, name))
		return -errno;
	meta_changed(path, name, sp);
	return 0;
}

static int do_refuse_link(const char *from, const char *to)
{
	(void)from;
	log_warn("refused '%s': links are not kept in the archive", to);
	return -EPERM;
}

/* Each change through the mount, and each operation refused, is a line of
 * the audit log ([audit] file). */
static int op_mkdir(const char *path, mode_t mode)
{
	return audited("mkdir", path, NULL, NULL, -1, do_mkdir(path, mode));
}

static int op_rmdir(const char *path)
{
	return audited("rmdir", path, NULL, NULL, -1, do_rmdir(path));
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return audited("create", path, NULL, NULL, -1,
		       do_create(path, mode, fi));
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	return audited("truncate", path, NULL, NULL, size,
		       do_truncate(path, size, fi));
}

static int op_unlink(const char *path)
{
	char sha[65] = "";
	if (fs_get()->audit)
		image_sha(fs_get(), path, sha);
	return audited("unlink", path, NULL, sha, -1, do_unlink(path));
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
	char sha[65] = "";
	if (fs_get()->audit)
		image_sha(fs_get(), from, sha);
	return audited("rename", from, to, sha, -1, do_rename(from, to, flags));
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return audited("chmod", path, NULL, NULL, -1, do_chmod(path, mode, fi));
}

static int op_chown(const char *path, uid_t uid, gid_t gid,
		    struct fuse_file_info *fi)
{
	return audited("chown", path, NULL, NULL, -1,
		       do_chown(path, uid, gid, fi));
}

/* Times change with every copy (rsync, cp -a): only a refusal is kept. */
static int op_utimens(const char *path, const struct timespec tv[2],
		      struct fuse_file_info *fi)
{
	int ret = do_utimens(path, tv, fi);
	return ret ? audited("utimens", path, NULL, NULL, -1, ret) : 0;
}

static int op_setxattr(const char *path, const char *name, const char *value,
		       size_t size, int flags)
{
	return audited("setxattr", path, NULL, NULL, -1,
		       do_setxattr(path, name, value, size, flags));
}

static int op_removexattr(const char *path, const char *name)
{
	return audited("removexattr", path, NULL, NULL, -1,
		       do_removexattr(path, name));
}

static int op_symlink(const char *from, const char *to)
{
	return audited("symlink", to, NULL, NULL, -1, do_refuse_link(from, to));
}

static int op_link(const char *from, const char *to)
{
	return audited("link", to, NULL, NULL, -1, do_refuse_link(from, to));
}

static const struct fuse_operations ops = {
    .init = op_init,
    .getattr = op_getattr,
    .readdir = op_readdir,
    .mkdir = op_mkdir,
    .rmdir = op_rmdir,
    .create = op_create,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .truncate = op_truncate,
    .unlink = op_unlink,
    .rename = op_rename,
    .chmod = op_chmod,
    .chown = op_chown,
    .utimens = op_utimens,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .symlink = op_symlink,
    .link = op_link,
};

const struct fuse_operations *fs_operations(void)
{
	return &ops;
}
