/*
 * request.h - what every FUSE operation needs first (request.c): the
 * mount it is for, its path classified, a refusal said once, whether a
 * file may be made there, the owner and mode of what it makes, and the
 * open handle it came with.
 */
#ifndef FS_REQUEST_H
#define FS_REQUEST_H

#define FUSE_USE_VERSION 314
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <fuse.h>

struct thumbfs;
struct fs_path;
struct handle;

/* The mount the current request is for. */
struct thumbfs *fs_get(void);

/* Classify path: fs_path_parse, with a thumbnail's name by the catalog's
 * record (db_thumb_named), and where a held folder or a file may be, the
 * spool's answer. fs_parse_name: without the spool (an open file's
 * name). */
void fs_parse(struct thumbfs *fs, const char *path, struct fs_path *p);
void fs_parse_name(struct thumbfs *fs, const char *path, struct fs_path *p);

/* A refused operation, in one log line with the rule and its values
 * (the errno alone does not say which): "refused OP 'PATH': WHY", op
 * being "mkdir of", "rename of '/FROM' to" and the like. Returns err.
 * Said at most once a minute for each kind (op and fmt), the next line
 * counting those not said; never for a name that stays local anyway
 * (.DS_Store, desktop.ini, ._NAME: fs_name_local). */
int fs_refused(int err, const char *op, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same for the rule p broke (FS_INVALID), with p->err or another. */
int fs_refused_path(int err, const char *op, const char *path,
		    const struct fs_path *p);

/* The spool path of path whose metadata may change (owner: its mode or
 * owner): 0; 1 for a thumbnail, whose mode, owner and times are thumbfs's
 * (the change is taken, and nothing changes); or -errno: the status file
 * and the root's mode and owner may not. */
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

/* The errno a FUSE request returns for a store failure (s3.h's mapping):
 *   -EACCES (the store refused the credentials)   -> -EREMOTEIO
 *   -ENOENT (the object is missing)               -> -EIO
 *   -EAGAIN (timeout, unreachable, 5xx, SlowDown)  -> -ETIMEDOUT
 *   -ENOMEM                                        -> -ENOMEM
 *   anything else (a corrupt or refused answer)    -> -EIO */
int fs_store_errno(int ret);

#endif
