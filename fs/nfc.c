/* nfc.c - one name, the spelling first written: a name of a date's
 * folder sent in another Unicode spelling than the one its image was
 * written under (decomposed, as macOS sends "Röntgen_é.jpg", or composed,
 * as Windows does) is given to every layer below as that image's. */
#include "fs/nfc.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "db/catalog.h"
#include "fs/thumbfs.h"

static const struct fuse_operations *inner;
static struct fuse_operations outer;

/* path, or the same path with its name spelled as its image's, into buf;
 * what the operation is to be given. An ASCII path (nearly all) is given
 * as it is after one scan; "/patients/ID/DATE/NAME" is the only place
 * with an image's name. */
static const char *spelled(const char *path, char *buf, size_t n)
{
	const char *p = path, *leaf = NULL;
	int slashes = 0;
	bool ascii = true;
	char key[1024], name[1024];
	for (; *p; p++) {
		if (*p == '/' && ++slashes == 4)
			leaf = p + 1;
		ascii &= (unsigned char)*p < 0x80;
	}
	if (ascii || slashes != 4 || strncmp(path, "/patients/", 10) ||
	    db_name_key(leaf, key, sizeof(key)) != 1)
		return path;
	struct thumbfs *fs = fs_get();
	char patient[256], date[256];
	const char *a = path + 10, *b = strchr(a, '/');
	if (b - a >= (int)sizeof(patient) || leaf - 1 - (b + 1) >= 256)
		return path;
	snprintf(patient, sizeof(patient), "%.*s", (int)(b - a), a);
	snprintf(date, sizeof(date), "%.*s", (int)(leaf - 1 - (b + 1)), b + 1);
	if (db_name_spelling(fs->db, patient, date, key, name, sizeof(name)) ||
	    !strcmp(name, leaf) ||
	    snprintf(buf, n, "%.*s%s", (int)(leaf - path), path, name) >=
		(int)n)
		return path;
	return buf;
}

/* path spelled as its image's for what follows */
#define SPELLED(path)                                                          \
	char spelled_##path[PATH_MAX];                                         \
	path = spelled(path, spelled_##path, sizeof(spelled_##path))

static int n_getattr(const char *path, struct stat *st,
		     struct fuse_file_info *fi)
{
	SPELLED(path);
	return inner->getattr(path, st, fi);
}

static int n_mkdir(const char *path, mode_t mode)
{
	SPELLED(path);
	return inner->mkdir(path, mode);
}

static int n_rmdir(const char *path)
{
	SPELLED(path);
	return inner->rmdir(path);
}

static int n_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	SPELLED(path);
	return inner->create(path, mode, fi);
}

static int n_open(const char *path, struct fuse_file_info *fi)
{
	SPELLED(path);
	return inner->open(path, fi);
}

/* An open file's name: handle.c follows it */
static int n_write(const char *path, const char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	SPELLED(path);
	return inner->write(path, buf, size, off, fi);
}

static int n_flush(const char *path, struct fuse_file_info *fi)
{
	SPELLED(path);
	return inner->flush(path, fi);
}

static int n_release(const char *path, struct fuse_file_info *fi)
{
	SPELLED(path);
	return inner->release(path, fi);
}

static int n_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	SPELLED(path);
	return inner->fsync(path, datasync, fi);
}

static int n_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	SPELLED(path);
	return inner->truncate(path, size, fi);
}

static int n_unlink(const char *path)
{
	SPELLED(path);
	return inner->unlink(path);
}

static int n_rename(const char *from, const char *to, unsigned int flags)
{
	SPELLED(from);
	SPELLED(to);
	return inner->rename(from, to, flags);
}

static int n_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	SPELLED(path);
	return inner->chmod(path, mode, fi);
}

static int n_chown(const char *path, uid_t uid, gid_t gid,
		   struct fuse_file_info *fi)
{
	SPELLED(path);
	return inner->chown(path, uid, gid, fi);
}

static int n_utimens(const char *path, const struct timespec tv[2],
		     struct fuse_file_info *fi)
{
	SPELLED(path);
	return inner->utimens(path, tv, fi);
}

static int n_setxattr(const char *path, const char *name, const char *value,
		      size_t size, int flags)
{
	SPELLED(path);
	return inner->setxattr(path, name, value, size, flags);
}

static int n_getxattr(const char *path, const char *name, char *value,
		      size_t size)
{
	SPELLED(path);
	return inner->getxattr(path, name, value, size);
}

static int n_listxattr(const char *path, char *list, size_t size)
{
	SPELLED(path);
	return inner->listxattr(path, list, size);
}

static int n_removexattr(const char *path, const char *name)
{
	SPELLED(path);
	return inner->removexattr(path, name);
}

static int n_mknod(const char *path, mode_t mode, dev_t dev)
{
	SPELLED(path);
	return inner->mknod(path, mode, dev);
}

const struct fuse_operations *fs_nfc_ops(const struct fuse_operations *ops)
{
	inner = ops;
	outer = *ops;
	outer.getattr = n_getattr;
	outer.mkdir = n_mkdir;
	outer.rmdir = n_rmdir;
	outer.create = n_create;
	outer.open = n_open;
	outer.write = n_write;
	outer.flush = n_flush;
	outer.release = n_release;
	outer.fsync = n_fsync;
	outer.truncate = n_truncate;
	outer.unlink = n_unlink;
	outer.rename = n_rename;
	outer.chmod = n_chmod;
	outer.chown = n_chown;
	outer.utimens = n_utimens;
	outer.setxattr = n_setxattr;
	outer.getxattr = n_getxattr;
	outer.listxattr = n_listxattr;
	outer.removexattr = n_removexattr;
	outer.mknod = n_mknod;
	return &outer;
}
