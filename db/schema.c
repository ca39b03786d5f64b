/* schema.c - the catalog's tables, and each version's step forward. */
#include <errno.h>
#include <stdio.h>

#include "db/internal.h"

#define SCHEMA_VERSION 16

static const char schema_v1[] = "CREATE TABLE images ("
				" id TEXT PRIMARY KEY,"
				" patient_id TEXT NOT NULL,"
				" batch_date TEXT NOT NULL,"
				" name TEXT NOT NULL,"
				" state TEXT NOT NULL,"
				" gen INTEGER NOT NULL DEFAULT 0,"
				" file_size INTEGER NOT NULL DEFAULT 0,"
				" s3_key TEXT NOT NULL DEFAULT '',"
				" s3_thumbnail_key TEXT NOT NULL DEFAULT '',"
				" s3_bucket TEXT NOT NULL DEFAULT '',"
				" thumbnail_name TEXT NOT NULL DEFAULT '',"
				" thumbnail_size INTEGER NOT NULL DEFAULT 0,"
				" mime_type TEXT NOT NULL DEFAULT '',"
				" width INTEGER NOT NULL DEFAULT 0,"
				" height INTEGER NOT NULL DEFAULT 0,"
				" sha256 TEXT NOT NULL DEFAULT '',"
				" error TEXT NOT NULL DEFAULT '',"
				" uploaded_by TEXT NOT NULL DEFAULT '',"
				" created_at TEXT NOT NULL,"
				" updated_at TEXT NOT NULL,"
				" category TEXT NOT NULL DEFAULT '',"
				" filemaker_id TEXT NOT NULL DEFAULT '',"
				" in_pg INTEGER NOT NULL DEFAULT 0,"
				" seen INTEGER NOT NULL DEFAULT 0,"
				" UNIQUE (patient_id, batch_date, name));"
				"CREATE INDEX images_thumb ON images"
				" (patient_id, batch_date, thumbnail_name);"
				"CREATE TABLE jobs ("
				" id INTEGER PRIMARY KEY AUTOINCREMENT,"
				" kind INTEGER NOT NULL,"
				" image_id TEXT NOT NULL DEFAULT '',"
				" gen INTEGER NOT NULL DEFAULT 0,"
				" key TEXT NOT NULL DEFAULT '',"
				" key2 TEXT NOT NULL DEFAULT '',"
				" attempts INTEGER NOT NULL DEFAULT 0,"
				" not_before INTEGER NOT NULL DEFAULT 0,"
				" claimed INTEGER NOT NULL DEFAULT 0,"
				" last_error TEXT NOT NULL DEFAULT '',"
				" name TEXT NOT NULL DEFAULT '');"
				"CREATE INDEX jobs_image ON jobs (image_id);";

/* Version 2: the images open for writing whose writer has not yet been
 * told they are saved (by close() or fsync()). */
static const char schema_v2[] = "CREATE TABLE writing ("
				" patient_id TEXT NOT NULL,"
				" batch_date TEXT NOT NULL,"
				" name TEXT NOT NULL,"
				" PRIMARY KEY (patient_id, batch_date, name));";

/* Version 3: what was unlinked, by whom and when, and whether the store's
 * objects were kept ([store] delete = keep). */
static const char schema_v3[] = "CREATE TABLE tombstones ("
				" id TEXT PRIMARY KEY,"
				" image_id TEXT NOT NULL,"
				" patient_id TEXT NOT NULL,"
				" batch_date TEXT NOT NULL,"
				" name TEXT NOT NULL,"
				" s3_bucket TEXT NOT NULL,"
				" s3_key TEXT NOT NULL,"
				" s3_thumbnail_key TEXT NOT NULL,"
				" sha256 TEXT NOT NULL,"
				" file_size INTEGER NOT NULL,"
				" deleted_by TEXT NOT NULL,"
				" deleted_at TEXT NOT NULL,"
				" objects_kept INTEGER NOT NULL);";

/* Version 4: whose spool file's data was given back to the disk (the
 * cache's bound), its name, size, mode, times and xattrs kept: its
 * content is read from the store. */
static const char schema_v4[] = "ALTER TABLE images ADD COLUMN"
				" evicted INTEGER NOT NULL DEFAULT 0;";

/* Version 5: the thumbnail name each image holds (claims it before its
 * upload), unique in its date, so that no two images share a thumbnail.
 * A catalog from before keeps, of the rows that shared a name, the first
 * one's claim; the others claim a name of their own when next ingested. */
static const char schema_v5[] =
    "ALTER TABLE images ADD COLUMN thumb_claim TEXT NOT NULL DEFAULT '';"
    "UPDATE images SET thumb_claim = thumbnail_name WHERE"
    " thumbnail_name != '' AND rowid = (SELECT min(rowid) FROM images i"
    " WHERE i.patient_id = images.patient_id AND"
    " i.batch_date = images.batch_date AND"
    " i.thumbnail_name = images.thumbnail_name);"
    "CREATE UNIQUE INDEX images_thumb_claim ON images"
    " (patient_id, batch_date, thumb_claim) WHERE thumb_claim != '';"
    /* and the directories renamed whose spool directory may not have
     * followed yet (db_dir_move) */
    "CREATE TABLE moves (from_patient TEXT NOT NULL,"
    " from_date TEXT NOT NULL, to_patient TEXT NOT NULL,"
    " to_date TEXT NOT NULL);";

/* Version 6: jobs parked after a failure no retry can fix (a request the
 * store refuses for good, content stored wrong again and again): they wait
 * for SIGHUP, the next mount or thumbfs retry, and the others go on. */
static const char schema_v6[] =
    "ALTER TABLE jobs ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;"
    /* the tries whose content the store got or kept wrong */
    "ALTER TABLE jobs ADD COLUMN wrong INTEGER NOT NULL DEFAULT 0;";

/* Version 7: the problems the status file lists (db_problems), found
 * without reading every row. */
static const char schema_v7[] =
    "CREATE INDEX images_error ON images (updated_at) WHERE error != '';"
    "CREATE INDEX jobs_parked ON jobs (id) WHERE parked;"
    /* and the rows the spool must still hold, checked at mount */
    "CREATE INDEX images_spooled ON images (id) WHERE state = 'spooled';";

/* Version 8: the status file's counts kept as rows change, by triggers,
 * so that reading them scans nothing however large the catalog. */
#define COUNTED(r)                                                             \
	"CASE what WHEN 'spooled' THEN " r ".state = 'spooled' WHEN"           \
	" 'uploaded' THEN " r ".state = 'uploaded' AND " r ".mime_type"        \
	" LIKE 'image/%' WHEN 'other' THEN " r ".state = 'uploaded' AND " r    \
	".mime_type NOT LIKE 'image/%' ELSE " r ".error != '' END"
static const char schema_v8[] =
    "CREATE TABLE counts (what TEXT PRIMARY KEY, n INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "INSERT INTO counts VALUES ('spooled', 0), ('uploaded', 0),"
    " ('other', 0), ('errors', 0);"
    "UPDATE counts SET n = (SELECT count(*) FROM images i WHERE"
    " " COUNTED(
	"i") ");"
	     "CREATE TRIGGER counts_insert AFTER INSERT ON images BEGIN"
	     " UPDATE counts SET n = n + (" COUNTED(
		 "NEW") "); END;"
			"CREATE TRIGGER counts_delete AFTER DELETE ON images "
			"BEGIN"
			" UPDATE counts SET n = n - (" COUNTED(
			    "OLD") "); END;"
				   "CREATE TRIGGER counts_update AFTER UPDATE "
				   "OF state, mime_type, error"
				   " ON images BEGIN UPDATE counts SET n = n + "
				   "(" COUNTED("NEW") ") - (" COUNTED(
				       "OLD") "); END;";

/* Version 9: how far the changes of PostgreSQL are applied (the last
 * transaction bound, for the database the dsn names), so that a mount
 * reads only what came after; and whether the last mount ended cleanly,
 * so that the next one walks the spool only after a crash. */
static const char schema_v9[] =
    "CREATE TABLE sync_state (one INTEGER PRIMARY KEY CHECK (one = 1),"
    " dsn TEXT NOT NULL, pg_bound INTEGER NOT NULL);"
    "CREATE TABLE mount_state (one INTEGER PRIMARY KEY CHECK (one = 1),"
    " clean INTEGER NOT NULL);";

/* Version 10: every statement run per image finds its rows by an index
 * (tests/unit/test_plans.c): whether a store key is still some row's or
 * some job's, the delete a new upload of a name waits for, and the store
 * jobs a runner may take. Without them each ingest read the whole catalog
 * (112 ms at 300,000 rows). */
static const char schema_v10[] =
    "CREATE INDEX images_s3_key ON images (s3_key);"
    "CREATE INDEX images_s3_thumbnail_key ON images (s3_thumbnail_key);"
    "CREATE INDEX jobs_key ON jobs (key);"
    "CREATE INDEX jobs_key2 ON jobs (key2);"
    "CREATE INDEX jobs_delete_name ON jobs (name) WHERE kind = 2;"
    "CREATE INDEX jobs_pg_delete ON jobs (image_id) WHERE kind = 4;"
    "CREATE INDEX jobs_store_ready ON jobs (id) WHERE kind IN (1, 2, 5, 6)"
    " AND claimed = 0 AND parked = 0;";

/* Version 11: the keys a claimed job is writing (db/gate.c), so that a
 * delete of one waits until the write is over, and another write of it
 * does too. */
static const char schema_v11[] =
    "ALTER TABLE jobs ADD COLUMN put_key TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE jobs ADD COLUMN put_key2 TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX jobs_put_key ON jobs (put_key) WHERE put_key != '';"
    "CREATE INDEX jobs_put_key2 ON jobs (put_key2) WHERE put_key2 != '';";

/* Version 12: the stamp of the versions a delete means, and of what a
 * writer last stored (db/pgkey.h); a tombstone's, of the version removed. */
static const char schema_v12[] =
    "ALTER TABLE jobs ADD COLUMN stamp TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tombstones ADD COLUMN stamp TEXT NOT NULL DEFAULT '';";

/* Version 13: when each job was queued (unix seconds), for the age of
 * the oldest waiting one that the status file and thumbfs check give;
 * set by a trigger, so that no statement that queues needs to. */
static const char schema_v13[] =
    "ALTER TABLE jobs ADD COLUMN queued INTEGER NOT NULL DEFAULT 0;"
    "UPDATE jobs SET queued = unixepoch();"
    "CREATE TRIGGER jobs_queued AFTER INSERT ON jobs BEGIN UPDATE jobs SET"
    " queued = unixepoch() WHERE id = new.id; END;";

/* Version 14: the queue's counts kept by triggers as the images' are (v8),
 * and its oldest waiting jobs found by index: a status read or a metrics
 * scrape scanned every job (620 ms at a million queued, under the
 * catalog's lock). And a file thumbfs makes a thumbnail of (a PDF, a
 * video, a DICOM image) counts as an image, not as another file. */
// clang-format off
#define JOB_COUNTED(r)                                                         \
	"CASE what WHEN 'ingest' THEN " r ".kind = 1 AND NOT " r ".parked"     \
	" WHEN 'delete' THEN " r ".kind = 2 AND NOT " r ".parked"              \
	" WHEN 'retrying' THEN " r ".attempts > 0 AND NOT " r ".parked"        \
	" WHEN 'sync' THEN " r ".kind IN (3, 4)"                               \
	" WHEN 'backfill' THEN " r ".kind = 5 AND NOT " r ".parked"            \
	" WHEN 'move' THEN " r ".kind = 6 AND NOT " r ".parked"                \
	" ELSE " r ".parked END"
#define PICTURED(r)                                                            \
	"(" r ".mime_type LIKE 'image/%' OR " r ".mime_type LIKE 'video/%'"    \
	" OR " r ".mime_type IN ('application/pdf', 'application/dicom'))"
#define COUNTED14(r)                                                           \
	"CASE what WHEN 'spooled' THEN " r ".state = 'spooled'"                \
	" WHEN 'uploaded' THEN " r ".state = 'uploaded' AND " PICTURED(r)      \
	" WHEN 'other' THEN " r ".state = 'uploaded' AND NOT " PICTURED(r)     \
	" ELSE " r ".error != '' END"
static const char schema_v14[] =
    "CREATE TABLE job_counts (what TEXT PRIMARY KEY, n INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "INSERT INTO job_counts VALUES ('ingest', 0), ('delete', 0),"
    " ('retrying', 0), ('sync', 0), ('backfill', 0), ('move', 0),"
    " ('parked', 0);"
    "UPDATE job_counts SET n ="
    " (SELECT count(*) FROM jobs j WHERE " JOB_COUNTED("j") ");"
    "CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN"
    " UPDATE job_counts SET n = n + (" JOB_COUNTED("NEW") "); END;"
    "CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN"
    " UPDATE job_counts SET n = n - (" JOB_COUNTED("OLD") "); END;"
    "CREATE TRIGGER job_counts_update AFTER UPDATE OF kind, parked, attempts"
    " ON jobs BEGIN UPDATE job_counts SET n = n + (" JOB_COUNTED("NEW") ")"
    " - (" JOB_COUNTED("OLD") "); END;"
    "CREATE INDEX jobs_waiting ON jobs (queued) WHERE NOT parked;"
    "CREATE INDEX jobs_sync_waiting ON jobs (queued)"
    " WHERE kind IN (3, 4) AND NOT parked;"
    "DROP TRIGGER counts_insert;"
    "DROP TRIGGER counts_delete;"
    "DROP TRIGGER counts_update;"
    "UPDATE counts SET n ="
    " (SELECT count(*) FROM images i WHERE " COUNTED14("i") ");"
    "CREATE TRIGGER counts_insert AFTER INSERT ON images BEGIN"
    " UPDATE counts SET n = n + (" COUNTED14("NEW") "); END;"
    "CREATE TRIGGER counts_delete AFTER DELETE ON images BEGIN"
    " UPDATE counts SET n = n - (" COUNTED14("OLD") "); END;"
    "CREATE TRIGGER counts_update AFTER UPDATE OF state, mime_type, error"
    " ON images BEGIN UPDATE counts SET n = n + (" COUNTED14("NEW") ")"
    " - (" COUNTED14("OLD") "); END;";
// clang-format on

/* Version 15: the folders held for their names (db/held.h); and each
 * image's name in NFC (name_key, db_name_key) for a name that is not
 * ASCII, so that one spelled the other way finds it (fs/nfc.c). */
static const char schema_v15[] =
    "CREATE TABLE held (path TEXT PRIMARY KEY, since TEXT NOT NULL)"
    " WITHOUT ROWID;"
    "ALTER TABLE images ADD COLUMN name_key TEXT NOT NULL DEFAULT '';"
    "UPDATE images SET name_key = thumbfs_name_key(name)"
    " WHERE name GLOB '*[^ -~]*';"
    "CREATE INDEX images_name_key ON images (patient_id, batch_date,"
    " name_key) WHERE name_key != '';";

/* Version 16: a row's rowid is never given again, not even after the
 * newest row is deleted (SQLite gives the largest again then): the
 * kernel's id of an image is its rowid (fs/rowino.h), and an id the
 * kernel still holds must never come to name another patient's image.
 * The largest ever given is kept here; an insert takes the next. */
static const char schema_v16[] =
    "CREATE TABLE rowid_seq (one INTEGER PRIMARY KEY CHECK (one = 1),"
    " n INTEGER NOT NULL);"
    "INSERT INTO rowid_seq SELECT 1, coalesce(max(rowid), 0) FROM images;"
    "CREATE TRIGGER rowid_seq_insert AFTER INSERT ON images BEGIN"
    " UPDATE rowid_seq SET n = NEW.rowid WHERE one = 1 AND n < NEW.rowid;"
    " END;";

/* thumbfs_name_key(name): db_name_key's, for the step above */
static void name_key_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	char key[1024];
	const char *name = (const char *)sqlite3_value_text(argv[0]);
	(void)argc;
	if (!name || db_name_key(name, key, sizeof(key)) != 1)
		key[0] = '\0';
	sqlite3_result_text(ctx, key, -1, SQLITE_TRANSIENT);
}

int db_migrate(sqlite3 *conn, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int version = 0;
	char *msg = NULL;
	if (sqlite3_prepare_v2(conn, "PRAGMA user_version", -1, &s, NULL) ==
		SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		version = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	if (version > SCHEMA_VERSION) {
		snprintf(err, errlen,
			 "catalog schema version %d is newer than this "
			 "thumbfs (%d)",
			 version, SCHEMA_VERSION);
		return -EPROTO;
	}
	if (version == SCHEMA_VERSION)
		return 0;
	if (sqlite3_create_function(conn, "thumbfs_name_key", 1,
				    SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
				    name_key_fn, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot create the catalog schema: %s",
			 sqlite3_errmsg(conn));
		return -EIO;
	}
	/* each version's step, in order, in one transaction */
	const char *steps[] = {schema_v1,  schema_v2,  schema_v3,  schema_v4,
			       schema_v5,  schema_v6,  schema_v7,  schema_v8,
			       schema_v9,  schema_v10, schema_v11, schema_v12,
			       schema_v13, schema_v14, schema_v15, schema_v16};
	char set[64];
	snprintf(set, sizeof(set), "PRAGMA user_version = %d", SCHEMA_VERSION);
	int bad = sqlite3_exec(conn, "BEGIN", NULL, NULL, &msg);
	for (int v = version; !bad && v < SCHEMA_VERSION; v++)
		bad = sqlite3_exec(conn, steps[v], NULL, NULL, &msg);
	if (!bad)
		bad = sqlite3_exec(conn, set, NULL, NULL, &msg) ||
		      sqlite3_exec(conn, "COMMIT", NULL, NULL, &msg);
	if (bad) {
		snprintf(err, errlen, "cannot create the catalog schema: %s",
			 msg ? msg : "?");
		sqlite3_free(msg);
		sqlite3_exec(conn, "ROLLBACK", NULL, NULL, NULL);
		return -EIO;
	}
	return 0;
}
