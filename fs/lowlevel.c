/* lowlevel.c - the session on libfuse's low-level API (lowlevel.h): the
 * kernel's requests by node id, answered through the operations table by
 * path, and what they share (llreq.h); here lookups, forgets and
 * attributes (setattr as chmod, chown, truncate and utimens in that
 * order, as libfuse's high-level API did). The requests on names are in
 * llnames.c, on open files in llfiles.c, on folders in lldir.c. */
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
#include "fs/llreq.h"
#include "fs/rowino.h"
#include "fs/path.h"
#include "fs/thumbfs.h"

void fs_ll_unhold(struct fs_ll_held *h)
{
	if (h->lock)
		pthread_rwlock_unlock(h->lock);
}

struct fs_ll_held fs_ll_hold(struct fs_ll *l, fuse_ino_t ino)
{
	pthread_rwlock_t *k = &l->stripe[ino % FS_LL_STRIPES];
	pthread_rwlock_rdlock(k);
	return (struct fs_ll_held){k};
}

void fs_ll_lock_names(struct fs_ll *l, fuse_ino_t a, fuse_ino_t b, bool on)
{
	unsigned n = FS_LL_STRIPES;
	unsigned i = a ? a % n : n, j = b ? b % n : n;
	if (i > j) {
		unsigned t = i;
		i = j;
		j = t;
	}
	if (on) {
		if (i < n)
			pthread_rwlock_wrlock(&l->stripe[i]);
		if (j < n && j != i)
			pthread_rwlock_wrlock(&l->stripe[j]);
	} else {
		if (j < n && j != i)
			pthread_rwlock_unlock(&l->stripe[j]);
		if (i < n)
			pthread_rwlock_unlock(&l->stripe[i]);
	}
}

struct fs_ll *fs_ll_begin(fuse_req_t req)
{
	struct fs_ll *l = fuse_req_userdata(req);
	fs_ctx_begin(req, l->fs);
	return l;
}

void fs_ll_reply_err(fuse_req_t req, int err)
{
	fuse_reply_err(req, err < 0 ? -err : err);
}

int fs_ll_path(struct fs_ll *l, fuse_ino_t ino, const char *name, char *path)
{
	int ret = fs_inode_path(&l->ino, ino, name, path, PATH_MAX);
	if (ret == 1) /* a row's, with no node of its own */
		ret = name ? -ENOTDIR
			   : fs_rowino_path(l->fs, ino, path, PATH_MAX, NULL,
					    NULL, NULL);
	return ret;
}

fuse_ino_t fs_ll_folder_of(struct fs_ll *l, const char *path, const char **base)
{
	char part[NAME_MAX + 1];
	fuse_ino_t dir = FUSE_ROOT_ID;
	const char *at = path + 1, *slash;
	while (dir && (slash = strchr(at, '/'))) {
		size_t len = (size_t)(slash - at);
		if (len > NAME_MAX)
			return 0;
		memcpy(part, at, len);
		part[len] = '\0';
		dir = fs_inode_find(&l->ino, dir, part);
		at = slash + 1;
	}
	*base = at;
	return fs_rowino_is(dir) ? 0 : dir;
}

int fs_ll_entry(struct fs_ll *l, fuse_ino_t parent, const char *name,
		const char *path, struct fuse_file_info *fi,
		struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	int ret = l->op->getattr(path, &e->attr, fi);
	if (ret)
		return ret;
	e->ino = fs_inode_ref(&l->ino, parent, name,
			      fs_rowino_is(e->attr.st_ino) ? e->attr.st_ino : 0,
			      &e->generation);
	if (!e->ino)
		return -ENOMEM;
	e->attr.st_ino = e->ino;
	e->attr_timeout = FS_LL_TIMEOUT;
	e->entry_timeout = FS_LL_TIMEOUT;
	return 0;
}

void fs_ll_unlook(struct fs_ll *l, fuse_ino_t ino)
{
	/* a row's id is forgotten once, when the kernel drops it */
	if (!fs_rowino_is(ino))
		fs_inode_forget(&l->ino, ino, 1);
}

void fs_ll_reply_made(fuse_req_t req, struct fs_ll *l, fuse_ino_t parent,
		      const char *name, const char *path, int ret)
{
	struct fuse_entry_param e;
	if (!ret)
		ret = fs_ll_entry(l, parent, name, path, NULL, &e);
	if (ret)
		return fs_ll_reply_err(req, ret);
	if (fuse_reply_entry(req, &e))
		fs_ll_unlook(l, e.ino);
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
	FS_LL_START_NAME(req, parent, name, l, path);
	fs_ll_reply_made(req, l, parent, name, path, ret);
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

/* The attributes of ino, at path: a file unlinked while open has one
 * link fewer than its hidden name has (none, as on a local disk). */
static void reply_attr(fuse_req_t req, fuse_ino_t ino, const char *path,
		       struct stat *st)
{
	st->st_ino = ino;
	if (fs_ll_is_hidden(path) && st->st_nlink > 0)
		st->st_nlink--;
	fuse_reply_attr(req, st, FS_LL_TIMEOUT);
}

/* After an operation on ino at path (ret 0): its attributes. */
static void reply_getattr(fuse_req_t req, struct fs_ll *l, fuse_ino_t ino,
			  const char *path, struct fuse_file_info *fi, int ret)
{
	struct stat st;
	memset(&st, 0, sizeof(st));
	if (!ret)
		ret = l->op->getattr(path, &st, fi);
	if (ret)
		return fs_ll_reply_err(req, ret);
	reply_attr(req, ino, path, &st);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	FS_LL_START(req, ino, l, path);
	reply_getattr(req, l, ino, path, fi, ret);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int set, struct fuse_file_info *fi)
{
	FS_LL_START(req, ino, l, path);
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
	reply_getattr(req, l, ino, path, fi, ret);
}

static const struct fuse_lowlevel_ops ll_ops = {
    .init = ll_init,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .mknod = fs_ll_mknod,
    .mkdir = fs_ll_mkdir,
    .symlink = fs_ll_symlink,
    .link = fs_ll_link,
    .unlink = fs_ll_unlink,
    .rmdir = fs_ll_rmdir,
    .rename = fs_ll_rename,
    .open = fs_ll_open,
    .create = fs_ll_create,
    .read = fs_ll_read,
    .write = fs_ll_write,
    .flush = fs_ll_flush,
    .fsync = fs_ll_fsync,
    .release = fs_ll_release,
    .opendir = fs_ll_opendir,
    .readdir = fs_ll_readdir,
    .readdirplus = fs_ll_readdirplus,
    .releasedir = fs_ll_releasedir,
    .fsyncdir = fs_ll_fsyncdir,
    .statfs = fs_ll_statfs,
    .setxattr = fs_ll_setxattr,
    .getxattr = fs_ll_getxattr,
    .listxattr = fs_ll_listxattr,
    .removexattr = fs_ll_removexattr,
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
	for (int i = 0; i < FS_LL_STRIPES; i++)
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
	for (int i = 0; i < FS_LL_STRIPES; i++)
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

uint64_t fs_ll_forgets(struct thumbfs *fs)
{
	return fs->ll ? fs_inodes_forgets(&((struct fs_ll *)fs->ll)->ino) : 0;
}
