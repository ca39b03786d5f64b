/* llnames.c - the kernel's requests that make, remove or move a name:
 * mknod, mkdir, symlink, link, unlink, rmdir and rename (llreq.h). A
 * file still open keeps its content under a hidden name until its last
 * close (libfuse's hard_remove off; sshfs does the same); a regular file
 * made by mknod is made by create; a catalog row's node id moved by a
 * rename gets a node standing for it at its new name (an alias), since
 * the row it names goes with the rename. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/llreq.h"
#include "fs/path.h"
#include "fs/request.h"
#include "fs/rowino.h"

void fs_ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode, dev_t rdev)
{
	FS_LL_START_NAME(req, parent, name, l, path);
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
	fs_ll_reply_made(req, l, parent, name, path, ret);
}

void fs_ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode)
{
	FS_LL_START_NAME(req, parent, name, l, path);
	if (!ret)
		ret = l->op->mkdir(path, mode);
	fs_ll_reply_made(req, l, parent, name, path, ret);
}

void fs_ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		   const char *name)
{
	FS_LL_START_NAME(req, parent, name, l, path);
	if (!ret)
		ret = l->op->symlink(link, path);
	fs_ll_reply_made(req, l, parent, name, path, ret);
}

void fs_ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent,
		const char *name)
{
	FS_LL_START_NAME(req, parent, name, l, to);
	char from[PATH_MAX];
	if (!ret)
		ret = fs_ll_path(l, ino, NULL, from);
	if (!ret)
		ret = l->op->link(from, to);
	fs_ll_reply_made(req, l, parent, name, to, ret);
}

bool fs_ll_is_hidden(const char *path)
{
	const char *base = strrchr(path, '/');
	return base &&
	       !strncmp(base + 1, FS_HIDDEN_PREFIX, strlen(FS_HIDDEN_PREFIX));
}

/* The name path in parent, of a file still open, moved to a hidden name
 * in its folder. 0 or -errno. */
static int hide(struct fs_ll *l, fuse_ino_t parent, const char *name,
		const char *path)
{
	char hidden[64], to[PATH_MAX];
	struct stat st;
	fuse_ino_t ino = fs_inode_find(&l->ino, parent, name);
	for (int tries = 0; tries < 10; tries++) {
		snprintf(hidden, sizeof(hidden), FS_HIDDEN_PREFIX "%08x%08x",
			 (unsigned)ino, atomic_fetch_add(&l->hidden, 1));
		int ret = fs_ll_path(l, parent, hidden, to);
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

void fs_ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	FS_LL_START_NAME(req, parent, name, l, path);
	fuse_ino_t ino = fs_inode_find(&l->ino, parent, name);
	fs_ll_lock_names(l, ino, 0, true);
	if (!ret && fs_inode_opened(&l->ino, parent, name))
		ret = hide(l, parent, name, path);
	else if (!ret && !(ret = l->op->unlink(path)))
		fs_inode_unlink(&l->ino, parent, name);
	fs_ll_lock_names(l, ino, 0, false);
	fs_ll_reply_err(req, ret);
}

void fs_ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	FS_LL_START_NAME(req, parent, name, l, path);
	fuse_ino_t ino = fs_inode_find(&l->ino, parent, name);
	fs_ll_lock_names(l, ino, 0, true);
	if (!ret && !(ret = l->op->rmdir(path)))
		fs_inode_unlink(&l->ino, parent, name);
	fs_ll_lock_names(l, ino, 0, false);
	fs_ll_reply_err(req, ret);
}

/* The node id of the catalog row the file at path is, or 0. */
static uint64_t rowino_of(struct fs_ll *l, const char *path)
{
	struct fs_path p;
	fs_parse(l->fs, path, &p);
	if (p.kind != FS_FILE || p.local)
		return 0;
	return fs_rowino_at(l->fs, p.patient, p.date, p.name, p.thumb);
}

void fs_ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		  fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	FS_LL_START_NAME(req, parent, name, l, from);
	char to[PATH_MAX];
	if (!ret)
		ret = fs_ll_path(l, newparent, newname, to);
	fuse_ino_t a = fs_inode_find(&l->ino, parent, name);
	fuse_ino_t b = fs_inode_find(&l->ino, newparent, newname);
	/* a name with no node of its own may be a row's, which the kernel
	 * keeps for the new name */
	uint64_t row = !ret && !a ? rowino_of(l, from) : 0;
	fs_ll_lock_names(l, a ? a : row, b, true);
	/* a file open under the name replaced keeps its content */
	if (!ret && !(flags & RENAME_NOREPLACE) &&
	    fs_inode_opened(&l->ino, newparent, newname))
		ret = hide(l, newparent, newname, to);
	if (!ret)
		ret = l->op->rename(from, to, flags);
	if (!ret)
		ret = fs_inode_move(&l->ino, parent, name, newparent, newname);
	if (!ret && row)
		fs_inode_alias(&l->ino, row, newparent, newname, true);
	fs_ll_lock_names(l, a ? a : row, b, false);
	fs_ll_reply_err(req, ret);
}
