/*
 * remote.h - rows from PostgreSQL (other mounts, the web app) applied
 * to the catalog, rows PostgreSQL no longer has forgotten, and how far its
 * changes are applied.
 */
#ifndef DB_REMOTE_H
#define DB_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/catalog.h"

/*
 * Rows from PostgreSQL: what other mounts and the web app wrote.
 */
enum db_remote_result {
	DB_REMOTE_KEPT = 0,	/* the local row stays as it is */
	DB_REMOTE_NEW = 1,	/* a row the catalog did not have */
	DB_REMOTE_REPLACED = 2, /* newer content: *old is what it replaced */
};

/* Apply r (matched by patient, date and name; r->id is used for a new row)
 * as uploaded content that lives in the store. A local row with a write
 * pending, or updated later than r, is kept. Returns an enum
 * db_remote_result or -errno. */
int db_remote_apply(struct db *db, const struct db_image *r,
		    struct db_image *old);

/* The same for n rows in one transaction (a full read applies hundreds at
 * a time): results[i] and olds[i] are each row's. 0 or -errno (and then
 * none is applied). */
int db_remote_apply_many(struct db *db, const struct db_image *rows, int n,
			 struct db_image *olds, int *results);

/* A full read of PostgreSQL begins with db_remote_scan_begin() and ends
 * by calling db_remote_gone_next() until it returns -ENOENT: rows that
 * were in PostgreSQL (synced by us or applied from it), are uploaded, have
 * no job, and were not applied since scan_begin are gone there; each call
 * deletes one of them and hands it out in out (0), for the caller to drop
 * its local copies. */
int db_remote_scan_begin(struct db *db);
int db_remote_gone_next(struct db *db, struct db_image *out);

/* A row PostgreSQL no longer has (by its id, unless it is at patient,
 * date, name already, where PostgreSQL has it now; or at a path): deleted
 * and handed out in out (0), for the caller to drop its local copies, when
 * PostgreSQL had it, it is uploaded and no job of the mount is pending
 * for it; -ENOENT when there is no such row. */
int db_remote_forget(struct db *db, const char *id, const char *patient,
		     const char *date, const char *name, struct db_image *out);
int db_remote_forget_path(struct db *db, const char *patient, const char *date,
			  const char *name, struct db_image *out);

/* How far the changes of the PostgreSQL dsn names are applied: the bound
 * of db_pg_bound() (all transactions below it). -ENOENT when this catalog
 * has never read that database. */
int db_sync_cursor(struct db *db, const char *dsn, int64_t *bound);
int db_sync_cursor_set(struct db *db, const char *dsn, int64_t bound);

#endif
