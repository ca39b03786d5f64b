/*
 * attr.h - what stat() shows of a path (attr.c): getattr, and the
 * attributes of a file in the store only, which a listing gives too.
 */
#ifndef FS_ATTR_H
#define FS_ATTR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fs/request.h"

/* The getattr operation: the spool's file, the cached thumbnail, or the
 * row of what is in the store only, as shown (fs_shown). */
int fs_op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi);

/* What a file in the store only shows: its row's size and time. */
void fs_stored_stat(int64_t size, const char *updated_at, struct stat *st);

/* [fs] uid, gid and umask applied to st, and the block size cp uses. */
void fs_shown(const struct thumbfs *fs, struct stat *st);

#endif
