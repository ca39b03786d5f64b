/*
 * evict.h - the cache's state of an image: evicted (its data given
 * back to the disk, read from the store), restored, settled.
 */
#ifndef DB_EVICT_H
#define DB_EVICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/catalog.h"

/*
 * The cache. An image whose spool file's data was given back to the disk
 * ("evicted") keeps the file (name, size, mode, times, xattrs) and is read
 * from the store until it is restored. Any write of the image clears it.
 */

/* Mark the image evicted, if it is settled: uploaded, not being written,
 * with no ingest or backfill waiting. -EBUSY if it is not. */
int db_image_evict(struct db *db, const char *patient, const char *date,
		   const char *name);
/* 1 if the image is evicted, 0 if not, -ENOENT: no row. */
int db_image_evicted(struct db *db, const char *patient, const char *date,
		     const char *name);
/* Its spool file holds its content again. */
int db_image_restored(struct db *db, const char *patient, const char *date,
		      const char *name);
/* 1 if the thumbnail thumb_name of the batch is in the store and nothing
 * on its way will change it (the cached copy may go), 0 if not. */
int db_thumb_settled(struct db *db, const char *patient, const char *date,
		     const char *thumb_name);

#endif
