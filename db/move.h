/*
 * move.h - a patient's or a date's directory renamed: its images move
 * in one transaction, and move jobs follow.
 */
#ifndef DB_MOVE_H
#define DB_MOVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/catalog.h"

/*
 * A directory renamed: patient from_patient (its date from_date, or every
 * date when from_date is "") is now to_patient (to_date, "" likewise).
 */
struct db_move {
	char from_patient[65];
	char from_date[11];
	char to_patient[65];
	char to_date[11];
};

/* In one transaction: the images move to the new place (a new gen; out
 * of PostgreSQL, where their old rows' deletes are queued), a waiting
 * ingest follows them, each stored image gets a DB_JOB_MOVE, and the
 * move is recorded until db_move_settled() says the spool's directory
 * followed. Returns how many images moved, -ENOTEMPTY when the catalog
 * has images at the new place, or -errno. */
int db_dir_move(struct db *db, const struct db_move *m);

/* The oldest move recorded and not settled (-ENOENT: none), as a daemon
 * that died between the two leaves it; and its end. */
int db_move_first(struct db *db, struct db_move *out);
int db_move_settled(struct db *db, const struct db_move *m);

/* A DB_JOB_MOVE is done: the image's objects were copied from from_key
 * and from_thumb (its keys when the job ran) to key and thumb_key (NULL:
 * nothing copied: it was removed, or its new key is too long). If it
 * still has from_key, it takes the new keys and its PostgreSQL upsert is
 * queued; the removal of the keys it left (the job's, and from_*) is
 * queued once no image holds them, and the job removed. stamp (NULL or
 * "": none): what the copies were stamped across mounts (db/pgkey.h),
 * which the row takes as its updated_at. */
int db_move_done(struct db *db, const struct db_job *job, const char *from_key,
		 const char *from_thumb, const char *key, const char *thumb_key,
		 const char *stamp);

/* The image job moves was removed elsewhere while it moved (PostgreSQL
 * has it no more, and its objects are gone: nothing to copy): its row and
 * its moves go, and what the move copied already (key, thumb_key, NULL
 * for none, stamped stamp) goes once no row holds it. The row as it was
 * into out. -EBUSY, nothing changed, when the image has other jobs (a
 * write here: it goes to PostgreSQL in turn). */
int db_move_vanished(struct db *db, const struct db_job *job, const char *key,
		     const char *thumb_key, const char *stamp,
		     struct db_image *out);

#endif
