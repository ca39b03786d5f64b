/*
 * xattr.h - extended attributes: user.* kept on the spool file (the
 * image's user.category and user.filemaker_id are its row's columns), and
 * the read-only user.thumbfs.* that show what the catalog knows.
 */
#ifndef FS_XATTR_H
#define FS_XATTR_H

#include <stddef.h>

int fs_op_setxattr(const char *path, const char *name, const char *value,
		   size_t size, int flags);
int fs_op_getxattr(const char *path, const char *name, char *value,
		   size_t size);
int fs_op_listxattr(const char *path, char *list, size_t size);
int fs_op_removexattr(const char *path, const char *name);

#endif
