/*
 * ops.h - the FUSE operations: the table libfuse calls (ops.c: paths and
 * directories), and what its files share. The operations on open files
 * are in handle.c, the extended attributes in xattr.c, what comes from
 * the store in remote.c; audited.c lays the audit log over the table.
 *
 * Every operation returns 0 or -errno, and finds the mount's state
 * through fs_get() (fuse_get_context()->private_data), never a global.
 */
#ifndef FS_OPS_H
#define FS_OPS_H

#define FUSE_USE_VERSION 314
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <fuse.h>

struct thumbfs;
struct fs_path;

/* The operations table (unaudited: see audited.h). */
const struct fuse_operations *fs_operations(void);

/* The mount the current request is for. */
struct thumbfs *fs_get(void);

/* Classify path. */
void fs_parse(struct thumbfs *fs, const char *path, struct fs_path *p);

/* A refused operation, in one log line with the rule and its values
 * (the errno alone does not say which): "refused OP 'PATH': WHY", op
 * being "mkdir of", "rename of '/FROM' to" and the like. Returns err. */
int fs_refused(int err, const char *op, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The spool path of path whose metadata may change (owner: its mode or
 * owner), or -errno: the thumbnails, the status file and the root's mode
 * and owner may not. */
int fs_meta_path(const char *path, char *sp, size_t n, bool owner);

/* 0 if a file may be made at p (path as FUSE gives it): only a name that
 * is not a thumbnail's, in a date directory, that the store can hold;
 * else -EPERM, -ENAMETOOLONG or p's error, with the rule logged. */
int fs_may_create(struct thumbfs *fs, const char *op, const char *path,
		  const struct fs_path *p);

/* Something new in the spool (fd, or the path sp when fd is -1) takes the
 * mode the client asked for (the kernel has applied its umask; the
 * daemon's own must not apply again), and, when the daemon runs as root,
 * the owner of the request. 0 or -errno. */
int fs_take_owner(int fd, const char *sp, mode_t mode);

#endif
