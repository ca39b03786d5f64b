/*
 * rowino.h - the kernel's node id of an image or a thumbnail that is a
 * catalog row: made from its rowid, which the catalog never gives twice
 * (schema v16), so that a walk over the archive keeps nothing per name
 * in the daemon (fs/inode.c keeps folders and files being written). A
 * check of the row's uuid goes with it: an id whose row has gone, or was
 * given again by a tool that renumbered the catalog (VACUUM), names no
 * image rather than another one.
 *
 *   bit 63: a row's id; bit 62: its thumbnail; bits 40-61: the check;
 *   bits 0-39: the rowid.
 */
#ifndef FS_ROWINO_H
#define FS_ROWINO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct thumbfs;

#define FS_ROWINO_BIT (1ull << 63)

static inline bool fs_rowino_is(uint64_t ino)
{
	return (ino & FS_ROWINO_BIT) != 0;
}

/* The node id of row rowid (uuid id), or of its thumbnail; 0 when the
 * rowid does not fit (the name then gets a node of its own). */
uint64_t fs_rowino(int64_t rowid, const char *id, bool thumb);

/* The node id of the catalog row of name (a thumbnail's, with thumb) in
 * patient's date, or 0 (none). */
uint64_t fs_rowino_at(struct thumbfs *fs, const char *patient, const char *date,
		      const char *name, bool thumb);

/* The path ("/patients/P/D/NAME") of the image or thumbnail ino names,
 * and its patient, date and name (each may be NULL; 65, 11 and 300
 * bytes at least): 0, -ESTALE (no
 * such row now, or not this one), -EIO or -ENAMETOOLONG. */
int fs_rowino_path(struct thumbfs *fs, uint64_t ino, char *buf, size_t size,
		   char *patient, char *date, char *name);

#endif
