/*
 * conn.h - the catalog's connection: open and close, durability
 * (db_sync), checkpoints, the logger, and the settings a mount gives it.
 */
#ifndef DB_CONN_H
#define DB_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/catalog.h"

/* Open (creating if needed) DIR/catalog.db, migrate the schema forward and
 * release every claim and parked job (this process runs the jobs now).
 * NULL on failure, with err set. */
struct db *db_open(const char *dir, char *err, size_t errlen);

/* The same for a command beside a running mount: claims and parked jobs
 * are left as they are. */
struct db *db_open_beside(const char *dir, char *err, size_t errlen);

/* Every commit so far made durable. Commits are not synced one by one (WAL
 * with synchronous = NORMAL: a crash of the process loses none, a power
 * cut may lose the last ones); this syncs the log once for all of them,
 * where a promise needs it (fsync, and the mark before a write). */
int db_sync(struct db *db);

/* Close the catalog and free db (NULL: nothing). */
void db_free(struct db *db);

/* SQLite's own log (which system call failed, with its errno, behind a
 * "disk I/O error") to fn(code, message); before any other db_ call. */
void db_set_logger(void (*fn)(int code, const char *msg));

/* Copy the write-ahead log into the database once it holds DB_WAL_PAGES or
 * more, on a connection of its own, without waiting for readers or writers
 * (SQLite's passive checkpoint). Commits never checkpoint themselves: one
 * that did would make the close() that caused it wait for two fsyncs. A
 * background thread calls this; returns 1 when it checkpointed, 0 when
 * there was nothing to do or another thread was at it, -errno on failure. */
#define DB_WAL_PAGES 1000
int db_checkpoint(struct db *db);

/* Wait until the log has DB_WAL_PAGES pages (a commit says so at once),
 * or ms milliseconds: the checkpointer's wait. */
void db_checkpoint_wait(struct db *db, int ms);

/* With sync on, an ingest that is done queues DB_JOB_PG_UPSERT and a
 * removal queues DB_JOB_PG_DELETE, in the same transaction. Off by
 * default. */
void db_set_pg_sync(struct db *db, bool on);

/* [store] delete = keep: removals leave the store's objects (for a bucket
 * with versioning or retention rules); their tombstones say so. */
void db_set_keep_objects(struct db *db, bool on);

/* A new random (version 4) uuid into out[37]. */
void db_uuid(char out[37]);

#endif
