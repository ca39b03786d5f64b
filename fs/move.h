/*
 * move.h - a patient's or a date's folder renamed through the mount.
 */
#ifndef FS_MOVE_H
#define FS_MOVE_H

#include "fs/path.h"

struct thumbfs;

/* rename(from, to) of a patient's folder to another patient's, or of a
 * date's to another date's (of any patient): the catalog first (the
 * store's keys and PostgreSQL follow through the queue), then the spool's
 * directory; a daemon that dies between the two finishes at the next
 * mount. ENOTEMPTY onto a folder with images, an empty one replaced, EPERM
 * across levels. 0 or -errno. */
int fs_rename_dir(struct thumbfs *fs, const char *from, const char *to,
		  const struct fs_path *pf, const struct fs_path *pt,
		  unsigned int flags);

#endif
