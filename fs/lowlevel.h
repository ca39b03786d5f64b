/*
 * lowlevel.h - the mount on libfuse's low-level API (lowlevel.c): the
 * kernel's requests come by node id, are turned into the paths the
 * operations table (ops.h, with the audit and spelling layers over it)
 * takes, through the mount's own inode table (inode.h), and their
 * answers go back with the node ids the kernel keeps. A listing is given
 * with its entries' attributes (READDIRPLUS); the kernel's forgets free
 * what it held; a change made elsewhere (another mount, the web app) is
 * told to the kernel at once (fs_ll_changed).
 */
#ifndef FS_LOWLEVEL_H
#define FS_LOWLEVEL_H

#define FUSE_USE_VERSION 314
#include <fuse.h>
#include <fuse_lowlevel.h>

struct thumbfs;

/* A session serving fs with the operations table ops; args as for
 * fuse_session_new(). NULL on an error, said on stderr. */
struct fuse_session *fs_ll_new(struct thumbfs *fs, struct fuse_args *args,
			       const struct fuse_operations *ops);

/* What fs_ll_new() made, after its session is destroyed. */
void fs_ll_free(struct thumbfs *fs);

/* A name changed by another writer (patient, date and name of a file, or
 * patient and date of a folder): the kernel, if it holds the name, looks
 * it up again. From any thread but a FUSE request's. */
void fs_ll_changed(struct thumbfs *fs, const char *patient, const char *date,
		   const char *name);

/* The mount point given back (fuse_session_unmount), once no notice is
 * being written to the kernel; none is after. */
void fs_ll_unmount(struct thumbfs *fs);

/* Node ids the daemon keeps now, and the kernel's forgets so far (for
 * the metrics). */
unsigned fs_ll_inodes(struct thumbfs *fs);
uint64_t fs_ll_forgets(struct thumbfs *fs);

#endif
