/* lowlevel.c - the kernel's requests by node id, answered through the
 * operations table by path (lowlevel.h). What libfuse's high-level API
 * did for us and the table relies on is done here the same way: a file
 * unlinked or replaced while open keeps a hidden name until its last
 * close (hard_remove off), setattr is chmod, chown, truncate and utimens
 * in that order, and a regular file made by mknod is made by create. */
#include "fs/lowlevel.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/context.h"
#include "fs/inode.h"
#include "fs/path.h"
#include "fs/thumbfs.h"

/* How long the kernel keeps a name and its attributes (as before, with
 * the high-level API's entry_timeout and attr_timeout) */
#define TIMEOUT 1.0

/* st_ino of an entry listed without its node (libfuse's high-level API
 * gives the same: the kernel takes it as unknown) */
#define UNKNOWN_INO 0xffffffff

/* Locks by node id, striped: an operation on a node holds its lock to
 * read, an unlink or a rename of its name to write. So a name is not
 * taken from a file while an operation on it runs (a close that ingests
 * it, a write), as libfuse's high-level API locked paths. */
#define STRIPES 256

struct fs_ll {
	struct thumbfs *fs;
	const struct fuse_operations *op;
	struct fuse_session *se;
	struct fs_inodes ino;
	atomic_uint hidden; /* the hidden names' counter */
	/* notices to the kernel (fs_ll_changed) and the unmount, which
	 * closes the device they are written to, one at a time */
	pthread_mutex_t notify_lock;
	bool unmounted; /* guarded by notify_lock */
	pthread_rwlock_t stripe[STRIPES];
};

/* A stripe held till the end of the block that holds it (HOLD). */
struct held {
	pthread_rwlock_t *lock;
};

static void unhold(struct held *h)
{
	if (h->lock)
		pthread_rwlock_unlock(h->lock);
}

static struct held hold(fuse_req_t req, fuse_ino_t ino)
{
	struct fs_ll *l = fuse_req_userdata(req);
	pthread_rwlock_t *k = &l->stripe[ino % STRIPES];
	pthread_rwlock_rdlock(k);
	return (struct held){k};
}

/* The node ino's lock held to read until the block ends. */
#define HOLD(req, ino)                                                         \
	struct held held_ __attribute__((cleanup(unhold))) = hold(req, ino)

/* The stripes of up to two nodes (0: none) taken to write, in order. */
static void lock_names(struct fs_ll *l, fuse_ino_t a, fuse_ino_t b, bool on)
{
	unsigned i = a ? a % STRIPES : STRIPES, j = b ? b % STRIPES : STRIPES;
	if (i > j) {
		unsigned t = i;
		i = j;
		j = t;
	}
	if (on) {
		if (i < STRIPES)
			pthread_rwlock_wrlock(&l->stripe[i]);
		if (j < STRIPES && j != i)
			pthread_rwlock_wrlock(&l->stripe[j]);
	} else {
		if (j < STRIPES && j != i)
			pthread_rwlock_unlock(&l->stripe[j]);
		if (i < STRIPES)
			pthread_rwlock_unlock(&l->stripe[i]);
	}
}

static struct fs_ll *begin(fuse_req_t req)
{
	struct fs_ll *l = fuse_req_userdata(req);
	fs_ctx_begin(req, l->fs);
	return l;
}

static void reply_err(fuse_req_t req, int err)
{
	fuse_reply_err(req, err < 0 ? -err : err);
}

/* The entry of name in parent, whose path is path: its attributes, and
 * its node, looked up once more. */
static int entry(struct fs_ll *l, fuse_ino_t parent, const char *name,
		 const char *path, struct fuse_file_info *fi,
		 struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	int ret = l->op->getattr(path, &e->attr, fi);
	if (ret)
		return ret;
	e->ino = fs_inode_ref(&l->ino, parent, name, &e->generation);
	if (!e->ino)
		return -ENOMEM;
	e->attr.st_ino = e->ino;
	e->attr_timeout = TIMEOUT;
	e->entry_timeout = TIMEOUT;
	return 0;
}

static void ll_init(void *data, struct fuse_conn_info *conn)
{
	(void)data;
	/* O_TRUNC arrives with open(), so a truncate-and-write is one
	 * write, not an empty file ingested first. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->max_write > FS_IO_SIZE)
		conn->max_write = FS_IO_SIZE;
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_ll *l = begin(req);
	char path[PATH_MAX];
	struct fuse_entry_param e;
	int ret = fs_inode_path(&l->ino, parent, name, path, sizeof(path));
	if (!ret)
		ret = entry(l, parent, name, path, NULL, &e);
	if (ret)
		return reply_err(req, ret);
	if (fuse_reply_entry(req, &e))
		fs_inode_forget(&l->ino, e.ino, 1);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n)
{
	struct fs_ll *l = fuse_req_userdata(req);
	fs_inode_forget(&l->ino, ino, n);
	fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *v)
{
	struct fs_ll *l = fuse_req_userdata(req);
	for (size_t i = 0; i < count; i++)
		fs_inode_forget(&l->ino, v[i].ino, v[i].nlookup);
	fuse_reply_none(req);
}

/* A name a file unlinked while open was given (hide()). */
static bool is_hidden(const char *path)
{
	const char *base = strrchr(path, '/');
	return base &&
	       !strncmp(base + 1, FS_HIDDEN_PREFIX, strlen(FS_HIDDEN_PREFIX));
}

/* The attributes of ino, at path: a file unlinked while open has one
 * link fewer than its hidden name has (none, as on a local disk). */
static void reply_attr(fuse_req_t req, fuse_ino_t ino, const char *path,
		       struct stat *st)
{
	st->st_ino = ino;
	if (is_hidden(path) && st->st_nlink > 0)
		st->st_nlink--;
	fuse_reply_attr(req, st, TIMEOUT);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	struct stat st;
	int ret = fs_inode_path(&l->ino, ino, NULL, path, sizeof(path));
	if (!ret) {
		memset(&st, 0, sizeof(st));
		ret = l->op->getattr(path, &st, fi);
	}
	if (ret)
		return reply_err(req, ret);
	reply_attr(req, ino, path, &st);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int set, struct fuse_file_info *fi)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	struct stat st;
	int ret = fs_inode_path(&l->ino, ino, NULL, path, sizeof(path));
	if (!ret && (set & FUSE_SET_ATTR_MODE))
		ret = l->op->chmod(path, attr->st_mode, fi);
	if (!ret && (set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
		ret = l->op->chown(
		    path, set & FUSE_SET_ATTR_UID ? attr->st_uid : (uid_t)-1,
		    set & FUSE_SET_ATTR_GID ? attr->st_gid : (gid_t)-1, fi);
	if (!ret && (set & FUSE_SET_ATTR_SIZE))
		ret = l->op->truncate(path, attr->st_size, fi);
	if (!ret && (set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
		struct timespec tv[2];
		tv[0] = set & FUSE_SET_ATTR_ATIME_NOW
			    ? (struct timespec){.tv_nsec = UTIME_NOW}
			: set & FUSE_SET_ATTR_ATIME
			    ? attr->st_atim
			    : (struct timespec){.tv_nsec = UTIME_OMIT};
		tv[1] = set & FUSE_SET_ATTR_MTIME_NOW
			    ? (struct timespec){.tv_nsec = UTIME_NOW}
			: set & FUSE_SET_ATTR_MTIME
			    ? attr->st_mtim
			    : (struct timespec){.tv_nsec = UTIME_OMIT};
		ret = l->op->utimens(path, tv, fi);
	}
	if (!ret) {
		memset(&st, 0, sizeof(st));
		ret = l->op->getattr(path, &st, fi);
	}
	if (ret)
		return reply_err(req, ret);
	reply_attr(req, ino, path, &st);
}

/* After an operation that made name in parent: its entry. */
static void reply_made(fuse_req_t req, struct fs_ll *l, fuse_ino_t parent,
		       const char *name, const char *path, int ret)
{
	struct fuse_entry_param e;
	if (!ret)
		ret = entry(l, parent, name, path, NULL, &e);
	if (ret)
		return reply_err(req, ret);
	if (fuse_reply_entry(req, &e))
		fs_inode_forget(&l->ino, e.ino, 1);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	struct fs_ll *l = begin(req);
	char path[PATH_MAX];
	int ret = fs_inode_path(&l->ino, parent, name, path, sizeof(path));
	if (!ret && S_ISREG(mode)) {
		/* a file: made as open(O_CREAT | O_EXCL) would make it */
		struct fuse_file_info fi = {.flags =
						O_CREAT | O_EXCL | O_WRONLY};
		ret = l->op->create(path, mode, &fi);
		if (!ret)
			l->op->release(path, &fi);
	} else if (!ret) {
		ret = l->op->mknod(path, mode, rdev);
	}
	reply_made(req, l, parent, name, path, ret);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	struct fs_ll *l = begin(req);
	char path[PATH_MAX];
	int ret = fs_inode_path(&l->ino, parent, name, path, sizeof(path));
	if (!ret)
		ret = l->op->mkdir(path, mode);
	reply_made(req, l, parent, name, path, ret);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	struct fs_ll *l = begin(req);
	char path[PATH_MAX];
	int ret = fs_inode_path(&l->ino, parent, name, path, sizeof(path));
	if (!ret)
		ret = l->op->symlink(link, path);
	reply_made(req, l, parent, name, path, ret);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent,
		    const char *name)
{
	struct fs_ll *l = begin(req);
	char from[PATH_MAX], to[PATH_MAX];
	int ret = fs_inode_path(&l->ino, ino, NULL, from, sizeof(from));
	if (!ret)
		ret = fs_inode_path(&l->ino, parent, name, to, sizeof(to));
	if (!ret)
		ret = l->op->link(from, to);
	reply_made(req, l, parent, name, to, ret);
}

/* A file still open keeps its content under a hidden name in its folder
 * until its last close (libfuse's hard_remove off; sshfs does the same):
 * the name path in parent is moved there. 0 or -errno. */
static int hide(struct fs_ll *l, fuse_ino_t parent, const char *name,
		const char *path)
{
	char hidden[64], to[PATH_MAX];
	struct stat st;
	fuse_ino_t ino = fs_inode_find(&l->ino, parent, name);
	for (int tries = 0; tries < 10; tries++) {
		snprintf(hidden, sizeof(hidden), FS_HIDDEN_PREFIX "%08x%08x",
			 (unsigned)ino, atomic_fetch_add(&l->hidden, 1));
		int ret =
		    fs_inode_path(&l->ino, parent, hidden, to, sizeof(to));
		if (ret)
			return ret;
		if (l->op->getattr(to, &st, NULL) != -ENOENT)
			continue; /* taken */
		ret = l->op->rename(path, to, 0);
		if (!ret)
			ret = fs_inode_move(&l->ino, parent, name, parent,
					    hidden);
		return ret;
	}
	return -EBUSY;
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_ll *l = begin(req);
	char path[PATH_MAX];
	int ret = fs_inode_path(&l->ino, parent, name, path, sizeof(path));
	fuse_ino_t ino = fs_inode_find(&l->ino, parent, name);
	lock_names(l, ino, 0, true);
	if (!ret && fs_inode_opened(&l->ino, parent, name))
		ret = hide(l, parent, name, path);
	else if (!ret && !(ret = l->op->unlink(path)))
		fs_inode_unlink(&l->ino, parent, name);
	lock_names(l, ino, 0, false);
	reply_err(req, ret);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_ll *l = begin(req);
	char path[PATH_MAX];
	int ret = fs_inode_path(&l->ino, parent, name, path, sizeof(path));
	fuse_ino_t ino = fs_inode_find(&l->ino, parent, name);
	lock_names(l, ino, 0, true);
	if (!ret && !(ret = l->op->rmdir(path)))
		fs_inode_unlink(&l->ino, parent, name);
	lock_names(l, ino, 0, false);
	reply_err(req, ret);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct fs_ll *l = begin(req);
	char from[PATH_MAX], to[PATH_MAX];
	int ret = fs_inode_path(&l->ino, parent, name, from, sizeof(from));
	if (!ret)
		ret =
		    fs_inode_path(&l->ino, newparent, newname, to, sizeof(to));
	fuse_ino_t a = fs_inode_find(&l->ino, parent, name);
	fuse_ino_t b = fs_inode_find(&l->ino, newparent, newname);
	lock_names(l, a, b, true);
	/* a file open under the name replaced keeps its content */
	if (!ret && !(flags & RENAME_NOREPLACE) &&
	    fs_inode_opened(&l->ino, newparent, newname))
		ret = hide(l, newparent, newname, to);
	if (!ret)
		ret = l->op->rename(from, to, flags);
	if (!ret)
		ret = fs_inode_move(&l->ino, parent, name, newparent, newname);
	lock_names(l, a, b, false);
	reply_err(req, ret);
}

/* A file opened on ino: counted, or closed again if the kernel is gone. */
static void opened(fuse_req_t req, struct fs_ll *l, fuse_ino_t ino,
		   const char *path, struct fuse_file_info *fi)
{
	fs_inode_open(&l->ino, ino, 1);
	if (fuse_reply_open(req, fi)) {
		l->op->release(path, fi);
		fs_inode_open(&l->ino, ino, -1);
	}
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	int ret = fs_inode_path(&l->ino, ino, NULL, path, sizeof(path));
	if (!ret)
		ret = l->op->open(path, fi);
	if (ret)
		return reply_err(req, ret);
	opened(req, l, ino, path, fi);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct fs_ll *l = begin(req);
	char path[PATH_MAX];
	struct fuse_entry_param e;
	int ret = fs_inode_path(&l->ino, parent, name, path, sizeof(path));
	if (!ret)
		ret = l->op->create(path, mode, fi);
	if (ret)
		return reply_err(req, ret);
	ret = entry(l, parent, name, path, fi, &e);
	if (ret) {
		l->op->release(path, fi);
		return reply_err(req, ret);
	}
	fs_inode_open(&l->ino, e.ino, 1);
	if (fuse_reply_create(req, &e, fi)) {
		l->op->release(path, fi);
		fs_inode_open(&l->ino, e.ino, -1);
		fs_inode_forget(&l->ino, e.ino, 1);
	}
}

/* The path of an open file's node (NULL when it has none: the handle is
 * what counts). */
static const char *open_path(struct fs_ll *l, fuse_ino_t ino, char *path)
{
	return fs_inode_path(&l->ino, ino, NULL, path, PATH_MAX) ? NULL : path;
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return reply_err(req, ENOMEM);
	int n = l->op->read(open_path(l, ino, path), buf, size, off, fi);
	if (n < 0)
		reply_err(req, n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	int n = l->op->write(open_path(l, ino, path), buf, size, off, fi);
	if (n < 0)
		reply_err(req, n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	reply_err(req, l->op->flush(open_path(l, ino, path), fi));
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	reply_err(req, l->op->fsync(open_path(l, ino, path), datasync, fi));
}

static void ll_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	const char *p = open_path(l, ino, path);
	fuse_ino_t parent = fs_inode_parent(&l->ino, ino);
	if (fi->flush)
		l->op->flush(p, fi);
	l->op->release(p, fi);
	/* the last close of a file unlinked while open: its content goes */
	if (fs_inode_open(&l->ino, ino, -1) == 0 && p && is_hidden(p) &&
	    l->op->unlink(p) == 0)
		fs_inode_unlink(&l->ino, parent, strrchr(p, '/') + 1);
	reply_err(req, 0);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	int ret = fs_inode_path(&l->ino, ino, NULL, path, sizeof(path));
	if (!ret)
		ret = l->op->opendir(path, fi);
	if (ret)
		return reply_err(req, ret);
	if (fuse_reply_open(req, fi))
		l->op->releasedir(path, fi);
}

/* A buffer of a listing's entries being filled. */
struct fill {
	fuse_req_t req;
	struct fs_ll *l;
	fuse_ino_t dir;
	const char *path; /* the folder's */
	char *buf;
	size_t size, used;
	bool plus;
};

/* fuse_fill_dir_t: an entry into the buffer, 1 when it is full. With
 * READDIRPLUS, an entry given with its attributes is looked up (the
 * kernel keeps its node, as after a lookup); one without (".", "..", an
 * entry the listing could not stat) goes with node id 0, which the
 * kernel takes as "look it up yourself". */
static int fill(void *b, const char *name, const struct stat *st, off_t off,
		enum fuse_fill_dir_flags how)
{
	struct fill *f = b;
	char *at = f->buf + f->used;
	size_t left = f->size - f->used, need;
	if (!f->plus) {
		struct stat s = {.st_ino = UNKNOWN_INO,
				 .st_mode = st ? st->st_mode : 0};
		need = fuse_add_direntry(f->req, NULL, 0, name, NULL, 0);
		if (need > left)
			return 1;
		f->used += fuse_add_direntry(f->req, at, left, name, &s, off);
		return 0;
	}
	struct fuse_entry_param e = {0};
	need = fuse_add_direntry_plus(f->req, NULL, 0, name, NULL, 0);
	if (need > left)
		return 1;
	e.attr.st_ino = UNKNOWN_INO;
	e.attr.st_mode = st ? st->st_mode : 0;
	if ((how & FUSE_FILL_DIR_PLUS) && st && strcmp(name, ".") &&
	    strcmp(name, "..")) {
		e.attr = *st;
		e.ino = fs_inode_ref(&f->l->ino, f->dir, name, &e.generation);
		if (e.ino) {
			e.attr.st_ino = e.ino;
			e.attr_timeout = TIMEOUT;
			e.entry_timeout = TIMEOUT;
		}
	}
	f->used += fuse_add_direntry_plus(f->req, at, left, name, &e, off);
	return 0;
}

static void readdir_any(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi, bool plus)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	int ret = fs_inode_path(&l->ino, ino, NULL, path, sizeof(path));
	if (ret)
		return reply_err(req, ret);
	struct fill f = {.req = req,
			 .l = l,
			 .dir = ino,
			 .path = path,
			 .buf = malloc(size ? size : 1),
			 .size = size,
			 .plus = plus};
	if (!f.buf)
		return reply_err(req, ENOMEM);
	ret = l->op->readdir(path, &f, fill, off, fi,
			     plus ? FUSE_READDIR_PLUS : 0);
	if (ret)
		reply_err(req, ret);
	else
		fuse_reply_buf(req, f.buf, f.used);
	free(f.buf);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	readdir_any(req, ino, size, off, fi, false);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	readdir_any(req, ino, size, off, fi, true);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	l->op->releasedir(open_path(l, ino, path), fi);
	reply_err(req, 0);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	int ret = fs_inode_path(&l->ino, ino, NULL, path, sizeof(path));
	if (!ret)
		ret = l->op->fsyncdir(path, datasync, fi);
	reply_err(req, ret);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs_ll *l = begin(req);
	struct statvfs sv;
	(void)ino;
	memset(&sv, 0, sizeof(sv));
	int ret = l->op->statfs("/", &sv);
	if (ret)
		return reply_err(req, ret);
	fuse_reply_statfs(req, &sv);
}

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	int ret = fs_inode_path(&l->ino, ino, NULL, path, sizeof(path));
	if (!ret)
		ret = l->op->setxattr(path, name, value, size, flags);
	reply_err(req, ret);
}

/* getxattr and listxattr: the size asked for (size 0), or the value. */
static void reply_xattr(fuse_req_t req, int n, const char *buf, size_t size)
{
	if (n < 0)
		reply_err(req, n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	char *buf = size ? malloc(size) : NULL;
	int n = size && !buf
		    ? -ENOMEM
		    : fs_inode_path(&l->ino, ino, NULL, path, sizeof(path));
	if (!n)
		n = l->op->getxattr(path, name, buf, size);
	reply_xattr(req, n, buf, size);
	free(buf);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	char *buf = size ? malloc(size) : NULL;
	int n = size && !buf
		    ? -ENOMEM
		    : fs_inode_path(&l->ino, ino, NULL, path, sizeof(path));
	if (!n)
		n = l->op->listxattr(path, buf, size);
	reply_xattr(req, n, buf, size);
	free(buf);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct fs_ll *l = begin(req);
	HOLD(req, ino);
	char path[PATH_MAX];
	int ret = fs_inode_path(&l->ino, ino, NULL, path, sizeof(path));
	if (!ret)
		ret = l->op->removexattr(path, name);
	reply_err(req, ret);
}

static const struct fuse_lowlevel_ops ll_ops = {
    .init = ll_init,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .mknod = ll_mknod,
    .mkdir = ll_mkdir,
    .symlink = ll_symlink,
    .link = ll_link,
    .unlink = ll_unlink,
    .rmdir = ll_rmdir,
    .rename = ll_rename,
    .open = ll_open,
    .create = ll_create,
    .read = ll_read,
    .write = ll_write,
    .flush = ll_flush,
    .fsync = ll_fsync,
    .release = ll_release,
    .opendir = ll_opendir,
    .readdir = ll_readdir,
    .readdirplus = ll_readdirplus,
    .releasedir = ll_releasedir,
    .fsyncdir = ll_fsyncdir,
    .statfs = ll_statfs,
    .setxattr = ll_setxattr,
    .getxattr = ll_getxattr,
    .listxattr = ll_listxattr,
    .removexattr = ll_removexattr,
};

struct fuse_session *fs_ll_new(struct thumbfs *fs, struct fuse_args *args,
			       const struct fuse_operations *ops)
{
	struct fs_ll *l = calloc(1, sizeof(*l));
	if (!l || fs_inodes_init(&l->ino)) {
		free(l);
		fprintf(stderr, "thumbfs: out of memory\n");
		return NULL;
	}
	l->fs = fs;
	l->op = ops;
	for (int i = 0; i < STRIPES; i++)
		pthread_rwlock_init(&l->stripe[i], NULL);
	pthread_mutex_init(&l->notify_lock, NULL);
	l->se = fuse_session_new(args, &ll_ops, sizeof(ll_ops), l);
	if (!l->se) {
		fs_inodes_free(&l->ino);
		free(l);
		return NULL;
	}
	fs->ll = l;
	return l->se;
}

void fs_ll_free(struct thumbfs *fs)
{
	struct fs_ll *l = fs->ll;
	if (!l)
		return;
	fs->ll = NULL;
	for (int i = 0; i < STRIPES; i++)
		pthread_rwlock_destroy(&l->stripe[i]);
	pthread_mutex_destroy(&l->notify_lock);
	fs_inodes_free(&l->ino);
	free(l);
}

void fs_ll_changed(struct thumbfs *fs, const char *patient, const char *date,
		   const char *name)
{
	struct fs_ll *l = fs->ll;
	/* never from a request: the kernel may hold the folder's lock for
	 * it, and the notice would wait for it forever */
	if (!l || fs_ctx()->req)
		return;
	/* only what the kernel holds: a folder it never looked up holds no
	 * name to tell it of */
	const char *part[4] = {"patients", patient, date, name};
	int last = name ? 3 : date ? 2 : 1;
	fuse_ino_t dir = FUSE_ROOT_ID;
	for (int i = 0; i < last; i++)
		if (!(dir = fs_inode_find(&l->ino, dir, part[i])))
			return;
	pthread_mutex_lock(&l->notify_lock);
	if (!l->unmounted)
		fuse_lowlevel_notify_inval_entry(l->se, dir, part[last],
						 strlen(part[last]));
	pthread_mutex_unlock(&l->notify_lock);
}

void fs_ll_unmount(struct thumbfs *fs)
{
	struct fs_ll *l = fs->ll;
	pthread_mutex_lock(&l->notify_lock);
	if (!l->unmounted)
		fuse_session_unmount(l->se);
	l->unmounted = true;
	pthread_mutex_unlock(&l->notify_lock);
}

unsigned fs_ll_inodes(struct thumbfs *fs)
{
	return fs->ll ? fs_inodes_count(&((struct fs_ll *)fs->ll)->ino) : 0;
}
