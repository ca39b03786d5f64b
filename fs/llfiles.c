/* llfiles.c - the kernel's requests on open files: open, create, read,
 * write, flush, fsync and the last close (llreq.h). A file opened on a
 * catalog row's node id gets a node standing for it (an alias) while it
 * is open, so that an unlink of its name keeps its content for it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/llreq.h"
#include "fs/rowino.h"

/* The node a row's id ino opened at path stands on (fs_inode_alias):
 * none is needed but for a row's id; without one (out of memory, the
 * folder unknown to the kernel) the file opens all the same, only an
 * unlink while it is open does not keep its content. */
static void alias_row(struct fs_ll *l, fuse_ino_t ino, const char *path)
{
	const char *base;
	if (!fs_rowino_is(ino))
		return;
	fuse_ino_t dir = fs_ll_folder_of(l, path, &base);
	if (dir)
		fs_inode_alias(&l->ino, ino, dir, base, false);
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

void fs_ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	FS_LL_START(req, ino, l, path);
	if (!ret) {
		alias_row(l, ino, path);
		ret = l->op->open(path, fi);
	}
	if (ret) {
		fs_inode_open(&l->ino, ino, -1); /* (an alias made goes) */
		return fs_ll_reply_err(req, ret);
	}
	opened(req, l, ino, path, fi);
}

void fs_ll_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		  mode_t mode, struct fuse_file_info *fi)
{
	FS_LL_START_NAME(req, parent, name, l, path);
	struct fuse_entry_param e;
	if (!ret)
		ret = l->op->create(path, mode, fi);
	if (ret)
		return fs_ll_reply_err(req, ret);
	ret = fs_ll_entry(l, parent, name, path, fi, &e);
	if (ret) {
		l->op->release(path, fi);
		return fs_ll_reply_err(req, ret);
	}
	fs_inode_open(&l->ino, e.ino, 1);
	if (fuse_reply_create(req, &e, fi)) {
		l->op->release(path, fi);
		fs_inode_open(&l->ino, e.ino, -1);
		fs_ll_unlook(l, e.ino);
	}
}

/* An open file's request: its path is NULL when its node has none (the
 * handle is what counts). */
#define OPEN_PATH(p) (ret ? NULL : (p))

void fs_ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi)
{
	FS_LL_START(req, ino, l, path);
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return fs_ll_reply_err(req, ENOMEM);
	int n = l->op->read(OPEN_PATH(path), buf, size, off, fi);
	if (n < 0)
		fs_ll_reply_err(req, n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

void fs_ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		 off_t off, struct fuse_file_info *fi)
{
	FS_LL_START(req, ino, l, path);
	int n = l->op->write(OPEN_PATH(path), buf, size, off, fi);
	if (n < 0)
		fs_ll_reply_err(req, n);
	else
		fuse_reply_write(req, (size_t)n);
}

void fs_ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	FS_LL_START(req, ino, l, path);
	fs_ll_reply_err(req, l->op->flush(OPEN_PATH(path), fi));
}

void fs_ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		 struct fuse_file_info *fi)
{
	FS_LL_START(req, ino, l, path);
	fs_ll_reply_err(req, l->op->fsync(OPEN_PATH(path), datasync, fi));
}

void fs_ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	FS_LL_START(req, ino, l, path);
	const char *p = OPEN_PATH(path);
	fuse_ino_t parent = fs_inode_parent(&l->ino, ino);
	if (fi->flush)
		l->op->flush(p, fi);
	l->op->release(p, fi);
	/* the last close of a file unlinked while open: its content goes */
	if (fs_inode_open(&l->ino, ino, -1) == 0 && p && fs_ll_is_hidden(p) &&
	    l->op->unlink(p) == 0)
		fs_inode_unlink(&l->ino, parent, strrchr(p, '/') + 1);
	fs_ll_reply_err(req, 0);
}
