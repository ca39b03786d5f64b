/* request.c - what every FUSE operation needs first: the mount it is for,
 * its path classified, a refusal said once, whether a file may be made
 * there, its owner and mode, and the open handle it came with. */
#include "fs/request.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db/catalog.h"
#include "fs/context.h"
#include "fs/log.h"
#include "fs/spool.h"
#include "fs/thumbfs.h"

struct thumbfs *fs_get(void)
{
	return fs_ctx()->fs;
}

void fs_parse_name(struct thumbfs *fs, const char *path, struct fs_path *p)
{
	fs_path_parse(&fs->rules, path, p);
	/* a thumbnail's name is one the catalog says a thumbnail has: a
	 * photo named right_thumb.jpg is an image */
	if (p->kind == FS_FILE && p->thumb &&
	    db_thumb_named(fs->db, p->patient, p->date, p->name) == 0)
		p->thumb = false;
}

void fs_parse(struct thumbfs *fs, const char *path, struct fs_path *p)
{
	char sp[PATH_MAX];
	struct stat st;
	fs_parse_name(fs, path, p);
	/* where a held folder or a file may be, the spool says which */
	if (!(p->held || (p->kind == FS_FILE && p->depth == 4)) ||
	    fs_spool_path(fs, path, sp, sizeof(sp)) || lstat(sp, &st))
		return;
	if (S_ISDIR(st.st_mode)) {
		if (!p->held) {
			p->held = p->local = true;
			p->thumb = false;
			p->held_at = 4;
			snprintf(p->why, sizeof(p->why),
				 "'%.64s' is a folder in a date's folder",
				 p->name);
		}
		p->kind = FS_HELD;
	} else if (p->kind == FS_HELD) {
		p->kind = FS_FILE; /* a local file where folders are held */
	}
}

/* A refusal of kind rule (a literal: the rule's format), why it was. */
static int refuse(int err, const char *op, const char *path, const char *rule,
		  const char *why)
{
	unsigned more = 0;
	const char *leaf = strrchr(path, '/');
	struct thumbfs *fs = fs_get();
	/* what Finder, Explorer and rsync write everywhere is no news */
	if (leaf && fs->rules_ready && fs_name_local(&fs->rules, leaf + 1))
		return err;
	if (!log_say_now(op, rule, time(NULL), &more))
		return err;
	if (more)
		log_warn("refused %s '%s': %s (and %u more like it in the "
			 "minute before, not said)",
			 op, path, why, more);
	else
		log_warn("refused %s '%s': %s", op, path, why);
	return err;
}

int fs_refused(int err, const char *op, const char *path, const char *fmt, ...)
{
	char why[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return refuse(err, op, path, fmt, why);
}

int fs_refused_path(int err, const char *op, const char *path,
		    const struct fs_path *p)
{
	return refuse(err, op, path, p->rule ? p->rule : p->why, p->why);
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
				  "the name is a thumbnail's");
	/* in a date directory, the rule the path broke; above it, where
	 * files go (not why the name is no patient id or date) */
	if (p->kind == FS_INVALID && p->depth >= 4)
		return fs_refused_path(p->err, op, path, p);
	return fs_refused(-EPERM, op, path,
			  "files belong in patients/<id>/<YYYY-MM-DD>/");
}

/* Whether the requester is in group gid (its own or a supplementary). */
static bool in_group(gid_t gid)
{
	const struct fs_ctx *ctx = fs_ctx();
	gid_t list[64];
	if (gid == ctx->gid)
		return true;
	int n = fs_ctx_groups(64, list);
	for (int i = 0; i < n && i < 64; i++)
		if (list[i] == gid)
			return true;
	return false;
}

int fs_take_owner(int fd, const char *sp, mode_t mode)
{
	const struct fs_ctx *ctx = fs_ctx();
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

/* Files and directories of the spool may change their metadata; the
 * thumbnails and the status file may not (a thumbnail's is taken and
 * nothing changes: rsync -a and cp -a of a folder copied back in set it).
 * The root may take times and xattrs (rsync -a sets them on "."), but not
 * a mode or an owner: it is the spool itself, which stays 0700 (the mount
 * shows 0755). */
int fs_meta_path(const char *path, char *sp, size_t n, bool owner)
{
	struct thumbfs *fs = fs_get();
	struct fs_path p;
	fs_parse(fs, path, &p);
	if (p.kind == FS_INVALID)
		return -ENOENT;
	if (p.kind == FS_FILE && p.thumb)
		return 1;
	if ((owner && p.kind == FS_ROOT) || p.kind == FS_STATUS ||
	    p.kind == FS_META)
		return -EPERM;
	return fs_spool_path(fs, path, sp, n);
}

int fs_store_errno(int ret)
{
	switch (ret) {
	case 0:
	case -ENOMEM:
		return ret;
	case -EACCES: /* the store refused us, not the file's mode */
		return -EREMOTEIO;
	case -EAGAIN: /* the store is away or slow: not "try again now" */
		return -ETIMEDOUT;
	case -ENOENT: /* the catalog has the file; the store lacks it */
	default:
		return -EIO;
	}
}
