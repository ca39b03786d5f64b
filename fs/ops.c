/* ops.c - the operations table, and the FUSE operations that change the
 * tree: directories made and removed, files truncated, unlinked and
 * renamed, their modes, owners and times. What a path shows is attr.c's,
 * a directory's entries listing.c's, open files handle.c's, extended
 * attributes xattr.c's. */
#include "fs/ops.h"

#include <errno.h>
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
#include "db/held.h"
#include "db/queue.h"
#include "fs/attr.h"
#include "fs/cache.h"
#include "fs/context.h"
#include "fs/handle.h"
#include "fs/held.h"
#include "fs/job.h"
#include "fs/listing.h"
#include "fs/log.h"
#include "fs/move.h"
#include "fs/remote.h"
#include "fs/request.h"
#include "fs/spool.h"
#include "fs/status.h"
#include "fs/thumbfs.h"
#include "fs/users.h"
#include "fs/xattr.h"

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
	cfg_user_name(fs_ctx()->uid, who, sizeof(who));
	int ret = db_image_removed(fs->db, p->patient, p->date, p->name, who);
	if (ret && ret != -ENOENT) {
		fs_tree_path(tp, sizeof(tp), NULL, p->patient, p->date,
			     p->name);
		log_error("catalog removal of '%s' failed: %s", tp,
			  strerror(-ret));
	}
	fs_jobs_kick(fs);
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
	case FS_HELD:
	case FS_FILE: /* a folder below a date is held too */
		return fs_held_mkdir(fs, path, &p, mode);
	case FS_INVALID:
		return fs_refused_path(p.depth <= 1 ? -EPERM : p.err,
				       "mkdir of", path, &p);
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
	if (p.kind == FS_HELD)
		return fs_held_rmdir(fs, path);
	if (p.kind != FS_PATIENT && p.kind != FS_BATCH)
		return p.kind == FS_FILE ? -ENOTDIR : -EPERM;
	if (fs_spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	/* images in the store only have no file in the spool's folder */
	int used = db_folder_used(fs->db, p.patient,
				  p.kind == FS_BATCH ? p.date : NULL);
	if (used)
		return used < 0 ? used : -ENOTEMPTY;
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
	struct handle *h = fs_file_handle(fi);
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
		ret = fs_queue_ingest(fs, &p, (int64_t)size, fs_ctx()->uid);
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
	if (p.thumb) {
		/* A thumbnail goes with its image, and stays while it is
		 * there. Its unlink succeeds all the same, so that a folder or
		 * a selection deleted with its thumbnails (rm -r, Explorer,
		 * Finder, smbclient deltree) does not stop at one, whichever
		 * of the two it meets first; if the image is gone (the kernel
		 * still had the name) there is nothing left to do. */
		return 0;
	}
	if (fs_spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	if (unlink(sp)) {
		struct db_image img;
		int e = errno;
		/* in the store only: removing it is removing its row */
		if (e == ENOENT && !p.local &&
		    db_image_get(fs->db, p.patient, p.date, p.name, &img) &&
		    fs_is_thumb_name(p.name))
			return 0; /* a thumbnail whose image just went (rm -r
				   * met the image first; the kernel still had
				   * the name) */
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
	bool dir = pf.kind == FS_PATIENT || pf.kind == FS_BATCH;
	if (pf.kind == FS_HELD || (dir && fs_held_target(&pt)))
		return fs_held_rename(fs, from, to, &pf, &pt, flags);
	if (dir) {
		int ret = fs_rename_dir(fs, from, to, &pf, &pt, flags);
		/* the folders held below it follow */
		int e = ret ? 0 : db_held_move(fs->db, from, to);
		if (e)
			log_error("the catalog's held folders missed the "
				  "rename of '%s' to '%s': %s",
				  from, to, strerror(-e));
		return ret;
	}
	if (pf.kind != FS_FILE)
		return pf.kind == FS_INVALID ? -ENOENT : -EPERM;
	if (pf.thumb)
		return fs_refused(-EPERM, "rename of", from,
				  "a thumbnail goes with its image: rename "
				  "the image");
	char op[PATH_MAX + 32];
	snprintf(op, sizeof(op), "rename of '%s' to", from);
	int ret =
	    pt.kind == FS_FILE && pt.thumb ? 0 : fs_may_create(fs, op, to, &pt);
	if (ret)
		return ret;
	ino_t held;
	ret = fs_whole_image(fs, &pf, from, sf, sizeof(sf), &held);
	if (ret)
		return ret;
	if (pt.kind == FS_FILE && pt.thumb) {
		/* onto a thumbnail (rsync's temporary file of a folder copied
		 * back in): its own bytes are there already, and the file
		 * renamed goes as the rename would take it; others refused */
		int fd = open(sf, O_RDONLY | O_CLOEXEC);
		ret = fd < 0 ? -errno : fs_thumb_copy_check(fs, fd, &pt, op);
		if (fd >= 0)
			close(fd);
		if (ret == 0 && unlink(sf))
			ret = -errno;
		if (ret == 0 && !pf.local)
			forget_image(fs, &pf);
		fs_cache_put(fs->cache, held);
		return ret;
	}
	if (fs_spool_path(fs, to, st_, sizeof(st_)))
		ret = -ENAMETOOLONG;
	else if (renameat2(AT_FDCWD, sf, AT_FDCWD, st_, flags))
		ret = -errno;
	if (!ret && !pf.local)
		forget_image(fs, &pf);
	/* a catalog that cannot take the new name says so; the spool file
	 * is there, and the next mount ingests it (fs_reconcile) */
	if (!ret && !pt.local && lstat(st_, &sb) == 0 &&
	    fs_queue_ingest(fs, &pt, (int64_t)sb.st_size, fs_ctx()->uid))
		ret = -EIO;
	fs_cache_put(fs->cache, held); /* after the catalog knows, as above */
	return ret;
}

static int fs_op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	char sp[PATH_MAX];
	struct handle *h = fs_file_handle(fi);
	if (h)
		return fchmod(h->fd, mode) ? -errno : 0;
	int ret = fs_meta_path(path, sp, sizeof(sp), true);
	if (ret)
		return ret == 1 ? 0 : ret;
	return chmod(sp, mode) ? -errno : 0;
}

static int fs_op_chown(const char *path, uid_t uid, gid_t gid,
		       struct fuse_file_info *fi)
{
	char sp[PATH_MAX];
	struct handle *h = fs_file_handle(fi);
	if (h)
		return fchown(h->fd, uid, gid) ? -errno : 0;
	int ret = fs_meta_path(path, sp, sizeof(sp), true);
	if (ret)
		return ret == 1 ? 0 : ret;
	return lchown(sp, uid, gid) ? -errno : 0;
}

static int fs_op_utimens(const char *path, const struct timespec tv[2],
			 struct fuse_file_info *fi)
{
	char sp[PATH_MAX];
	struct handle *h = fs_file_handle(fi);
	if (h)
		return futimens(h->fd, tv) ? -errno : 0;
	int ret = fs_meta_path(path, sp, sizeof(sp), false);
	if (ret)
		return ret == 1 ? 0 : ret;
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
    .getattr = fs_op_getattr,
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
