/*
 * repair.h - what thumbfs verify --repair asks of the catalog (repair.c).
 */
#ifndef DB_REPAIR_H
#define DB_REPAIR_H

#include <stdint.h>

#include "db/catalog.h"

/* What thumbfs verify --repair asks of a row: its content uploaded again
 * from the spool (an ingest job), its thumbnail made again from the
 * stored original (the thumbnail forgotten, a backfill job), its row
 * sent to PostgreSQL again (an upsert job, with sync on), or its objects
 * moved to the keys of its path (a move job). */
enum db_repair {
	DB_REPAIR_UPLOAD,
	DB_REPAIR_THUMBNAIL,
	DB_REPAIR_SYNC,
	DB_REPAIR_MOVE
};
int db_repair(struct db *db, const char *id, enum db_repair what);

/* A tombstone for an object no row named, deleted by who (verify
 * --delete-orphans): its bucket, key and size. */
int db_tombstone_orphan(struct db *db, const char *bucket, const char *key,
			int64_t size, const char *who);

#endif
