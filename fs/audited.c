/* audited.c - the audit log laid over the operations table: each change
 * made through the mount, and each operation refused, is a line of the
 * audit log ([audit] file). A write is logged by handle.c when its writer
 * is told it is saved, and a stored content by the job runner. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "db/catalog.h"
#include "fs/audit.h"
#include "fs/audited.h"
#include "fs/context.h"
#include "fs/path.h"
#include "fs/thumbfs.h"

static const struct fuse_operations *inner;
static struct fuse_operations outer;

/* The line for the request being served; returns ret. */
static int audited(const char *op, const char *path, const char *to,
		   const char *sha256, int64_t size, int ret)
{
	struct thumbfs *fs = fs_get();
	const struct fs_ctx *c = fs_ctx();
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

/* The sha256 the catalog has for the image at path ("" when none): what
 * an unlink or a rename takes away from its name. */
static void image_sha(const char *path, char sha[65])
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	struct db_image img;
	sha[0] = '\0';
	if (!fs->audit)
		return;
	fs_path_parse(&fs->rules, path, &p);
	if (p.kind == FS_FILE && !p.local &&
	    db_image_get(fs->db, p.patient, p.date, p.name, &img) == 0)
		memcpy(sha, img.sha256, 65);
}

static int a_mkdir(const char *path, mode_t mode)
{
	return audited("mkdir", path, NULL, NULL, -1, inner->mkdir(path, mode));
}

static int a_rmdir(const char *path)
{
	return audited("rmdir", path, NULL, NULL, -1, inner->rmdir(path));
}

static int a_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return audited("create", path, NULL, NULL, -1,
		       inner->create(path, mode, fi));
}

/* An open refused by thumbfs (not a missing name). */
static int a_open(const char *path, struct fuse_file_info *fi)
{
	int ret = inner->open(path, fi);
	return ret && ret != -ENOENT
		   ? audited("open", path, NULL, NULL, -1, ret)
		   : ret;
}

static int a_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	return audited("truncate", path, NULL, NULL, size,
		       inner->truncate(path, size, fi));
}

static int a_unlink(const char *path)
{
	char sha[65];
	image_sha(path, sha);
	return audited("unlink", path, NULL, sha, -1, inner->unlink(path));
}

static int a_rename(const char *from, const char *to, unsigned int flags)
{
	char sha[65];
	image_sha(from, sha);
	return audited("rename", from, to, sha, -1,
		       inner->rename(from, to, flags));
}

static int a_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return audited("chmod", path, NULL, NULL, -1,
		       inner->chmod(path, mode, fi));
}

static int a_chown(const char *path, uid_t uid, gid_t gid,
		   struct fuse_file_info *fi)
{
	return audited("chown", path, NULL, NULL, -1,
		       inner->chown(path, uid, gid, fi));
}

/* Times change with every copy (rsync, cp -a): only a refusal is kept. */
static int a_utimens(const char *path, const struct timespec tv[2],
		     struct fuse_file_info *fi)
{
	int ret = inner->utimens(path, tv, fi);
	return ret ? audited("utimens", path, NULL, NULL, -1, ret) : 0;
}

static int a_setxattr(const char *path, const char *name, const char *value,
		      size_t size, int flags)
{
	return audited("setxattr", path, NULL, NULL, -1,
		       inner->setxattr(path, name, value, size, flags));
}

static int a_removexattr(const char *path, const char *name)
{
	return audited("removexattr", path, NULL, NULL, -1,
		       inner->removexattr(path, name));
}

static int a_symlink(const char *from, const char *to)
{
	return audited("symlink", to, NULL, NULL, -1, inner->symlink(from, to));
}

static int a_link(const char *from, const char *to)
{
	return audited("link", to, NULL, NULL, -1, inner->link(from, to));
}

static int a_mknod(const char *path, mode_t mode, dev_t dev)
{
	return audited("mknod", path, NULL, NULL, -1,
		       inner->mknod(path, mode, dev));
}

const struct fuse_operations *fs_audited(const struct fuse_operations *ops)
{
	inner = ops;
	outer = *ops;
	outer.mkdir = a_mkdir;
	outer.rmdir = a_rmdir;
	outer.create = a_create;
	outer.open = a_open;
	outer.truncate = a_truncate;
	outer.unlink = a_unlink;
	outer.rename = a_rename;
	outer.chmod = a_chmod;
	outer.chown = a_chown;
	outer.utimens = a_utimens;
	outer.setxattr = a_setxattr;
	outer.removexattr = a_removexattr;
	outer.symlink = a_symlink;
	outer.link = a_link;
	outer.mknod = a_mknod;
	return &outer;
}
