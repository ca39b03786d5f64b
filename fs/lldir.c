/* lldir.c - the kernel's requests on folders (listings with their
 * entries' attributes, READDIRPLUS), on extended attributes, and statfs
 * (llreq.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/llreq.h"
#include "fs/rowino.h"

/* st_ino of an entry listed without its node (libfuse's high-level API
 * gives the same: the kernel takes it as unknown) */
#define UNKNOWN_INO 0xffffffff

void fs_ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	FS_LL_START(req, ino, l, path);
	if (!ret)
		ret = l->op->opendir(path, fi);
	if (ret)
		return fs_ll_reply_err(req, ret);
	if (fuse_reply_open(req, fi))
		l->op->releasedir(path, fi);
}

/* A buffer of a listing's entries being filled. */
struct fill {
	fuse_req_t req;
	struct fs_ll *l;
	fuse_ino_t dir;
	char *buf;
	size_t size, used;
	bool plus;
};

/* fuse_fill_dir_t: an entry into the buffer, 1 when it is full. With
 * READDIRPLUS, an entry given with its attributes is looked up (the
 * kernel keeps its node, as after a lookup: an image's is its row's, and
 * nothing is kept for it); one without (".", "..", an entry the listing
 * could not stat) goes with node id 0, which the kernel takes as "look
 * it up yourself". */
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
		e.ino = fs_inode_ref(&f->l->ino, f->dir, name,
				     fs_rowino_is(st->st_ino) ? st->st_ino : 0,
				     &e.generation);
		if (e.ino) {
			e.attr.st_ino = e.ino;
			e.attr_timeout = FS_LL_TIMEOUT;
			e.entry_timeout = FS_LL_TIMEOUT;
		} else {
			e.attr.st_ino = UNKNOWN_INO;
		}
	}
	f->used += fuse_add_direntry_plus(f->req, at, left, name, &e, off);
	return 0;
}

static void readdir_any(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi, bool plus)
{
	FS_LL_START(req, ino, l, path);
	if (ret)
		return fs_ll_reply_err(req, ret);
	struct fill f = {.req = req,
			 .l = l,
			 .dir = ino,
			 .buf = malloc(size ? size : 1),
			 .size = size,
			 .plus = plus};
	if (!f.buf)
		return fs_ll_reply_err(req, ENOMEM);
	ret = l->op->readdir(path, &f, fill, off, fi,
			     plus ? FUSE_READDIR_PLUS : 0);
	if (ret)
		fs_ll_reply_err(req, ret);
	else
		fuse_reply_buf(req, f.buf, f.used);
	free(f.buf);
}

void fs_ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	readdir_any(req, ino, size, off, fi, false);
}

void fs_ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	readdir_any(req, ino, size, off, fi, true);
}

void fs_ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	FS_LL_START(req, ino, l, path);
	l->op->releasedir(ret ? NULL : path, fi);
	fs_ll_reply_err(req, 0);
}

void fs_ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
		    struct fuse_file_info *fi)
{
	FS_LL_START(req, ino, l, path);
	if (!ret)
		ret = l->op->fsyncdir(path, datasync, fi);
	fs_ll_reply_err(req, ret);
}

void fs_ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs_ll *l = fs_ll_begin(req);
	struct statvfs sv;
	(void)ino;
	memset(&sv, 0, sizeof(sv));
	int ret = l->op->statfs("/", &sv);
	if (ret)
		return fs_ll_reply_err(req, ret);
	fuse_reply_statfs(req, &sv);
}

void fs_ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value, size_t size, int flags)
{
	FS_LL_START(req, ino, l, path);
	if (!ret)
		ret = l->op->setxattr(path, name, value, size, flags);
	fs_ll_reply_err(req, ret);
}

/* getxattr and listxattr: the size asked for (size 0), or the value. */
static void reply_xattr(fuse_req_t req, int n, const char *buf, size_t size)
{
	if (n < 0)
		fs_ll_reply_err(req, n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

void fs_ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size)
{
	FS_LL_START(req, ino, l, path);
	char *buf = size ? malloc(size) : NULL;
	if (!ret && size && !buf)
		ret = -ENOMEM;
	if (!ret)
		ret = l->op->getxattr(path, name, buf, size);
	reply_xattr(req, ret, buf, size);
	free(buf);
}

void fs_ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	FS_LL_START(req, ino, l, path);
	char *buf = size ? malloc(size) : NULL;
	if (!ret && size && !buf)
		ret = -ENOMEM;
	if (!ret)
		ret = l->op->listxattr(path, buf, size);
	reply_xattr(req, ret, buf, size);
	free(buf);
}

void fs_ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	FS_LL_START(req, ino, l, path);
	if (!ret)
		ret = l->op->removexattr(path, name);
	fs_ll_reply_err(req, ret);
}
