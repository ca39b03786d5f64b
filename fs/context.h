/*
 * context.h - who a request comes from: the uid, gid, pid, umask and
 * groups of the FUSE request the calling thread serves (context.c). The
 * low-level layer (lowlevel.c) sets it as each request begins; outside a
 * request (a job runner, the sync runner) it is all zero.
 */
#ifndef FS_CONTEXT_H
#define FS_CONTEXT_H

#define FUSE_USE_VERSION 314
#include <sys/types.h>

#include <fuse_lowlevel.h>

struct thumbfs;

struct fs_ctx {
	struct thumbfs *fs; /* the mount the request is for */
	uid_t uid;
	gid_t gid;
	pid_t pid;
	mode_t umask;
	fuse_req_t req; /* NULL outside a request */
};

/* The request the calling thread serves. */
const struct fs_ctx *fs_ctx(void);

/* The calling thread now serves req, for the mount fs. */
void fs_ctx_begin(fuse_req_t req, struct thumbfs *fs);

/* The requester's supplementary groups, at most n into list: how many it
 * has, or -errno (-ENOSYS when the kernel does not say). */
int fs_ctx_groups(int n, gid_t list[]);

#endif
