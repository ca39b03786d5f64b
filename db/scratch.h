/*
 * scratch.h - the scratch database of thumbfs verify: the store's listing
 * and PostgreSQL's rows copied into a temporary SQLite file, and compared
 * with the catalog (attached read-only) by joins, so that memory does not
 * grow with the archive (SQLite sorts and joins through its page cache and
 * temporary files). Read-only towards the catalog: safe beside a mount.
 */
#ifndef DB_SCRATCH_H
#define DB_SCRATCH_H

#include <stdint.h>

#include "db/catalog.h"

struct db_scratch;

/* The part of the archive compared: NULL for every patient (date, name). */
struct db_scope {
	const char *patient, *date, *name;
};

/* A scratch file in tmp_dir (removed at once: it lives while open), with
 * the catalog of catalog_dir attached read-only. NULL with err set. */
struct db_scratch *db_scratch_open(const char *catalog_dir, const char *tmp_dir,
				   char *err, size_t errlen);
void db_scratch_close(struct db_scratch *s);

/* Filling, in one transaction each side: the store's objects, and the
 * rows PostgreSQL has. 0 or -errno. */
int db_scratch_object(struct db_scratch *s, const char *key, uint64_t size);
int db_scratch_pg_row(struct db_scratch *s, const char *patient,
		      const char *date, const char *name);
int db_scratch_loaded(struct db_scratch *s);

/* fn(arg, row, original's size or -1 when the store lacks it, the
 * thumbnail's size or -1, whether PostgreSQL has the row, whether a move
 * of it waits) for every uploaded row in scope, by id; a non-zero return
 * stops. */
int db_scratch_rows(struct db_scratch *s, const struct db_scope *scope,
		    int (*fn)(void *arg, const struct db_image *row,
			      int64_t original, int64_t thumbnail, bool in_pg,
			      bool moving),
		    void *arg);

/* fn(arg, key, how many rows) for every key two or more rows in scope
 * name, as their original's or their thumbnail's. */
int db_scratch_shared(struct db_scratch *s, const struct db_scope *scope,
		      int (*fn)(void *arg, const char *key, int64_t rows),
		      void *arg);

/* fn(arg, key, size) for every object no row, kept tombstone or job
 * names. */
int db_scratch_orphans(struct db_scratch *s,
		       int (*fn)(void *arg, const char *key, int64_t size),
		       void *arg);

/* fn(arg, "ID/DATE/NAME") for every PostgreSQL row the catalog lacks. */
int db_scratch_pg_only(struct db_scratch *s,
		       int (*fn)(void *arg, const char *path), void *arg);

#endif
