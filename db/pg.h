/*
 * pg.h - the sync of the catalog to the web app's PostgreSQL tables (libpq).
 *
 * Knows nothing of FUSE or of the store. One connection, used by one thread
 * (the sync runner) at a time. Actions return 0 or -errno with a one-line
 * reason in err:
 *   -EAGAIN   the server is away or the connection broke: try again later
 *   -EACCES   the server refused us (authentication, permissions)
 *   -ENOENT   a table or column the sync needs is missing (err says which)
 *   -EPROTO   this row is refused for good: a value does not fit its column
 *             or breaks a constraint (SQLSTATE classes 22 and 23)
 *   -EIO      anything else
 */
#ifndef DB_PG_H
#define DB_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/catalog.h"

struct db_pg;

/* The DDL of schema/postgres.sql, NUL-terminated. */
extern const char db_pg_schema[];

/* A handle for dsn (a libpq connection string); connects lazily. */
struct db_pg *db_pg_new(const char *dsn);
void db_pg_free(struct db_pg *pg);

/* Connect if not connected. */
int db_pg_connect(struct db_pg *pg, char *err, size_t errlen);

/* Check that images_batch and images_image have every column the sync
 * writes; err names what is missing. */
int db_pg_check_schema(struct db_pg *pg, char *err, size_t errlen);

/* Changes go in transactions: db_pg_begin(), any number of upserts and
 * deletes, then db_pg_commit() - or db_pg_rollback() after any failure. */
int db_pg_begin(struct db_pg *pg, char *err, size_t errlen);
int db_pg_commit(struct db_pg *pg, char *err, size_t errlen);
void db_pg_rollback(struct db_pg *pg);

/* Upsert img's batch (by patient_id, batch_date; name and uploaded_by set
 * when it is created) and img (by batch and original_filename, keeping an
 * existing row's id; a row updated later than img is left as it is). */
int db_pg_upsert(struct db_pg *pg, const struct db_image *img,
		 const char *batch_name, char *err, size_t errlen);

/* Delete the image (patient, date, name) and its batch if that is now
 * empty. Deleting what is not there succeeds. */
int db_pg_delete(struct db_pg *pg, const char *patient, const char *date,
		 const char *name, char *err, size_t errlen);

/* Record the tombstone t (once: its id is the key). */
int db_pg_tombstone(struct db_pg *pg, const struct db_tombstone *t, char *err,
		    size_t errlen);

#endif
