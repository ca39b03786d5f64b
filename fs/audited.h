/*
 * audited.h - the audit log laid over the operations table, as sshfs lays
 * its cache over its operations: each change made through the mount and
 * each operation refused is one line of [audit] file (audit.h).
 */
#ifndef FS_AUDITED_H
#define FS_AUDITED_H

#include "fs/ops.h"

/* A table that calls inner's operations and logs them (when the mount
 * has an audit log). inner must outlive it; one table per process. */
const struct fuse_operations *fs_audited(const struct fuse_operations *inner);

#endif
