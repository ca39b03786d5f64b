/*
 * llreq.h - what the low-level requests share (lowlevel.c, llnames.c,
 * llfiles.c, lldir.c): the session's state, the start of a request on a
 * node, its path, and the node ids given back to the kernel. Inside the
 * low-level layer only; fs/lowlevel.h is its face to the rest.
 */
#ifndef FS_LLREQ_H
#define FS_LLREQ_H

#include "fs/lowlevel.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "fs/inode.h"

/* How long the kernel keeps a name and its attributes (as before, with
 * the high-level API's entry_timeout and attr_timeout) */
#define FS_LL_TIMEOUT 1.0

/* Locks by node id, striped: an operation on a node holds its lock to
 * read, an unlink or a rename of its name to write. So a name is not
 * taken from a file while an operation on it runs (a close that ingests
 * it, a write), as libfuse's high-level API locked paths. */
#define FS_LL_STRIPES 256

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
	pthread_rwlock_t stripe[FS_LL_STRIPES];
};

/* A stripe held till the end of the block that holds it (FS_LL_HOLD). */
struct fs_ll_held {
	pthread_rwlock_t *lock;
};
void fs_ll_unhold(struct fs_ll_held *h);
struct fs_ll_held fs_ll_hold(struct fs_ll *l, fuse_ino_t ino);

/* The stripes of up to two nodes (0: none) taken to write (on), in
 * order, or given back. */
void fs_ll_lock_names(struct fs_ll *l, fuse_ino_t a, fuse_ino_t b, bool on);

/* The node of path's folder as the kernel holds it, with path's last
 * name in *base; 0 when the kernel holds no such folder. */
fuse_ino_t fs_ll_folder_of(struct fs_ll *l, const char *path,
			   const char **base);

/* The request's context set; the session's state. */
struct fs_ll *fs_ll_begin(fuse_req_t req);

/* The path of node ino, with "/name" after it when name is not NULL
 * (path: PATH_MAX bytes): a node of the table's, an alias, or a catalog
 * row's (fs/rowino.h). 0 or -errno. */
int fs_ll_path(struct fs_ll *l, fuse_ino_t ino, const char *name, char *path);

/* The start of a request on node ino: l its session, ino's lock held to
 * read till the block ends, its path in path, ret 0 or -errno. */
#define FS_LL_START(req, ino, l, path)                                         \
	struct fs_ll *l = fs_ll_begin(req);                                    \
	struct fs_ll_held held_ __attribute__((cleanup(fs_ll_unhold))) =       \
	    fs_ll_hold(l, ino);                                                \
	char path[PATH_MAX];                                                   \
	int ret = fs_ll_path(l, ino, NULL, path)

/* The start of a request on name in parent: as FS_LL_START, no lock. */
#define FS_LL_START_NAME(req, parent, name, l, path)                           \
	struct fs_ll *l = fs_ll_begin(req);                                    \
	char path[PATH_MAX];                                                   \
	int ret = fs_ll_path(l, parent, name, path)

void fs_ll_reply_err(fuse_req_t req, int err);

/* The entry of name in parent, at path: its attributes, and its node id
 * (the row's, for a catalog row), looked up once more. 0 or -errno. */
int fs_ll_entry(struct fs_ll *l, fuse_ino_t parent, const char *name,
		const char *path, struct fuse_file_info *fi,
		struct fuse_entry_param *e);

/* A lookup the kernel did not take back (its reply failed). */
void fs_ll_unlook(struct fs_ll *l, fuse_ino_t ino);

/* After an operation that made name in parent (ret 0): its entry. */
void fs_ll_reply_made(fuse_req_t req, struct fs_ll *l, fuse_ino_t parent,
		      const char *name, const char *path, int ret);

/* A name a file unlinked while open was given (llnames.c, hide()). */
bool fs_ll_is_hidden(const char *path);

/* The requests, by file. llnames.c: */
void fs_ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode, dev_t rdev);
void fs_ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode);
void fs_ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		   const char *name);
void fs_ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent,
		const char *name);
void fs_ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		  fuse_ino_t newparent, const char *newname,
		  unsigned int flags);
/* llfiles.c: */
void fs_ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_ll_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		  mode_t mode, struct fuse_file_info *fi);
void fs_ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi);
void fs_ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		 off_t off, struct fuse_file_info *fi);
void fs_ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		 struct fuse_file_info *fi);
void fs_ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/* lldir.c: */
void fs_ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void fs_ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi);
void fs_ll_releasedir(fuse_req_t req, fuse_ino_t ino,
		      struct fuse_file_info *fi);
void fs_ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
		    struct fuse_file_info *fi);
void fs_ll_statfs(fuse_req_t req, fuse_ino_t ino);
void fs_ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value, size_t size, int flags);
void fs_ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size);
void fs_ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

#endif
