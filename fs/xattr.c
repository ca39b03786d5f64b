/* xattr.c - extended attributes: user.* on the spool file, the image's
 * metadata columns among them, and the read-only user.thumbfs.* that
 * show what the catalog knows of an image. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

#include "db/catalog.h"
#include "db/queue.h"
#include "fs/job.h"
#include "fs/request.h"
#include "fs/path.h"
#include "fs/spool.h"
#include "fs/thumbfs.h"
#include "fs/xattr.h"

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

/* thumbfs's own attributes are read-only; a copy tool that sets them
 * (cp -a, mv from another file system) is ignored without a word, as file
 * systems do with a namespace they do not keep. */
static bool own_attr(const char *name)
{
	return !strncmp(name, STATE_ATTR, strlen(STATE_ATTR));
}

/* Only user.* attributes, kept on the spool file. */
static int xattr_path(const char *path, const char *name, char *sp, size_t n)
{
	if (name && strncmp(name, "user.", 5))
		return -ENOTSUP;
	int ret = fs_meta_path(path, sp, n, false);
	return ret == 1 ? -EPERM : ret; /* (a thumbnail's are thumbfs's) */
}

/* The catalog's row of the image at path: 0, or -ENODATA. */
static int image_row(const char *path, struct db_image *img)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	fs_parse(fs, path, &p);
	if (p.kind != FS_FILE || p.local || p.thumb)
		return -ENODATA;
	return db_image_get(fs->db, p.patient, p.date, p.name, img) ? -ENODATA
								    : 0;
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
	fs_parse(fs, path, &p);
	if (p.kind != FS_FILE || p.local || p.thumb)
		return;
	fs_read_meta(sp, &meta);
	if (db_image_meta(fs->db, p.patient, p.date, p.name, meta.category,
			  meta.filemaker_id) == 0)
		fs_jobs_kick(fs);
}

/* Set, or remove, the user.* attribute name of path. */
static int change_attr(const char *path, const char *name, bool remove,
		       const char *value, size_t size, int flags)
{
	char sp[PATH_MAX];
	if (own_attr(name))
		return 0;
	int ret = xattr_path(path, name, sp, sizeof(sp));
	if (ret)
		return ret;
	if (remove ? lremovexattr(sp, name)
		   : lsetxattr(sp, name, value, size, flags))
		return -errno;
	meta_changed(path, name, sp);
	return 0;
}

int fs_op_setxattr(const char *path, const char *name, const char *value,
		   size_t size, int flags)
{
	return change_attr(path, name, false, value, size, flags);
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
	/* a job of the image failed for good: it says so, and why */
	char why[512];
	if (db_image_parked(fs_get()->db, img.id, why, sizeof(why)) == 1) {
		snprintf(img.state, sizeof(img.state), "failed");
		snprintf(img.error, sizeof(img.error), "%s", why);
	}
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

int fs_op_getxattr(const char *path, const char *name, char *value, size_t size)
{
	char sp[PATH_MAX];
	if (own_attr(name))
		return state_attr(path, name, value, size);
	int ret = xattr_path(path, name, sp, sizeof(sp));
	if (ret)
		return ret == -EPERM ? -ENODATA : ret;
	ssize_t n = lgetxattr(sp, name, value, size);
	return n < 0 ? -errno : (int)n;
}

int fs_op_listxattr(const char *path, char *list, size_t size)
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

int fs_op_removexattr(const char *path, const char *name)
{
	return change_attr(path, name, true, NULL, 0, 0);
}
