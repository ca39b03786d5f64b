/*
 * ops.h - the FUSE operations table, by path, that lowlevel.c calls. Its
 * operations are ops.c's (what changes the tree), attr.c's (getattr),
 * listing.c's (directories read), handle.c's (open files), xattr.c's (extended
 * attributes); what each needs first is request.h's; audited.c lays the
 * audit log over the table, and nfc.c a name's spelling over it.
 *
 * Every operation returns 0 or -errno, and finds the mount's state
 * through fs_get() (the request's context, context.h), never a global.
 */
#ifndef FS_OPS_H
#define FS_OPS_H

#include "fs/request.h"

/* The operations table (unaudited: see audited.h). */
const struct fuse_operations *fs_operations(void);

#endif
