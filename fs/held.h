/*
 * held.h - folders held for their names (db/held.h): made where a patient
 * id or a date goes with a name that is neither, or below a date; their
 * files stay in the spool, never uploaded, until the folder is renamed to
 * a valid name, when everything in it is ingested.
 */
#ifndef FS_HELD_H
#define FS_HELD_H

#include <sys/types.h>

#include "fs/path.h"

struct thumbfs;

/* mkdir(path) of a held folder (p: FS_HELD, or FS_FILE where a folder
 * may be held). 0 or -errno. */
int fs_held_mkdir(struct thumbfs *fs, const char *path, const struct fs_path *p,
		  mode_t mode);
/* rmdir(path) of a held folder. */
int fs_held_rmdir(struct thumbfs *fs, const char *path);
/* Whether a folder renamed to pt would be held. */
bool fs_held_target(const struct fs_path *pt);
/* rename(from, to) of a held folder (pf FS_HELD), or of an empty patient's
 * or date's folder to where it would be held: into the archive, what it
 * holds is ingested, folders in it with other names stay held. */
int fs_held_rename(struct thumbfs *fs, const char *from, const char *to,
		   const struct fs_path *pf, const struct fs_path *pt,
		   unsigned int flags);
#endif
