/* ops.c - the FUSE operations on paths: the spool as the tree, with the
 * thumbnails and the status file laid over it; and the operations table.
 * Open files are handle.c's, extended attributes xattr.c's. */
#include "fs/ops.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "db/catalog.h"
#include "db/conn.h"
#include "db/queue.h"
#include "fs/cache.h"
#include "fs/handle.h"
#include "fs/jobs.h"
#include "fs/log.h"
#include "fs/move.h"
#include "fs/remote.h"
#include "fs/spool.h"
#include "fs/status.h"
#include "fs/thumbfs.h"
#include "fs/xattr.h"

struct thumbfs *fs_get(void)
{
	return fuse_get_context()->private_data;
}

void fs_parse(struct thumbfs *fs, const char *path, struct fs_path *p)
{
	fs_path_parse(&fs->rules, path, p);
}

int fs_refused(int err, const char *op, const char *path, const char *fmt, ...)
{
	char why[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warn("refused %s '%s': %s", op, path, why);
	return err;
}

/* Whether the store can hold image p and every thumbnail it may get:
 * its name at most FS_IMAGE_NAME_MAX bytes, its key short enough for a
 * thumbnail's beside it (hidden and ignored names stay local). */
static int storable(struct thumbfs *fs, const char *op, const char *path,
		    const struct fs_path *p)
{
	char key[DB_KEY_MAX - 13];
	if (p->local)
		return 0;
	if (strlen(p->name) > FS_IMAGE_NAME_MAX)
		return fs_refused(-ENAMETOOLONG, op, path,
				  "an image's name has at most %d bytes, this "
				  "one %zu (its thumbnail's name must fit in "
				  "255)",
				  FS_IMAGE_NAME_MAX, strlen(p->name));
	if (fs_image_key(fs, p->patient, p->date, p->name, key, sizeof(key)))
		return fs_refused(-ENAMETOOLONG, op, path,
				  "its store key would be over %d bytes",
				  (int)sizeof(key) - 1);
	return 0;
}

int fs_may_create(struct thumbfs *fs, const char *op, const char *path,
		  const struct fs_path *p)
{
	if (p->kind == FS_FILE && !p->thumb)
		return storable(fs, op, path, p);
	if (p->kind == FS_FILE)
		return fs_refused(-EPERM, op, path,
				  "'*_thumb.*' names are made by thumbfs");
	/* in a date directory, the rule the path broke; above it, where
	 * files go (not why the name is no patient id or date) */
	if (p->kind == FS_INVALID && p->depth >= 4)
		return fs_refused(p->err, op, path, "%s", p->why);
	return fs_refused(-EPERM, op, path,
			  "files belong in patients/<id>/<YYYY-MM-DD>/");
}

/* Whether the requester is in group gid (its own or a supplementary). */
static bool in_group(gid_t gid)
{
	const struct fuse_context *ctx = fuse_get_context();
	gid_t list[64];
	if (gid == ctx->gid)
		return true;
	int n = fuse_getgroups(64, list);
	for (int i = 0; i < n && i < 64; i++)
		if (list[i] == gid)
			return true;
	return false;
}

int fs_take_owner(int fd, const char *sp, mode_t mode)
{
	const struct fuse_context *ctx = fuse_get_context();
	struct stat st, dir;
	char parent[PATH_MAX];
	gid_t gid = ctx->gid;
	mode &= 07777;
	if (geteuid() == 0) {
		/* in a setgid directory what is made takes the directory's
		 * group, and a directory the setgid bit too */
		snprintf(parent, sizeof(parent), "%s", sp);
		char *slash = strrchr(parent, '/');
		if (slash)
			*slash = '\0';
		if (fd >= 0 ? fstat(fd, &st) : lstat(sp, &st))
			return -errno;
		if (slash && stat(parent, &dir) == 0 &&
		    (dir.st_mode & S_ISGID)) {
			gid = dir.st_gid;
			if (S_ISDIR(st.st_mode))
				mode |= S_ISGID;
		}
		/* the owner first: a chown drops the setuid and setgid bits
		 * the mode then sets */
		if (fd >= 0 ? fchown(fd, ctx->uid, gid)
			    : lchown(sp, ctx->uid, gid))
			return -errno;
		/* as the kernel does: a file's setgid bit needs its group */
		if (!S_ISDIR(st.st_mode) && ctx->uid != 0 && !in_group(gid))
			mode &= ~(mode_t)S_ISGID;
	}
	if (fd >= 0 ? fchmod(fd, mode) : chmod(sp, mode))
		return -errno;
	return 0;
}

/* A request that came with an open handle of a spool file. */
static struct handle *file_handle(struct fuse_file_info *fi)
{
	struct handle *h = fs_handle(fi);
	return h && !h->status && h->fd >= 0 ? h : NULL;
}

/* The image p left the mount: forget its row and its cached thumbnail. */
static void forget_image(struct thumbfs *fs, const struct fs_path *p)
{
	struct db_image img;
	char tp[PATH_MAX], who[64];
	/* (with no row, a write under way is forgotten all the same) */
	if (db_image_get(fs->db, p->patient, p->date, p->name, &img) == 0 &&
	    img.thumbnail_name[0] &&
	    !fs_thumb_path(fs, p->patient, p->date, img.thumbnail_name, tp,
			   sizeof(tp)))
		unlink(tp);
	cfg_user_name(fuse_get_context()->uid, who, sizeof(who));
	int ret = db_image_removed(fs->db, p->patient, p->date, p->name, who);
	if (ret && ret != -ENOENT) {
		fs_tree_path(tp, sizeof(tp), NULL, p->patient, p->date,
			     p->name);
		log_error("catalog removal of '%s' failed: %s", tp,
			  strerror(-ret));
	}
	fs_jobs_kick(fs);
}

/* The stat of content that lives in the store only (written by another
 * mount or the web app), from its catalog row. */
/* What a file that is in the store only shows: its row's size and time. */
static void stored_stat(int64_t size, const char *updated_at, bool thumb,
			struct stat *st)
{
	struct tm tm;
	memset(st, 0, sizeof(*st));
	memset(&tm, 0, sizeof(tm));
	st->st_mode = S_IFREG | (thumb ? 0444 : 0644);
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
	stored_stat(thumb ? img->thumbnail_size : img->file_size,
		    img->updated_at, thumb, st);
}

static void *fs_op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
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
	/* a file unlinked while open keeps its name, hidden, until it is
	 * closed: its handle reads, writes and stats it as on a local disk
	 * (libfuse renames it to .fuse_hidden..., as sshfs does) */
	cfg->hard_remove = 0;
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
			st->st_mode = S_IFREG | 0444;
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
	struct handle *h = file_handle(fi);
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
		status_stat(fs, st);
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
static void shown(const struct thumbfs *fs, struct stat *st)
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

static int getattr_shown(const char *path, struct stat *st,
			 struct fuse_file_info *fi)
{
	struct thumbfs *fs = fs_get();
	int ret = getattr(fs, path, st, fi);
	if (ret == 0)
		shown(fs, st);
	return ret;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct db_name *)a)->name,
		      ((const struct db_name *)b)->name);
}

/* An open directory's entries, taken when it is read from its start: the
 * calls that follow (a buffer each) go on from the same list, so that an
 * entry is met once even while others are made or removed (rm -r). */
struct dir_list {
	struct dir_entry {
		char *name;
		mode_t type; /* its d_type, as a mode */
		ino_t ino;
		bool known; /* st is what getattr would give */
		struct stat st;
	} * v;
	size_t n, cap;
};

static void dir_list_clear(struct dir_list *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].name);
	d->n = 0;
}

static int add_entry(struct dir_list *d, const char *name, mode_t type,
		     ino_t ino)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 64;
		struct dir_entry *v = realloc(d->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	if (!(d->v[d->n].name = strdup(name)))
		return -ENOMEM;
	d->v[d->n].type = type;
	d->v[d->n].known = false;
	d->v[d->n++].ino = ino;
	return 0;
}

/* The names in dir (none if it is not there), sorted, into *out. */
static int names_in(const char *dir, char ***out)
{
	char **v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	DIR *d = opendir(dir);
	*out = NULL;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		if (n == cap) {
			size_t c = cap ? 2 * cap : 64;
			char **nv = realloc(v, c * sizeof(*v));
			if (!nv)
				break;
			v = nv;
			cap = c;
		}
		if (!(v[n] = strdup(e->d_name)))
			break;
		n++;
	}
	int ret = e ? -ENOMEM : 0;
	closedir(d);
	if (v)
		qsort(v, n, sizeof(*v), cmp_str);
	*out = v;
	if (ret) {
		free_names(v, n);
		*out = NULL;
		return ret;
	}
	return (int)n;
}

static bool has_name(char **v, int n, const char *name)
{
	return n > 0 &&
	       bsearch(&name, v, (size_t)n, sizeof(*v), cmp_str) != NULL;
}

/* The entries of dir but those in skip (sorted by name). */
static int list_dir(struct dir_list *l, const char *dir,
		    const struct db_name *skip, int n_skip)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int ret = 0;
	if (!d)
		return -errno;
	while (ret == 0 && (e = readdir(d))) {
		struct db_name key = {.name = e->d_name};
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    !strncmp(e->d_name, FS_HIDDEN_PREFIX,
			     strlen(FS_HIDDEN_PREFIX)))
			continue; /* (unlinked, still open) */
		if (n_skip > 0 && bsearch(&key, skip, (size_t)n_skip,
					  sizeof(*skip), cmp_name))
			continue;
		/* the entry's type goes with it (d_type) at least, so that
		 * find need not look up every name to know a file from a
		 * directory */
		ret = add_entry(l, e->d_name, (mode_t)DTTOIF(e->d_type),
				e->d_ino);
	}
	closedir(d);
	return ret;
}

/* A batch lists its images and their thumbnails from the catalog (some
 * live in the store only), then the spool's other files (hidden, ignored,
 * or still being written). Rows with no thumbnail (imported before
 * thumbnails) get one made, when they are first listed or read. */
static int list_batch(struct thumbfs *fs, struct dir_list *l,
		      const struct fs_path *p, const char *sp, bool plus)
{
	struct db_name *v = NULL;
	char **spooled = NULL, **cached = NULL, dir[PATH_MAX];
	int n = db_list_batch(fs->db, p->patient, p->date, &v), unthumbed = 0;
	int n_spooled = 0, n_cached = 0, ret = 0;
	if (n < 0)
		return n;
	/* with READDIRPLUS, the attributes of what is in the store only
	 * come from the rows listed, not from a lookup each: the local
	 * files' names say which those are */
	if (plus && (n_spooled = names_in(sp, &spooled)) >= 0 &&
	    fs_thumb_path(fs, p->patient, p->date, NULL, dir, sizeof(dir)) == 0)
		n_cached = names_in(dir, &cached);
	if (n_spooled < 0 || n_cached < 0)
		plus = false; /* each entry looked up, then */
	for (int i = 0; ret == 0 && i < n; i++) {
		const struct db_name *r = &v[i];
		if ((ret = add_entry(l, r->name, S_IFREG, 0)))
			break;
		if (plus && r->uploaded &&
		    !has_name(spooled, n_spooled, r->name)) {
			struct dir_entry *e = &l->v[l->n - 1];
			stored_stat(r->size, r->updated_at, false, &e->st);
			shown(fs, &e->st);
			e->known = true;
		}
		if (!r->thumb[0]) {
			unthumbed++;
			continue;
		}
		if ((ret = add_entry(l, r->thumb, S_IFREG, 0)))
			break;
		if (plus && r->thumb_stored &&
		    !has_name(cached, n_cached, r->thumb)) {
			struct dir_entry *e = &l->v[l->n - 1];
			stored_stat(r->thumb_size, r->updated_at, true, &e->st);
			shown(fs, &e->st);
			e->known = true;
		}
	}
	free_names(spooled, n_spooled > 0 ? n_spooled : 0);
	free_names(cached, n_cached > 0 ? n_cached : 0);
	if (ret == 0)
		ret = list_dir(l, sp, v, n);
	if (unthumbed && db_backfill_queue(fs->db, p->patient, p->date) > 0)
		fs_jobs_kick(fs);
	db_names_free(v, n);
	return ret;
}

static int list_path(struct thumbfs *fs, const char *path, struct dir_list *l,
		     bool plus)
{
	struct fs_path p;
	char sp[PATH_MAX];
	int ret;
	fs_parse(fs, path, &p);
	if ((ret = add_entry(l, ".", S_IFDIR, 0)) ||
	    (ret = add_entry(l, "..", S_IFDIR, 0)))
		return ret;
	switch (p.kind) {
	case FS_ROOT:
		/* .thumbfs is reached by name only, so that a copy or an
		 * rsync --delete of the whole mount never meets it */
		return add_entry(l, "patients", S_IFDIR, 0);
	case FS_META:
		return add_entry(l, "status", S_IFREG, 0);
	case FS_PATIENTS:
	case FS_PATIENT:
	case FS_BATCH:
		if (fs_spool_path(fs, path, sp, sizeof(sp)))
			return -ENAMETOOLONG;
		if (p.kind == FS_BATCH)
			return list_batch(fs, l, &p, sp, plus);
		return list_dir(l, sp, NULL, 0);
	default:
		return -ENOTDIR;
	}
}

static int fs_op_opendir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	struct dir_list *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	fi->fh = (uint64_t)(uintptr_t)l;
	return 0;
}

static int fs_op_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	struct dir_list *l = (struct dir_list *)(uintptr_t)fi->fh;
	dir_list_clear(l);
	free(l->v);
	free(l);
	return 0;
}

/* Asked for READDIRPLUS, every entry goes with its attributes, as stat()
 * gives them, so that find, du and ls -l look up no name again (libfuse
 * keeps a node for each, as a lookup would). Entries go with their
 * offsets (1, 2, ...), a buffer at a time: libfuse 3.14 drops the
 * attributes of a listing given at once with offset 0 (its issue #235,
 * fixed in 3.17.1). */
static int fs_op_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
			 off_t off, struct fuse_file_info *fi,
			 enum fuse_readdir_flags flags)
{
	struct thumbfs *fs = fs_get();
	struct dir_list *l = (struct dir_list *)(uintptr_t)fi->fh;
	char full[PATH_MAX];
	const char *dir = strcmp(path, "/") ? path : "";
	bool plus = (flags & FUSE_READDIR_PLUS) &&
		    strcmp(path, "/.thumbfs") != 0; /* (no status text) */
	if (off == 0 || l->n == 0) { /* from the start: taken anew */
		dir_list_clear(l);
		int ret = list_path(fs, path, l, plus);
		if (ret)
			return ret;
	}
	for (size_t i = (size_t)off; i < l->n; i++) {
		const struct dir_entry *e = &l->v[i];
		struct stat st = {.st_ino = e->ino, .st_mode = e->type};
		enum fuse_fill_dir_flags how = 0;
		if (plus && e->known) {
			st = e->st;
			how = FUSE_FILL_DIR_PLUS;
		} else if (plus && i >= 2 &&
			   snprintf(full, sizeof(full), "%s/%s", dir, e->name) <
			       (int)sizeof(full) &&
			   getattr_shown(full, &st, NULL) == 0)
			how = FUSE_FILL_DIR_PLUS;
		else
			st =
			    (struct stat){.st_ino = e->ino, .st_mode = e->type};
		if (filler(buf, e->name, &st, (off_t)i + 1, how))
			break;
	}
	return 0;
}

static int fs_op_mkdir(const char *path, mode_t mode)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	char sp[PATH_MAX];
	fs_parse(fs, path, &p);
	switch (p.kind) {
	case FS_PATIENT:
	case FS_BATCH:
		break;
	case FS_INVALID:
		return fs_refused(p.depth >= 4 || p.depth <= 1 ? -EPERM : p.err,
				  "mkdir of", path, "%s", p.why);
	case FS_FILE:
		return fs_refused(-EPERM, "mkdir of", path,
				  "nothing may be below a date directory");
	default:
		return -EEXIST;
	}
	if (fs_spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	if (mkdir(sp, 0700))
		return -errno;
	int ret = fs_take_owner(-1, sp, mode);
	if (ret)
		rmdir(sp);
	return ret;
}

static int fs_op_rmdir(const char *path)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	char sp[PATH_MAX];
	fs_parse(fs, path, &p);
	if (p.kind != FS_PATIENT && p.kind != FS_BATCH)
		return p.kind == FS_FILE ? -ENOTDIR : -EPERM;
	if (fs_spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	if (rmdir(sp))
		return -errno;
	/* the thumbnail cache's directory of the batch, or of the patient */
	if (!fs_thumb_path(fs, p.patient, p.kind == FS_BATCH ? p.date : NULL,
			   NULL, sp, sizeof(sp)))
		rmdir(sp);
	return 0;
}

static int fs_op_truncate(const char *path, off_t size,
			  struct fuse_file_info *fi)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	char sp[PATH_MAX];
	struct handle *h = file_handle(fi);
	if (h)
		return fs_handle_truncate(fs, h, path, size);
	fs_parse(fs, path, &p);
	if (p.kind != FS_FILE)
		return p.kind == FS_INVALID ? -ENOENT : -EISDIR;
	if (p.thumb)
		return -EPERM;
	ino_t held;
	int ret = fs_whole_image(fs, &p, path, sp, sizeof(sp), &held);
	if (ret)
		return ret;
	/* held until the catalog knows: until then its row says the old
	 * content is settled, and an eviction would punch the new one */
	ret = fs_mark_writing(fs, &p);
	if (!ret && truncate(sp, size)) {
		ret = -errno; /* unchanged: as it was, still due */
		if (!p.local)
			FS_SETTLE(fs, "a truncate that did not happen",
				  db_writing_undo(fs->db, p.patient, p.date,
						  p.name, false));
	} else if (!ret && !p.local) {
		ret = fs_queue_ingest(fs, &p, (int64_t)size,
				      fuse_get_context()->uid);
		if (ret && ret != -ENOSPC)
			ret = -EIO; /* marked: the next mount makes it whole */
	}
	fs_cache_put(fs->cache, held);
	return ret;
}

static int fs_op_unlink(const char *path)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	char sp[PATH_MAX];
	fs_parse(fs, path, &p);
	if (p.kind == FS_STATUS)
		return fs_refused(-EPERM, "unlink of", path,
				  "the status file is thumbfs's own");
	if (p.kind != FS_FILE)
		return p.kind == FS_INVALID ? -ENOENT : -EISDIR;
	if (p.thumb)
		return fs_refused(-EPERM, "unlink of", path,
				  "a thumbnail goes with its image: remove "
				  "the image");
	if (fs_spool_path(fs, path, sp, sizeof(sp)))
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

static int fs_op_rename(const char *from, const char *to, unsigned int flags)
{
	struct thumbfs *fs = fs_get();
	struct fs_path pf, pt;
	char sf[PATH_MAX], st_[PATH_MAX];
	struct stat sb;

	if (flags & ~RENAME_NOREPLACE)
		return -EINVAL;
	fs_parse(fs, from, &pf);
	fs_parse(fs, to, &pt);
	if (pf.kind == FS_PATIENT || pf.kind == FS_BATCH)
		return fs_rename_dir(fs, from, to, &pf, &pt, flags);
	if (pf.kind != FS_FILE)
		return pf.kind == FS_INVALID ? -ENOENT : -EPERM;
	if (pf.thumb)
		return fs_refused(-EPERM, "rename of", from,
				  "a thumbnail goes with its image: rename "
				  "the image");
	char op[PATH_MAX + 32];
	snprintf(op, sizeof(op), "rename of '%s' to", from);
	int ret = fs_may_create(fs, op, to, &pt);
	if (ret)
		return ret;
	ino_t held;
	ret = fs_whole_image(fs, &pf, from, sf, sizeof(sf), &held);
	if (ret)
		return ret;
	if (fs_spool_path(fs, to, st_, sizeof(st_)))
		ret = -ENAMETOOLONG;
	else if (renameat2(AT_FDCWD, sf, AT_FDCWD, st_, flags))
		ret = -errno;
	if (!ret && !pf.local)
		forget_image(fs, &pf);
	/* a catalog that cannot take the new name says so; the spool file
	 * is there, and the next mount ingests it (fs_reconcile) */
	if (!ret && !pt.local && lstat(st_, &sb) == 0 &&
	    fs_queue_ingest(fs, &pt, (int64_t)sb.st_size,
			    fuse_get_context()->uid))
		ret = -EIO;
	fs_cache_put(fs->cache, held); /* after the catalog knows, as above */
	return ret;
}

/* Files and directories of the spool may change their metadata; the
 * thumbnails and the status file may not. The root may take times and
 * xattrs (rsync -a sets them on "."), but not a mode or an owner: it is
 * the spool itself, which stays 0700 (the mount shows 0755). */
int fs_meta_path(const char *path, char *sp, size_t n, bool owner)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	fs_parse(fs, path, &p);
	if (p.kind == FS_INVALID)
		return -ENOENT;
	if ((owner && p.kind == FS_ROOT) || p.kind == FS_STATUS ||
	    p.kind == FS_META || (p.kind == FS_FILE && p.thumb))
		return -EPERM;
	return fs_spool_path(fs, path, sp, n);
}

static int fs_op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	char sp[PATH_MAX];
	struct handle *h = file_handle(fi);
	if (h)
		return fchmod(h->fd, mode) ? -errno : 0;
	int ret = fs_meta_path(path, sp, sizeof(sp), true);
	if (ret)
		return ret;
	return chmod(sp, mode) ? -errno : 0;
}

static int fs_op_chown(const char *path, uid_t uid, gid_t gid,
		       struct fuse_file_info *fi)
{
	char sp[PATH_MAX];
	struct handle *h = file_handle(fi);
	if (h)
		return fchown(h->fd, uid, gid) ? -errno : 0;
	int ret = fs_meta_path(path, sp, sizeof(sp), true);
	if (ret)
		return ret;
	return lchown(sp, uid, gid) ? -errno : 0;
}

static int fs_op_utimens(const char *path, const struct timespec tv[2],
			 struct fuse_file_info *fi)
{
	char sp[PATH_MAX];
	struct handle *h = file_handle(fi);
	if (h)
		return futimens(h->fd, tv) ? -errno : 0;
	int ret = fs_meta_path(path, sp, sizeof(sp), false);
	if (ret)
		return ret;
	return utimensat(AT_FDCWD, sp, tv, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}

static int fs_op_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return statvfs(fs_get()->spool, sv) ? -errno : 0;
}

/* fsync() of a directory: what was made, renamed or removed in it is on
 * disk, in the spool and in the catalog. */
static int fs_op_fsyncdir(const char *path, int datasync,
			  struct fuse_file_info *fi)
{
	struct thumbfs *fs = fs_get();
	char sp[PATH_MAX];
	(void)datasync, (void)fi;
	int ret = db_sync(fs->db);
	if (ret)
		return ret == -ENOSPC ? ret : -EIO;
	if (fs_spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	int fd = open(sp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = fsync(fd) ? -errno : 0;
	close(fd);
	return ret;
}

static int fs_op_refuse_link(const char *from, const char *to)
{
	(void)from;
	return fs_refused(-EPERM, "link of", to,
			  "links are not kept in the archive");
}

/* FIFOs, devices and sockets (mkfifo, mknod, bind) */
static int fs_op_refuse_node(const char *path, mode_t mode, dev_t dev)
{
	(void)mode, (void)dev;
	return fs_refused(-EPERM, "mknod of", path,
			  "only files and directories are kept in the "
			  "archive");
}

static const struct fuse_operations ops = {
    .init = fs_op_init,
    .getattr = getattr_shown,
    .opendir = fs_op_opendir,
    .readdir = fs_op_readdir,
    .releasedir = fs_op_releasedir,
    .mkdir = fs_op_mkdir,
    .rmdir = fs_op_rmdir,
    .create = fs_op_create,
    .open = fs_op_open,
    .read = fs_op_read,
    .write = fs_op_write,
    .flush = fs_op_flush,
    .release = fs_op_release,
    .fsync = fs_op_fsync,
    .fsyncdir = fs_op_fsyncdir,
    .truncate = fs_op_truncate,
    .unlink = fs_op_unlink,
    .rename = fs_op_rename,
    .chmod = fs_op_chmod,
    .chown = fs_op_chown,
    .utimens = fs_op_utimens,
    .statfs = fs_op_statfs,
    .setxattr = fs_op_setxattr,
    .getxattr = fs_op_getxattr,
    .listxattr = fs_op_listxattr,
    .removexattr = fs_op_removexattr,
    .symlink = fs_op_refuse_link,
    .link = fs_op_refuse_link,
    .mknod = fs_op_refuse_node,
};

const struct fuse_operations *fs_operations(void)
{
	return &ops;
}
