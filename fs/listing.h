/*
 * listing.h - directories read (listing.c): opendir takes a list,
 * readdir fills it from the start and gives it a buffer at a time,
 * releasedir frees it.
 */
#ifndef FS_LISTING_H
#define FS_LISTING_H

#include "fs/request.h"

int fs_op_opendir(const char *path, struct fuse_file_info *fi);
int fs_op_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
		  off_t off, struct fuse_file_info *fi,
		  enum fuse_readdir_flags flags);
int fs_op_releasedir(const char *path, struct fuse_file_info *fi);

#endif
