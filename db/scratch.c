/* scratch.c - thumbfs verify's scratch database: the listing and
 * PostgreSQL's rows joined with the catalog in SQLite (see scratch.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/internal.h"
#include "db/scratch.h"

struct db_scratch {
	sqlite3 *conn;
	sqlite3_stmt *add_object, *add_pg;
	bool in_tx;
};

static const char SCHEMA[] =
    "CREATE TABLE objects (key TEXT PRIMARY KEY, size INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE pg (patient_id TEXT, batch_date TEXT, name TEXT,"
    " PRIMARY KEY (patient_id, batch_date, name)) WITHOUT ROWID;";

#define DB_COL_NAME_I(n, t) ", i." #n

/* the rows in scope: NULL binds match every value */
#define SCOPE                                                                  \
	" (:patient IS NULL OR i.patient_id = :patient) AND (:date IS NULL"    \
	" OR i.batch_date = :date) AND (:name IS NULL OR i.name = :name)"

static const char SQL_ROWS[] =
    "SELECT coalesce(o.size, -1), coalesce(t.size, -1), p.name IS NOT NULL"
    " , EXISTS (SELECT 1 FROM cat.jobs j WHERE j.image_id = i.id AND"
    " j.kind = 6)" DB_IMAGE_COLUMNS(
	DB_COL_NAME_I) " FROM cat.images i"
		       " LEFT JOIN objects o ON o.key = i.s3_key"
		       " LEFT JOIN objects t ON t.key = i.s3_thumbnail_key"
		       " LEFT JOIN pg p ON p.patient_id = i.patient_id AND"
		       " p.batch_date = i.batch_date AND p.name = i.name"
		       " WHERE i.state = 'uploaded' AND" SCOPE " ORDER BY i.id";
/* a key two rows name, as their original's or their thumbnail's */
static const char SQL_SHARED[] =
    "SELECT key, count(*) FROM (SELECT i.s3_key AS key FROM cat.images i"
    " WHERE i.s3_key != '' AND" SCOPE " UNION ALL SELECT"
    " i.s3_thumbnail_key FROM cat.images i WHERE i.s3_thumbnail_key != ''"
    " AND" SCOPE ") GROUP BY 1 HAVING count(*) > 1 ORDER BY 1";
/* every key something in the catalog names, indexed, so that the orphans
 * are an anti-join rather than a scan of images per object */
static const char SQL_NAMED[] =
    "CREATE TEMP TABLE named (key TEXT PRIMARY KEY) WITHOUT ROWID;"
    "INSERT OR IGNORE INTO named SELECT s3_key FROM cat.images WHERE"
    " s3_key != '';"
    "INSERT OR IGNORE INTO named SELECT s3_thumbnail_key FROM cat.images"
    " WHERE s3_thumbnail_key != '';"
    "INSERT OR IGNORE INTO named SELECT s3_key FROM cat.tombstones WHERE"
    " objects_kept AND s3_key != '';"
    "INSERT OR IGNORE INTO named SELECT s3_thumbnail_key FROM"
    " cat.tombstones WHERE objects_kept AND s3_thumbnail_key != '';"
    "INSERT OR IGNORE INTO named SELECT key FROM cat.jobs WHERE key != '';"
    "INSERT OR IGNORE INTO named SELECT key2 FROM cat.jobs WHERE"
    " key2 != '';";
static const char SQL_ORPHANS[] =
    "SELECT key, size FROM objects o WHERE key NOT LIKE 'thumbfs-probe/%'"
    " AND NOT EXISTS (SELECT 1 FROM named n WHERE n.key = o.key)"
    " ORDER BY key";
static const char SQL_PG_ONLY[] =
    "SELECT patient_id || '/' || batch_date || '/' || name, 0 FROM pg p"
    " WHERE NOT EXISTS (SELECT 1 FROM cat.images i WHERE"
    " i.patient_id = p.patient_id AND i.batch_date = p.batch_date AND"
    " i.name = p.name) ORDER BY 1";

struct db_scratch *db_scratch_open(const char *catalog_dir, const char *tmp_dir,
				   char *err, size_t errlen)
{
	char path[4200], cat[4200], *sql = NULL;
	struct db_scratch *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/verify-%d.db", tmp_dir, (int)getpid());
	unlink(path);
	snprintf(cat, sizeof(cat), "file:%s/catalog.db?mode=ro", catalog_dir);
	if (sqlite3_open_v2(path, &s->conn,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK)
		goto fail;
	unlink(path); /* it lives while open */
	sqlite3_busy_timeout(s->conn, 5000);
	sql = sqlite3_mprintf("PRAGMA journal_mode = OFF; PRAGMA synchronous ="
			      " OFF; PRAGMA temp_store = FILE; ATTACH %Q AS "
			      "cat; %s",
			      cat, SCHEMA);
	if (!sql || sqlite3_exec(s->conn, sql, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->conn,
			       "INSERT OR REPLACE INTO objects VALUES (?, ?)",
			       -1, &s->add_object, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->conn,
			       "INSERT OR IGNORE INTO pg VALUES (?, ?, ?)", -1,
			       &s->add_pg, NULL) != SQLITE_OK ||
	    sqlite3_exec(s->conn, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_free(sql);
	s->in_tx = true;
	return s;
fail:
	snprintf(err, errlen, "cannot make the scratch database in '%s': %s",
		 tmp_dir, s->conn ? sqlite3_errmsg(s->conn) : "out of memory");
	sqlite3_free(sql);
	db_scratch_close(s);
	return NULL;
}

void db_scratch_close(struct db_scratch *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->add_object);
	sqlite3_finalize(s->add_pg);
	sqlite3_close(s->conn);
	free(s);
}

int db_scratch_object(struct db_scratch *s, const char *key, uint64_t size)
{
	sqlite3_bind_text(s->add_object, 1, key, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s->add_object, 2, (sqlite3_int64)size);
	return db_run(s->add_object);
}

int db_scratch_pg_row(struct db_scratch *s, const char *patient,
		      const char *date, const char *name)
{
	sqlite3_bind_text(s->add_pg, 1, patient, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s->add_pg, 2, date, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s->add_pg, 3, name, -1, SQLITE_TRANSIENT);
	return db_run(s->add_pg);
}

int db_scratch_loaded(struct db_scratch *s)
{
	if (!s->in_tx)
		return 0;
	s->in_tx = false;
	return sqlite3_exec(s->conn, "COMMIT", NULL, NULL, NULL) == SQLITE_OK
		   ? 0
		   : -EIO;
}

/* sql prepared with scope bound, or NULL. */
static sqlite3_stmt *scoped(struct db_scratch *s, const char *sql,
			    const struct db_scope *scope)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->conn, sql, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	if (scope) {
		int i = sqlite3_bind_parameter_index(st, ":patient");
		if (i && scope->patient)
			sqlite3_bind_text(st, i, scope->patient, -1,
					  SQLITE_STATIC);
		if ((i = sqlite3_bind_parameter_index(st, ":date")) &&
		    scope->date)
			sqlite3_bind_text(st, i, scope->date, -1,
					  SQLITE_STATIC);
		if ((i = sqlite3_bind_parameter_index(st, ":name")) &&
		    scope->name)
			sqlite3_bind_text(st, i, scope->name, -1,
					  SQLITE_STATIC);
	}
	return st;
}

/* The end of a walk over st: 0, fn's stop, or -EIO. */
static int finish(sqlite3_stmt *st, int rc, int stop)
{
	sqlite3_finalize(st);
	return stop ? stop : rc == SQLITE_DONE ? 0 : -EIO;
}

int db_scratch_rows(struct db_scratch *s, const struct db_scope *scope,
		    int (*fn)(void *arg, const struct db_image *row,
			      int64_t original, int64_t thumbnail, bool in_pg,
			      bool moving),
		    void *arg)
{
	struct db_image img;
	int rc, stop = 0;
	sqlite3_stmt *st = scoped(s, SQL_ROWS, scope);
	if (!st)
		return -EIO;
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		db_read_image(st, 4, &img);
		stop = fn(arg, &img, sqlite3_column_int64(st, 0),
			  sqlite3_column_int64(st, 1),
			  sqlite3_column_int(st, 2) != 0,
			  sqlite3_column_int(st, 3) != 0);
	}
	return finish(st, stop ? SQLITE_DONE : rc, stop);
}

/* fn(arg, text of column 0, integer of column 1) for each row of sql. */
static int each_key(struct db_scratch *s, const char *sql,
		    const struct db_scope *scope,
		    int (*fn)(void *arg, const char *key, int64_t n), void *arg)
{
	int rc, stop = 0;
	sqlite3_stmt *st = scoped(s, sql, scope);
	if (!st)
		return -EIO;
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW)
		stop = fn(arg, (const char *)sqlite3_column_text(st, 0),
			  sqlite3_column_int64(st, 1));
	return finish(st, stop ? SQLITE_DONE : rc, stop);
}

int db_scratch_shared(struct db_scratch *s, const struct db_scope *scope,
		      int (*fn)(void *arg, const char *key, int64_t rows),
		      void *arg)
{
	return each_key(s, SQL_SHARED, scope, fn, arg);
}

int db_scratch_orphans(struct db_scratch *s,
		       int (*fn)(void *arg, const char *key, int64_t size),
		       void *arg)
{
	sqlite3_exec(s->conn, "DROP TABLE IF EXISTS temp.named", NULL, NULL,
		     NULL);
	if (sqlite3_exec(s->conn, SQL_NAMED, NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	return each_key(s, SQL_ORPHANS, NULL, fn, arg);
}

/* (each_key's shape: the path, and no number) */
struct pg_only {
	int (*fn)(void *arg, const char *path);
	void *arg;
};

static int pg_only_row(void *arg, const char *path, int64_t unused)
{
	struct pg_only *p = arg;
	(void)unused;
	return p->fn(p->arg, path);
}

int db_scratch_pg_only(struct db_scratch *s,
		       int (*fn)(void *arg, const char *path), void *arg)
{
	struct pg_only p = {fn, arg};
	return each_key(s, SQL_PG_ONLY, NULL, pg_only_row, &p);
}
