/* context.c - who the request a thread serves comes from (context.h). */
#include "fs/context.h"

#include <errno.h>
#include <string.h>

static _Thread_local struct fs_ctx current;

const struct fs_ctx *fs_ctx(void)
{
	return &current;
}

void fs_ctx_begin(fuse_req_t req, struct thumbfs *fs)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	current = (struct fs_ctx){.fs = fs,
				  .uid = c->uid,
				  .gid = c->gid,
				  .pid = c->pid,
				  .umask = c->umask,
				  .req = req};
}

int fs_ctx_groups(int n, gid_t list[])
{
	if (!current.req)
		return -ENOSYS;
	return fuse_req_getgroups(current.req, n, list);
}
