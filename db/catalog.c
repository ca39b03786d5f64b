/* catalog.c - the SQLite catalog of images and the job queue (see catalog.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "catalog.h"

#define SCHEMA_VERSION 4

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

enum stmt {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_IMG_GET,
	S_IMG_GET_ID,
	S_IMG_GET_THUMB,
	S_IMG_INSERT,
	S_IMG_REWRITE,
	S_IMG_DELETE,
	S_TOMB_INSERT,
	S_TOMB_GET,
	S_JOB_PG_DELETE_OF,
	S_IMG_DONE,
	S_JOB_FIND_INGEST,
	S_JOB_SET_GEN,
	S_JOB_INSERT,
	S_JOB_DROP_INGESTS,
	S_JOB_HAS,
	S_JOB_CLAIM_PICK,
	S_JOB_SYNC_PICK,
	S_JOB_INSERT_SYNC,
	S_JOB_CLAIM_MARK,
	S_JOB_DELETE,
	S_JOB_RETRY,
	S_COUNT_STATE,
	S_COUNT_JOBS,
	S_IMG_INSERT_REMOTE,
	S_IMG_UPDATE_REMOTE,
	S_IMG_SEEN,
	S_SCAN_BEGIN,
	S_SCAN_GONE,
	S_IN_PG,
	S_LIST_BATCH,
	S_JOB_RELEASE,
	S_IMG_META,
	S_WRITING_ADD,
	S_WRITING_DEL,
	S_WRITING_FIRST,
	S_IMG_BUMP,
	S_IMG_EVICT,
	S_IMG_EVICTED,
	S_IMG_RESTORED,
	S_THUMB_SETTLED,
	S_BACKFILL_QUEUE,
	S_BACKFILL_FAILED,
	S_N
};

#define IMG_COLS                                                               \
	"id, patient_id, batch_date, name, state, gen, file_size, s3_key,"     \
	" s3_thumbnail_key, s3_bucket, thumbnail_name, thumbnail_size,"        \
	" mime_type, width, height, sha256, error, uploaded_by, created_at,"   \
	" updated_at, category, filemaker_id"

static const char *const sql[S_N] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_IMG_GET] = "SELECT " IMG_COLS " FROM images WHERE patient_id = ?1"
		  " AND batch_date = ?2 AND name = ?3",
    [S_IMG_GET_ID] = "SELECT " IMG_COLS " FROM images WHERE id = ?1",
    [S_IMG_GET_THUMB] = "SELECT " IMG_COLS " FROM images WHERE"
			" patient_id = ?1 AND batch_date = ?2 AND"
			" thumbnail_name = ?3 ORDER BY updated_at DESC"
			" LIMIT 1",
    [S_IMG_INSERT] = "INSERT INTO images (id, patient_id, batch_date, name,"
		     " state, gen, file_size, uploaded_by, created_at,"
		     " updated_at) VALUES (?1, ?2, ?3, ?4, 'spooled', 1,"
		     " ?5, ?6, ?7, ?7)",
    [S_IMG_REWRITE] = "UPDATE images SET state = 'spooled', gen = gen + 1,"
		      " file_size = ?2, uploaded_by = ?3, updated_at = ?4,"
		      " evicted = 0 WHERE id = ?1",
    [S_IMG_DELETE] = "DELETE FROM images WHERE id = ?1",
    [S_TOMB_INSERT] = "INSERT INTO tombstones VALUES (?1, ?2, ?3, ?4, ?5, ?6,"
		      " ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [S_JOB_PG_DELETE_OF] = "SELECT 1 FROM jobs WHERE kind = 4 AND key = ?1"
			   " AND key2 = ?2 AND name = ?3 LIMIT 1",
    [S_TOMB_GET] = "SELECT id, image_id, patient_id, batch_date, name,"
		   " s3_bucket, s3_key, s3_thumbnail_key, sha256, file_size,"
		   " deleted_by, deleted_at, objects_kept FROM tombstones"
		   " WHERE id = ?1",
    [S_IMG_DONE] = "UPDATE images SET state = 'uploaded', s3_key = ?3,"
		   " s3_thumbnail_key = ?4, s3_bucket = ?5,"
		   " thumbnail_name = ?6, thumbnail_size = ?7,"
		   " mime_type = ?8, width = ?9, height = ?10,"
		   " sha256 = ?11, error = ?12, file_size = ?13,"
		   " updated_at = ?14, category = ?15, filemaker_id = ?16"
		   " WHERE id = ?1 AND gen = ?2",
    [S_JOB_FIND_INGEST] = "SELECT id FROM jobs WHERE kind = 1 AND"
			  " image_id = ?1 AND claimed = 0 LIMIT 1",
    [S_JOB_SET_GEN] = "UPDATE jobs SET gen = ?2, not_before = 0,"
		      " attempts = 0 WHERE id = ?1",
    [S_JOB_INSERT] = "INSERT INTO jobs (kind, image_id, gen, key, key2)"
		     " VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_JOB_DROP_INGESTS] = "DELETE FROM jobs WHERE kind = 1 AND"
			   " image_id = ?1 AND claimed = 0",
    [S_JOB_HAS] = "SELECT 1 FROM jobs WHERE image_id = ?1 LIMIT 1",
    /* one job of an image at a time: an older ingest still running
     * would otherwise store its content after the newer one's */
    [S_JOB_CLAIM_PICK] = "SELECT id, kind, image_id, gen, key, key2,"
			 " attempts FROM jobs WHERE kind IN (1, 2, 5) AND"
			 " claimed = 0 AND not_before <= ?1 AND NOT EXISTS"
			 " (SELECT 1 FROM jobs o WHERE o.image_id ="
			 " jobs.image_id AND o.image_id != '' AND"
			 " o.claimed = 1 AND o.kind IN (1, 2, 5))"
			 " ORDER BY id LIMIT 1",
    [S_JOB_SYNC_PICK] = "SELECT id, kind, image_id, gen, key, key2,"
			" attempts, name, not_before FROM jobs WHERE"
			" kind IN (3, 4) AND claimed = 0 AND id > ?1 ORDER BY"
			" id LIMIT 1",
    [S_JOB_INSERT_SYNC] = "INSERT INTO jobs (kind, image_id, key, key2, name)"
			  " VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_JOB_CLAIM_MARK] = "UPDATE jobs SET claimed = 1 WHERE id = ?1",
    [S_JOB_DELETE] = "DELETE FROM jobs WHERE id = ?1",
    [S_JOB_RETRY] = "UPDATE jobs SET claimed = 0, attempts = attempts + 1,"
		    " not_before = ?2, last_error = ?3 WHERE id = ?1",
    [S_COUNT_STATE] = "SELECT sum(state = 'spooled'),"
		      " sum(state = 'uploaded'), sum(error != '')"
		      " FROM images",
    [S_COUNT_JOBS] = "SELECT sum(kind = 1), sum(kind = 2),"
		     " sum(attempts > 0), sum(kind IN (3, 4)), sum(kind = 5)"
		     " FROM jobs",
    [S_IMG_INSERT_REMOTE] =
	"INSERT INTO images (" IMG_COLS ", in_pg, seen)"
	" VALUES (?1, ?2, ?3, ?4, 'uploaded', 0, ?7, ?8, ?9,"
	" ?10, ?11, ?12, ?13, ?14, ?15, ?16, '', ?18, ?19,"
	" ?20, ?21, ?22, 1, 1)",
    [S_IMG_UPDATE_REMOTE] = "UPDATE images SET file_size = ?7, s3_key = ?8,"
			    " s3_thumbnail_key = ?9, s3_bucket = ?10,"
			    " thumbnail_name = ?11, thumbnail_size = ?12,"
			    " mime_type = ?13, width = ?14, height = ?15,"
			    " sha256 = ?16, error = '', uploaded_by = ?18,"
			    " category = ?21, filemaker_id = ?22,"
			    " updated_at = ?20, evicted = 0 WHERE id = ?1",
    [S_IMG_SEEN] = "UPDATE images SET in_pg = 1, seen = 1 WHERE id = ?1",
    [S_SCAN_BEGIN] = "UPDATE images SET seen = 0 WHERE seen != 0",
    [S_SCAN_GONE] = "SELECT " IMG_COLS " FROM images WHERE in_pg = 1 AND"
		    " seen = 0 AND state = 'uploaded' AND id NOT IN (SELECT"
		    " image_id FROM jobs) LIMIT 1",
    [S_IN_PG] = "UPDATE images SET in_pg = 1 WHERE id = ?1",
    [S_WRITING_ADD] = "INSERT OR IGNORE INTO writing VALUES (?1, ?2, ?3)",
    [S_WRITING_DEL] = "DELETE FROM writing WHERE patient_id = ?1 AND"
		      " batch_date = ?2 AND name = ?3",
    [S_WRITING_FIRST] = "SELECT patient_id, batch_date, name FROM writing"
			" LIMIT 1",
    [S_IMG_BUMP] = "UPDATE images SET gen = gen + 1, evicted = 0 WHERE"
		   " patient_id = ?1 AND batch_date = ?2 AND name = ?3",
    /* settled: uploaded, not being written, no thumbnail or upload on
     * its way */
    [S_IMG_EVICT] = "UPDATE images SET evicted = 1 WHERE patient_id = ?1"
		    " AND batch_date = ?2 AND name = ?3 AND evicted = 0 AND"
		    " state = 'uploaded' AND s3_key != '' AND id NOT IN"
		    " (SELECT image_id FROM jobs WHERE kind IN (1, 5)) AND"
		    " NOT EXISTS (SELECT 1 FROM writing w WHERE"
		    " w.patient_id = ?1 AND w.batch_date = ?2 AND"
		    " w.name = ?3)",
    [S_IMG_EVICTED] = "SELECT evicted FROM images WHERE patient_id = ?1"
		      " AND batch_date = ?2 AND name = ?3",
    [S_IMG_RESTORED] = "UPDATE images SET evicted = 0 WHERE"
		       " patient_id = ?1 AND batch_date = ?2 AND name = ?3",
    [S_THUMB_SETTLED] = "SELECT 1 FROM images WHERE patient_id = ?1 AND"
			" batch_date = ?2 AND thumbnail_name = ?3 AND"
			" state = 'uploaded' AND s3_thumbnail_key != '' AND"
			" id NOT IN (SELECT image_id FROM jobs WHERE"
			" kind IN (1, 5)) LIMIT 1",
    /* rows the store has with no thumbnail and no error that says why,
     * with no job of theirs waiting; ?1/?2 NULL: every patient/date */
    [S_BACKFILL_QUEUE] = "INSERT INTO jobs (kind, image_id, gen)"
			 " SELECT 5, id, gen FROM images WHERE"
			 " state = 'uploaded' AND s3_key != '' AND"
			 " s3_thumbnail_key = '' AND error = '' AND"
			 " (?1 IS NULL OR patient_id = ?1) AND"
			 " (?2 IS NULL OR batch_date = ?2) AND"
			 " id NOT IN (SELECT image_id FROM jobs WHERE"
			 " kind IN (1, 5))",
    [S_BACKFILL_FAILED] = "UPDATE images SET error = ?3 WHERE id = ?1 AND"
			  " gen = ?2",
    [S_IMG_META] = "UPDATE images SET category = ?2, filemaker_id = ?3,"
		   " updated_at = ?4 WHERE id = ?1",
    [S_JOB_RELEASE] = "UPDATE jobs SET claimed = 0 WHERE id = ?1",
    [S_LIST_BATCH] = "SELECT name, thumbnail_name FROM images WHERE"
		     " patient_id = ?1 AND batch_date = ?2 ORDER BY name",
};

struct db {
	pthread_mutex_t lock; /* guards conn, every statement and pg_sync */
	bool pg_sync;
	bool keep_objects; /* [store] delete = keep */
	sqlite3 *conn;
	sqlite3_stmt *st[S_N];
	_Atomic int wal_pages;	   /* in the log after the last commit */
	pthread_mutex_t ckpt_lock; /* guards ckpt; taken before lock */
	sqlite3 *ckpt;		   /* the checkpointer's connection */
	char path[4096];
};

/* Leave the connection: a statement left on a row would hold its read
 * transaction open, and no checkpoint can move the log past it. */
static void unlock(struct db *db)
{
	sqlite3_stmt *s = NULL;
	while ((s = sqlite3_next_stmt(db->conn, s)))
		if (sqlite3_stmt_busy(s))
			sqlite3_reset(s);
	pthread_mutex_unlock(&db->lock);
}

void db_uuid(char out[37])
{
	unsigned char b[16];
	size_t got = 0;
	while (got < sizeof(b)) {
		ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
		if (n > 0)
			got += (size_t)n;
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
		 b[10], b[11], b[12], b[13], b[14], b[15]);
}

static void now_iso(char out[32])
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%06ldZ", ts.tv_nsec / 1000);
}

void db_free(struct db *db)
{
	if (!db)
		return;
	for (int i = 0; i < S_N; i++)
		sqlite3_finalize(db->st[i]);
	sqlite3_close(db->ckpt);
	sqlite3_close(db->conn);
	pthread_mutex_destroy(&db->ckpt_lock);
	pthread_mutex_destroy(&db->lock);
	free(db);
}

static int migrate(struct db *db, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int version = 0;
	char *msg = NULL;
	if (sqlite3_prepare_v2(db->conn, "PRAGMA user_version", -1, &s, NULL) ==
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
	/* each version's step, in order, in one transaction */
	const char *steps[] = {schema_v1, schema_v2, schema_v3, schema_v4};
	char set[64];
	snprintf(set, sizeof(set), "PRAGMA user_version = %d", SCHEMA_VERSION);
	int bad = sqlite3_exec(db->conn, "BEGIN", NULL, NULL, &msg);
	for (int v = version; !bad && v < SCHEMA_VERSION; v++)
		bad = sqlite3_exec(db->conn, steps[v], NULL, NULL, &msg);
	if (!bad)
		bad = sqlite3_exec(db->conn, set, NULL, NULL, &msg) ||
		      sqlite3_exec(db->conn, "COMMIT", NULL, NULL, &msg);
	if (bad) {
		snprintf(err, errlen, "cannot create the catalog schema: %s",
			 msg ? msg : "?");
		sqlite3_free(msg);
		sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
		return -EIO;
	}
	return 0;
}

static int wal_grown(void *arg, sqlite3 *conn, const char *name, int pages)
{
	struct db *db = arg;
	(void)conn;
	(void)name;
	db->wal_pages = pages;
	return SQLITE_OK;
}

/* One passive checkpoint on db->ckpt: 1 done, 0 busy, -EIO. */
static int passive(struct db *db, int *logged, int *copied)
{
	int rc = sqlite3_wal_checkpoint_v2(
	    db->ckpt, NULL, SQLITE_CHECKPOINT_PASSIVE, logged, copied);
	return rc == SQLITE_BUSY		? 0
	       : rc != SQLITE_OK || *logged < 0 ? -EIO
						: 1;
}

int db_checkpoint(struct db *db)
{
	if (db->wal_pages < DB_WAL_PAGES)
		return 0;
	if (pthread_mutex_trylock(&db->ckpt_lock))
		return 0; /* another thread is at it */
	int ret = 0, logged = 0, copied = 0;
	/* (a connection finds the log at its first read) */
	if (!db->ckpt &&
	    (sqlite3_open_v2(db->path, &db->ckpt,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			     NULL) != SQLITE_OK ||
	     sqlite3_exec(db->ckpt, "SELECT count(*) FROM sqlite_master", NULL,
			  NULL, NULL) != SQLITE_OK)) {
		sqlite3_close(db->ckpt);
		db->ckpt = NULL;
		ret = -EIO;
	}
	/* The bulk of the copying, while commits go on. The next commit
	 * starts the log over only if it was all copied; commits made
	 * meanwhile are copied with commits held, which is short. */
	if (ret == 0)
		ret = passive(db, &logged, &copied);
	if (ret == 1) {
		pthread_mutex_lock(&db->lock);
		ret = passive(db, &logged, &copied);
		if (ret == 1 && copied == logged)
			db->wal_pages = 0;
		unlock(db);
	}
	pthread_mutex_unlock(&db->ckpt_lock);
	return ret;
}

struct db *db_open(const char *dir, char *err, size_t errlen)
{
	char path[4096];
	char *msg = NULL;
	struct db *db = calloc(1, sizeof(*db));
	if (!db) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&db->lock, NULL);
	pthread_mutex_init(&db->ckpt_lock, NULL);
	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	snprintf(db->path, sizeof(db->path), "%s", path);
	if (sqlite3_open_v2(path, &db->conn,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open catalog '%s': %s", path,
			 db->conn ? sqlite3_errmsg(db->conn) : "out of memory");
		goto out_fail;
	}
	sqlite3_busy_timeout(db->conn, 5000);
	chmod(path, 0600); /* patient data: whatever the umask */
	if (sqlite3_exec(db->conn,
			 "PRAGMA journal_mode = WAL; PRAGMA synchronous = "
			 "NORMAL; PRAGMA foreign_keys = ON",
			 NULL, NULL, &msg)) {
		snprintf(err, errlen, "cannot use catalog '%s': %s", path,
			 msg ? msg : "?");
		sqlite3_free(msg);
		goto out_fail;
	}
	if (migrate(db, err, errlen))
		goto out_fail;
	/* replaces the automatic checkpoint: see db_checkpoint() */
	sqlite3_wal_hook(db->conn, wal_grown, db);
	for (int i = 0; i < S_N; i++) {
		if (sqlite3_prepare_v3(db->conn, sql[i], -1,
				       SQLITE_PREPARE_PERSISTENT, &db->st[i],
				       NULL) != SQLITE_OK) {
			snprintf(err, errlen, "catalog statement failed: %s",
				 sqlite3_errmsg(db->conn));
			goto out_fail;
		}
	}
	if (sqlite3_exec(db->conn, "UPDATE jobs SET claimed = 0", NULL, NULL,
			 &msg)) {
		snprintf(err, errlen, "cannot release job claims: %s",
			 msg ? msg : "?");
		sqlite3_free(msg);
		goto out_fail;
	}
	return db;
out_fail:
	db_free(db);
	return NULL;
}

/* ---- statement helpers; the caller holds db->lock ---- */

static sqlite3_stmt *use(struct db *db, enum stmt s)
{
	sqlite3_reset(db->st[s]);
	sqlite3_clear_bindings(db->st[s]);
	return db->st[s];
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
	sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_TRANSIENT);
}

/* Run a statement that returns no rows. */
static int run(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_FULL ? -ENOSPC : -EIO; /* the disk is full */
}

/* Run statement st, whose one parameter is a job id. */
static int job_stmt_locked(struct db *db, enum stmt st, int64_t job_id)
{
	sqlite3_stmt *s = use(db, st);
	sqlite3_bind_int64(s, 1, job_id);
	return run(s);
}

static int begin(struct db *db)
{
	return run(use(db, S_BEGIN));
}

static int finish(struct db *db, int ret)
{
	if (ret == 0 && (ret = run(use(db, S_COMMIT))) == 0)
		return 0;
	run(use(db, S_ROLLBACK));
	return ret;
}

static void col_text(sqlite3_stmt *s, int i, char *out, size_t n)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	snprintf(out, n, "%s", t ? (const char *)t : "");
}

static void read_image(sqlite3_stmt *s, struct db_image *o)
{
	memset(o, 0, sizeof(*o));
	col_text(s, 0, o->id, sizeof(o->id));
	col_text(s, 1, o->patient_id, sizeof(o->patient_id));
	col_text(s, 2, o->batch_date, sizeof(o->batch_date));
	col_text(s, 3, o->name, sizeof(o->name));
	col_text(s, 4, o->state, sizeof(o->state));
	o->gen = sqlite3_column_int64(s, 5);
	o->file_size = sqlite3_column_int64(s, 6);
	col_text(s, 7, o->s3_key, sizeof(o->s3_key));
	col_text(s, 8, o->s3_thumbnail_key, sizeof(o->s3_thumbnail_key));
	col_text(s, 9, o->s3_bucket, sizeof(o->s3_bucket));
	col_text(s, 10, o->thumbnail_name, sizeof(o->thumbnail_name));
	o->thumbnail_size = sqlite3_column_int64(s, 11);
	col_text(s, 12, o->mime_type, sizeof(o->mime_type));
	o->width = sqlite3_column_int(s, 13);
	o->height = sqlite3_column_int(s, 14);
	col_text(s, 15, o->sha256, sizeof(o->sha256));
	col_text(s, 16, o->error, sizeof(o->error));
	col_text(s, 17, o->uploaded_by, sizeof(o->uploaded_by));
	col_text(s, 18, o->created_at, sizeof(o->created_at));
	col_text(s, 19, o->updated_at, sizeof(o->updated_at));
	col_text(s, 20, o->category, sizeof(o->category));
	col_text(s, 21, o->filemaker_id, sizeof(o->filemaker_id));
}

/* Step a SELECT of IMG_COLS: 0 with out filled, -ENOENT, or -EIO. */
static int step_image(sqlite3_stmt *s, struct db_image *out)
{
	int rc = sqlite3_step(s), ret;
	if (rc == SQLITE_ROW) {
		read_image(s, out);
		ret = 0;
	} else {
		ret = rc == SQLITE_DONE ? -ENOENT : -EIO;
	}
	sqlite3_reset(s);
	return ret;
}

static int get_locked(struct db *db, const char *patient, const char *date,
		      const char *name, struct db_image *out)
{
	sqlite3_stmt *s = use(db, S_IMG_GET);
	bind_text(s, 1, patient);
	bind_text(s, 2, date);
	bind_text(s, 3, name);
	return step_image(s, out);
}

/* Queue an ingest of image id at gen: reuse its waiting job if it has one. */
static int queue_ingest(struct db *db, const char *id, int64_t gen)
{
	sqlite3_stmt *s = use(db, S_JOB_FIND_INGEST);
	bind_text(s, 1, id);
	int rc = sqlite3_step(s);
	int64_t job = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return -EIO;
	if (job) {
		s = use(db, S_JOB_SET_GEN);
		sqlite3_bind_int64(s, 1, job);
		sqlite3_bind_int64(s, 2, gen);
		return run(s);
	}
	s = use(db, S_JOB_INSERT);
	sqlite3_bind_int(s, 1, DB_JOB_INGEST);
	bind_text(s, 2, id);
	sqlite3_bind_int64(s, 3, gen);
	bind_text(s, 4, "");
	bind_text(s, 5, "");
	return run(s);
}

static int path_stmt(struct db *db, enum stmt which, const char *patient,
		     const char *date, const char *name)
{
	sqlite3_stmt *s = use(db, which);
	bind_text(s, 1, patient);
	bind_text(s, 2, date);
	bind_text(s, 3, name);
	return run(s);
}

static int written_locked(struct db *db, const char *patient, const char *date,
			  const char *name, int64_t size,
			  const char *uploaded_by)
{
	struct db_image img;
	char now[32];
	sqlite3_stmt *s;
	int ret = get_locked(db, patient, date, name, &img);
	now_iso(now);
	if (ret == -ENOENT) {
		db_uuid(img.id);
		img.gen = 1;
		s = use(db, S_IMG_INSERT);
		bind_text(s, 1, img.id);
		bind_text(s, 2, patient);
		bind_text(s, 3, date);
		bind_text(s, 4, name);
		sqlite3_bind_int64(s, 5, size);
		bind_text(s, 6, uploaded_by);
		bind_text(s, 7, now);
		ret = run(s);
	} else if (ret == 0) {
		img.gen++;
		s = use(db, S_IMG_REWRITE);
		bind_text(s, 1, img.id);
		sqlite3_bind_int64(s, 2, size);
		bind_text(s, 3, uploaded_by);
		bind_text(s, 4, now);
		ret = run(s);
	}
	if (ret == 0)
		ret = queue_ingest(db, img.id, img.gen);
	if (ret == 0) /* the writer is told it is saved */
		ret = path_stmt(db, S_WRITING_DEL, patient, date, name);
	return ret;
}

int db_image_writing(struct db *db, const char *patient, const char *date,
		     const char *name)
{
	pthread_mutex_lock(&db->lock);
	int ret = begin(db);
	if (ret == 0) {
		ret = path_stmt(db, S_WRITING_ADD, patient, date, name);
		if (ret == 0) /* an ingest on its way reads a changing file */
			ret = path_stmt(db, S_IMG_BUMP, patient, date, name);
		ret = finish(db, ret);
	}
	unlock(db);
	return ret;
}

int db_image_written(struct db *db, const char *patient, const char *date,
		     const char *name, int64_t size, const char *uploaded_by)
{
	pthread_mutex_lock(&db->lock);
	int ret = begin(db);
	if (ret == 0)
		ret = finish(db, written_locked(db, patient, date, name, size,
						uploaded_by));
	unlock(db);
	return ret;
}

static int queue_sync(struct db *db, enum db_job_kind kind, const char *id,
		      const char *patient, const char *date, const char *name)
{
	if (!db->pg_sync)
		return 0;
	sqlite3_stmt *s = use(db, S_JOB_INSERT_SYNC);
	sqlite3_bind_int(s, 1, kind);
	bind_text(s, 2, id);
	bind_text(s, 3, patient);
	bind_text(s, 4, date);
	bind_text(s, 5, name);
	return run(s);
}

static int queue_delete(struct db *db, const char *image_id, int64_t gen,
			const char *key, const char *key2)
{
	sqlite3_stmt *s = use(db, S_JOB_INSERT);
	sqlite3_bind_int(s, 1, DB_JOB_DELETE);
	bind_text(s, 2, image_id);
	sqlite3_bind_int64(s, 3, gen);
	bind_text(s, 4, key);
	bind_text(s, 5, key2);
	return run(s);
}

/* The image img leaves: its tombstone (when the store had it), then its
 * PostgreSQL delete; the store's delete follows the tombstone's arrival in
 * PostgreSQL (db_sync_done), or at once when there is no sync. */
static int removed_locked(struct db *db, const char *patient, const char *date,
			  const char *name, const char *who)
{
	struct db_image img;
	char tomb[37] = "", now[32];
	sqlite3_stmt *s;
	int ret = path_stmt(db, S_WRITING_DEL, patient, date, name);
	if (ret == 0)
		ret = get_locked(db, patient, date, name, &img);
	if (ret == 0) {
		s = use(db, S_JOB_DROP_INGESTS);
		bind_text(s, 1, img.id);
		ret = run(s);
	}
	if (ret == 0) {
		s = use(db, S_IMG_DELETE);
		bind_text(s, 1, img.id);
		ret = run(s);
	}
	bool stored = img.s3_key[0] || img.s3_thumbnail_key[0];
	if (ret == 0 && stored) {
		db_uuid(tomb);
		now_iso(now);
		s = use(db, S_TOMB_INSERT);
		bind_text(s, 1, tomb);
		bind_text(s, 2, img.id);
		bind_text(s, 3, patient);
		bind_text(s, 4, date);
		bind_text(s, 5, name);
		bind_text(s, 6, img.s3_bucket);
		bind_text(s, 7, img.s3_key);
		bind_text(s, 8, img.s3_thumbnail_key);
		bind_text(s, 9, img.sha256);
		sqlite3_bind_int64(s, 10, img.file_size);
		bind_text(s, 11, who ? who : "thumbfs");
		bind_text(s, 12, now);
		sqlite3_bind_int(s, 13, db->keep_objects);
		ret = run(s);
	}
	if (ret == 0 && stored && !db->keep_objects && !db->pg_sync)
		ret = queue_delete(db, img.id, img.gen, img.s3_key,
				   img.s3_thumbnail_key);
	if (ret == 0)
		ret =
		    queue_sync(db, DB_JOB_PG_DELETE, tomb, patient, date, name);
	return ret;
}

int db_image_removed(struct db *db, const char *patient, const char *date,
		     const char *name, const char *who)
{
	pthread_mutex_lock(&db->lock);
	int ret = begin(db);
	if (ret == 0) {
		int r = removed_locked(db, patient, date, name, who);
		ret = finish(db, r == -ENOENT ? 0 : r);
		if (ret == 0)
			ret = r;
	}
	unlock(db);
	return ret;
}

static int tomb_get_locked(struct db *db, const char *id,
			   struct db_tombstone *out)
{
	memset(out, 0, sizeof(*out));
	sqlite3_stmt *s = use(db, S_TOMB_GET);
	bind_text(s, 1, id);
	int rc = sqlite3_step(s), ret = -ENOENT;
	if (rc == SQLITE_ROW) {
		col_text(s, 0, out->id, sizeof(out->id));
		col_text(s, 1, out->image_id, sizeof(out->image_id));
		col_text(s, 2, out->patient_id, sizeof(out->patient_id));
		col_text(s, 3, out->batch_date, sizeof(out->batch_date));
		col_text(s, 4, out->name, sizeof(out->name));
		col_text(s, 5, out->s3_bucket, sizeof(out->s3_bucket));
		col_text(s, 6, out->s3_key, sizeof(out->s3_key));
		col_text(s, 7, out->s3_thumbnail_key,
			 sizeof(out->s3_thumbnail_key));
		col_text(s, 8, out->sha256, sizeof(out->sha256));
		out->file_size = sqlite3_column_int64(s, 9);
		col_text(s, 10, out->deleted_by, sizeof(out->deleted_by));
		col_text(s, 11, out->deleted_at, sizeof(out->deleted_at));
		out->objects_kept = sqlite3_column_int(s, 12) != 0;
		ret = 0;
	} else if (rc != SQLITE_DONE) {
		ret = -EIO;
	}
	sqlite3_reset(s);
	return ret;
}

int db_tombstone_get(struct db *db, const char *id, struct db_tombstone *out)
{
	pthread_mutex_lock(&db->lock);
	int ret = tomb_get_locked(db, id, out);
	unlock(db);
	return ret;
}

/* The tombstone of a PostgreSQL delete job has reached PostgreSQL: now the
 * store's objects may go, unless kept or the name is in use again (its
 * new content is under the same key). */
static int tombstone_synced(struct db *db, const struct db_job *job)
{
	struct db_tombstone t;
	struct db_image img;
	if (!job->image_id[0])
		return 0;
	int ret = tomb_get_locked(db, job->image_id, &t);

	if (ret)
		return ret == -ENOENT ? 0 : ret;
	if (t.objects_kept)
		return 0;
	ret = get_locked(db, t.patient_id, t.batch_date, t.name, &img);
	if (ret != -ENOENT)
		return ret; /* in use again (0), or a failure */
	return queue_delete(db, t.image_id, 0, t.s3_key, t.s3_thumbnail_key);
}

int db_writing_first(struct db *db, struct db_image *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&db->lock);
	sqlite3_stmt *s = use(db, S_WRITING_FIRST);
	int rc = sqlite3_step(s), ret = -ENOENT;
	if (rc == SQLITE_ROW) {
		col_text(s, 0, out->patient_id, sizeof(out->patient_id));
		col_text(s, 1, out->batch_date, sizeof(out->batch_date));
		col_text(s, 2, out->name, sizeof(out->name));
		ret = 0;
	} else if (rc != SQLITE_DONE) {
		ret = -EIO;
	}
	sqlite3_reset(s);
	unlock(db);
	return ret;
}

int db_writing_abort(struct db *db, const char *patient, const char *date,
		     const char *name, bool *kept)
{
	struct db_image img;
	*kept = false;
	pthread_mutex_lock(&db->lock);
	int ret = begin(db);
	if (ret)
		goto out_unlock;
	ret = get_locked(db, patient, date, name, &img);
	if (ret == 0 && !strcmp(img.state, "uploaded") && img.s3_key[0]) {
		*kept = true; /* the store holds the last whole content */
		ret = path_stmt(db, S_WRITING_DEL, patient, date, name);
	} else if (ret == 0 || ret == -ENOENT) {
		ret = removed_locked(db, patient, date, name, NULL);
		ret = ret == -ENOENT ? 0 : ret;
	}
	ret = finish(db, ret);
out_unlock:
	unlock(db);
	return ret;
}

int db_image_get(struct db *db, const char *patient, const char *date,
		 const char *name, struct db_image *out)
{
	pthread_mutex_lock(&db->lock);
	int ret = get_locked(db, patient, date, name, out);
	unlock(db);
	return ret;
}

int db_image_get_by_id(struct db *db, const char *id, struct db_image *out)
{
	pthread_mutex_lock(&db->lock);
	sqlite3_stmt *s = use(db, S_IMG_GET_ID);
	bind_text(s, 1, id);
	int ret = step_image(s, out);
	unlock(db);
	return ret;
}

int db_image_get_by_thumb(struct db *db, const char *patient, const char *date,
			  const char *thumb_name, struct db_image *out)
{
	if (!*thumb_name)
		return -ENOENT;
	pthread_mutex_lock(&db->lock);
	sqlite3_stmt *s = use(db, S_IMG_GET_THUMB);
	bind_text(s, 1, patient);
	bind_text(s, 2, date);
	bind_text(s, 3, thumb_name);
	int ret = step_image(s, out);
	unlock(db);
	return ret;
}

int db_reconcile(struct db *db, const char *patient, const char *date,
		 const char *name, int64_t size, const char *uploaded_by)
{
	struct db_image img;
	pthread_mutex_lock(&db->lock);
	int ret = begin(db);
	if (ret)
		goto out_unlock;
	ret = get_locked(db, patient, date, name, &img);
	bool stale = ret == -ENOENT ||
		     (ret == 0 && (img.file_size != size ||
				   strcmp(img.state, "uploaded") != 0));
	if (ret == 0 && stale && img.file_size == size) {
		/* spooled: is a job still on its way? */
		sqlite3_stmt *s = use(db, S_JOB_HAS);
		bind_text(s, 1, img.id);
		int rc = sqlite3_step(s);
		sqlite3_reset(s);
		if (rc == SQLITE_ROW)
			stale = false;
	}
	ret = ret == -ENOENT ? 0 : ret;
	if (ret == 0 && stale)
		ret =
		    written_locked(db, patient, date, name, size, uploaded_by);
	ret = finish(db, ret);
	if (ret == 0 && stale)
		ret = 1;
out_unlock:
	unlock(db);
	return ret;
}

/* Claim the job the pick statement s returns, if it is due. */
static int claim_locked(struct db *db, sqlite3_stmt *s, struct db_job *job)
{
	int rc = sqlite3_step(s), ret = -ENOENT;
	if (rc == SQLITE_ROW) {
		memset(job, 0, sizeof(*job));
		job->id = sqlite3_column_int64(s, 0);
		job->kind = (enum db_job_kind)sqlite3_column_int(s, 1);
		col_text(s, 2, job->image_id, sizeof(job->image_id));
		job->gen = sqlite3_column_int64(s, 3);
		col_text(s, 4, job->key, sizeof(job->key));
		col_text(s, 5, job->key2, sizeof(job->key2));
		job->attempts = sqlite3_column_int(s, 6);
		if (sqlite3_column_count(s) > 8) {
			col_text(s, 7, job->name, sizeof(job->name));
			if (sqlite3_column_int64(s, 8) >
			    (sqlite3_int64)time(NULL))
				ret = -EAGAIN;
			else
				ret = 0;
		} else {
			ret = 0;
		}
	} else if (rc != SQLITE_DONE) {
		ret = -EIO;
	}
	sqlite3_reset(s);
	if (ret == 0) {
		s = use(db, S_JOB_CLAIM_MARK);
		sqlite3_bind_int64(s, 1, job->id);
		ret = run(s);
	}
	return ret;
}

int db_job_claim(struct db *db, struct db_job *job)
{
	pthread_mutex_lock(&db->lock);
	sqlite3_stmt *s = use(db, S_JOB_CLAIM_PICK);
	sqlite3_bind_int64(s, 1, (sqlite3_int64)time(NULL));
	int ret = claim_locked(db, s, job);
	unlock(db);
	return ret;
}

int db_sync_claim(struct db *db, struct db_job *jobs, int max)
{
	int n = 0, ret = 0;
	pthread_mutex_lock(&db->lock);
	if (begin(db) == 0) {
		while (n < max) {
			sqlite3_stmt *s = use(db, S_JOB_SYNC_PICK);
			sqlite3_bind_int64(s, 1, n ? jobs[n - 1].id : 0);
			ret = claim_locked(db, s, &jobs[n]);
			if (ret)
				break;
			n++;
		}
		if (finish(db, ret == -EIO ? -EIO : 0))
			n = 0, ret = -EIO;
	} else {
		ret = -EIO;
	}
	unlock(db);
	if (n > 0)
		return n;
	return ret == -EAGAIN || ret == -EIO ? ret : -ENOENT;
}

int db_sync_done(struct db *db, const struct db_job *jobs, int n)
{
	pthread_mutex_lock(&db->lock);
	int ret = begin(db);
	if (ret == 0) {
		int r = 0;
		for (int i = 0; r == 0 && i < n; i++) {
			if (jobs[i].kind == DB_JOB_PG_UPSERT) {
				sqlite3_stmt *s = use(db, S_IN_PG);
				bind_text(s, 1, jobs[i].image_id);
				r = run(s);
			} else if (jobs[i].kind == DB_JOB_PG_DELETE) {
				r = tombstone_synced(db, &jobs[i]);
			}
			if (r == 0)
				r = job_stmt_locked(db, S_JOB_DELETE,
						    jobs[i].id);
		}
		ret = finish(db, r); /* commits, or rolls back on failure */
	}
	unlock(db);
	return ret;
}

int db_job_release(struct db *db, int64_t job_id)
{
	pthread_mutex_lock(&db->lock);
	int ret = job_stmt_locked(db, S_JOB_RELEASE, job_id);
	unlock(db);
	return ret;
}

void db_set_pg_sync(struct db *db, bool on)
{
	pthread_mutex_lock(&db->lock);
	db->pg_sync = on;
	unlock(db);
}

void db_set_keep_objects(struct db *db, bool on)
{
	pthread_mutex_lock(&db->lock);
	db->keep_objects = on;
	unlock(db);
}

/* The row went away while its ingest ran: unless the name is in use again,
 * the objects just stored belong to nobody, so queue their removal. */
static int orphan_locked(struct db *db, const struct db_job *job,
			 const struct db_image *img)
{
	struct db_image other;
	sqlite3_stmt *s = use(db, S_IMG_GET_ID);
	bind_text(s, 1, job->image_id);
	int ret = step_image(s, &other);
	if (ret != -ENOENT)
		return ret == 0 ? 0 : ret; /* still there, moved on */
	ret =
	    get_locked(db, img->patient_id, img->batch_date, img->name, &other);
	if (ret != -ENOENT)
		return ret;
	s = use(db, S_JOB_INSERT);
	sqlite3_bind_int(s, 1, DB_JOB_DELETE);
	bind_text(s, 2, job->image_id);
	sqlite3_bind_int64(s, 3, job->gen);
	bind_text(s, 4, img->s3_key);
	bind_text(s, 5, img->s3_thumbnail_key);
	return run(s);
}

int db_ingest_done(struct db *db, const struct db_job *job,
		   const struct db_image *img, bool *current)
{
	char now[32];
	now_iso(now);
	*current = false;
	pthread_mutex_lock(&db->lock);
	int ret = begin(db);
	if (ret)
		goto out_unlock;
	sqlite3_stmt *s = use(db, S_IMG_DONE);
	bind_text(s, 1, job->image_id);
	sqlite3_bind_int64(s, 2, job->gen);
	bind_text(s, 3, img->s3_key);
	bind_text(s, 4, img->s3_thumbnail_key);
	bind_text(s, 5, img->s3_bucket);
	bind_text(s, 6, img->thumbnail_name);
	sqlite3_bind_int64(s, 7, img->thumbnail_size);
	bind_text(s, 8, img->mime_type);
	sqlite3_bind_int(s, 9, img->width);
	sqlite3_bind_int(s, 10, img->height);
	bind_text(s, 11, img->sha256);
	bind_text(s, 12, img->error);
	sqlite3_bind_int64(s, 13, img->file_size);
	bind_text(s, 14, now);
	bind_text(s, 15, img->category);
	bind_text(s, 16, img->filemaker_id);
	ret = run(s);
	if (ret == 0)
		*current = sqlite3_changes(db->conn) > 0;
	if (ret == 0 && !*current)
		ret = orphan_locked(db, job, img);
	if (ret == 0 && *current)
		ret = queue_sync(db, DB_JOB_PG_UPSERT, job->image_id,
				 img->patient_id, img->batch_date, img->name);
	if (ret == 0) {
		s = use(db, S_JOB_DELETE);
		sqlite3_bind_int64(s, 1, job->id);
		ret = run(s);
	}
	ret = finish(db, ret);
out_unlock:
	unlock(db);
	return ret;
}

int db_job_done(struct db *db, int64_t job_id)
{
	pthread_mutex_lock(&db->lock);
	int ret = job_stmt_locked(db, S_JOB_DELETE, job_id);
	unlock(db);
	return ret;
}

int db_job_retry(struct db *db, int64_t job_id, int delay_s, const char *error)
{
	pthread_mutex_lock(&db->lock);
	sqlite3_stmt *s = use(db, S_JOB_RETRY);
	sqlite3_bind_int64(s, 1, job_id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)time(NULL) + delay_s);
	bind_text(s, 3, error);
	int ret = run(s);
	unlock(db);
	return ret;
}

/* Bind every IMG_COLS column of img as ?1 .. ?20. */
static void bind_image(sqlite3_stmt *s, const struct db_image *img)
{
	bind_text(s, 1, img->id);
	bind_text(s, 2, img->patient_id);
	bind_text(s, 3, img->batch_date);
	bind_text(s, 4, img->name);
	bind_text(s, 5, img->state);
	sqlite3_bind_int64(s, 6, img->gen);
	sqlite3_bind_int64(s, 7, img->file_size);
	bind_text(s, 8, img->s3_key);
	bind_text(s, 9, img->s3_thumbnail_key);
	bind_text(s, 10, img->s3_bucket);
	bind_text(s, 11, img->thumbnail_name);
	sqlite3_bind_int64(s, 12, img->thumbnail_size);
	bind_text(s, 13, img->mime_type);
	sqlite3_bind_int(s, 14, img->width);
	sqlite3_bind_int(s, 15, img->height);
	bind_text(s, 16, img->sha256);
	bind_text(s, 17, img->error);
	bind_text(s, 18, img->uploaded_by);
	bind_text(s, 19, img->created_at);
	bind_text(s, 20, img->updated_at);
	bind_text(s, 21, img->category);
	bind_text(s, 22, img->filemaker_id);
}

static int remote_locked(struct db *db, const struct db_image *r,
			 struct db_image *old)
{
	sqlite3_stmt *s;
	int ret = get_locked(db, r->patient_id, r->batch_date, r->name, old);
	if (ret == -ENOENT) {
		s = use(db, S_JOB_PG_DELETE_OF);
		bind_text(s, 1, r->patient_id);
		bind_text(s, 2, r->batch_date);
		bind_text(s, 3, r->name);
		int rc = sqlite3_step(s);
		sqlite3_reset(s);
		if (rc == SQLITE_ROW) /* removed here, and PostgreSQL has */
			return DB_REMOTE_KEPT; /* not heard yet */
		if (rc != SQLITE_DONE)
			return -EIO;
		s = use(db, S_IMG_INSERT_REMOTE);
		bind_image(s, r);
		ret = run(s);
		return ret ? ret : DB_REMOTE_NEW;
	}
	if (ret)
		return ret;
	s = use(db, S_IMG_SEEN);
	bind_text(s, 1, old->id);
	ret = run(s);
	if (ret)
		return ret;
	if (strcmp(old->state, "uploaded") != 0 ||
	    strcmp(r->updated_at, old->updated_at) <= 0)
		return DB_REMOTE_KEPT; /* a local write is newer, or pending */
	struct db_image u = *r;
	snprintf(u.id, sizeof(u.id), "%s", old->id);
	s = use(db, S_IMG_UPDATE_REMOTE);
	bind_image(s, &u);
	ret = run(s);
	if (ret)
		return ret;
	/* the same content with other metadata keeps the local copies */
	bool same = !strcmp(r->sha256, old->sha256) &&
		    !strcmp(r->s3_key, old->s3_key) &&
		    !strcmp(r->s3_thumbnail_key, old->s3_thumbnail_key);
	return same ? DB_REMOTE_KEPT : DB_REMOTE_REPLACED;
}

int db_remote_apply(struct db *db, const struct db_image *r,
		    struct db_image *old)
{
	pthread_mutex_lock(&db->lock);
	int ret = begin(db);
	if (ret == 0) {
		int res = remote_locked(db, r, old);
		ret = finish(db, res < 0 ? res : 0);
		if (ret == 0)
			ret = res;
	}
	unlock(db);
	return ret;
}

int db_remote_scan_begin(struct db *db)
{
	pthread_mutex_lock(&db->lock);
	int ret = run(use(db, S_SCAN_BEGIN));
	unlock(db);
	return ret;
}

int db_remote_scan_end(struct db *db,
		       void (*gone)(const struct db_image *img, void *arg),
		       void *arg)
{
	struct db_image img;
	int ret = 0, n = 0;
	pthread_mutex_lock(&db->lock);
	while (ret == 0 &&
	       (ret = step_image(use(db, S_SCAN_GONE), &img)) == 0) {
		sqlite3_stmt *s = use(db, S_IMG_DELETE);
		bind_text(s, 1, img.id);
		ret = run(s);
		if (ret == 0) {
			gone(&img, arg);
			n++;
		}
	}
	unlock(db);
	return ret == -ENOENT ? n : ret;
}

int db_counts(struct db *db, struct db_counts *out)
{
	int ret = 0;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&db->lock);
	sqlite3_stmt *s = use(db, S_COUNT_STATE);
	if (sqlite3_step(s) == SQLITE_ROW) {
		out->spooled = sqlite3_column_int64(s, 0);
		out->uploaded = sqlite3_column_int64(s, 1);
		out->thumb_errors = sqlite3_column_int64(s, 2);
	} else {
		ret = -EIO;
	}
	sqlite3_reset(s);
	s = use(db, S_COUNT_JOBS);
	if (sqlite3_step(s) == SQLITE_ROW) {
		out->jobs_ingest = sqlite3_column_int64(s, 0);
		out->jobs_delete = sqlite3_column_int64(s, 1);
		out->jobs_retrying = sqlite3_column_int64(s, 2);
		out->jobs_sync = sqlite3_column_int64(s, 3);
		out->jobs_backfill = sqlite3_column_int64(s, 4);
	} else {
		ret = -EIO;
	}
	sqlite3_reset(s);
	unlock(db);
	return ret;
}

int db_list_batch(struct db *db, const char *patient, const char *date,
		  int (*fn)(const char *name, const char *thumb, void *arg),
		  void *arg)
{
	int ret = 0, rc;
	pthread_mutex_lock(&db->lock);
	sqlite3_stmt *s = use(db, S_LIST_BATCH);
	bind_text(s, 1, patient);
	bind_text(s, 2, date);
	while (ret == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW)
		ret = fn((const char *)sqlite3_column_text(s, 0),
			 (const char *)sqlite3_column_text(s, 1), arg);
	if (ret == 0 && rc != SQLITE_DONE)
		ret = -EIO;
	sqlite3_reset(s);
	unlock(db);
	return ret;
}

int db_image_meta(struct db *db, const char *patient, const char *date,
		  const char *name, const char *category,
		  const char *filemaker_id)
{
	struct db_image img;
	char now[32];
	now_iso(now);
	pthread_mutex_lock(&db->lock);
	int ret = begin(db);
	if (ret)
		goto out_unlock;
	ret = get_locked(db, patient, date, name, &img);
	if (ret == 0) {
		sqlite3_stmt *s = use(db, S_IMG_META);
		bind_text(s, 1, img.id);
		bind_text(s, 2, category);
		bind_text(s, 3, filemaker_id);
		bind_text(s, 4, now);
		ret = run(s);
	}
	/* an upload on its way carries them anyway */
	if (ret == 0 && !strcmp(img.state, "uploaded"))
		ret = queue_sync(db, DB_JOB_PG_UPSERT, img.id, patient, date,
				 name);
	ret = finish(db, ret);
out_unlock:
	unlock(db);
	return ret;
}

/* ---- the cache ---- */

int db_image_evict(struct db *db, const char *patient, const char *date,
		   const char *name)
{
	pthread_mutex_lock(&db->lock);
	int ret = path_stmt(db, S_IMG_EVICT, patient, date, name);
	if (ret == 0 && sqlite3_changes(db->conn) == 0)
		ret = -EBUSY;
	unlock(db);
	return ret;
}

/* The first column (an integer) of the row statement which (bound to
 * the three strings) returns: its value, -ENOENT when there is no row. */
static int path_int(struct db *db, enum stmt which, const char *a,
		    const char *b, const char *c)
{
	pthread_mutex_lock(&db->lock);
	sqlite3_stmt *s = use(db, which);
	bind_text(s, 1, a);
	bind_text(s, 2, b);
	bind_text(s, 3, c);
	int rc = sqlite3_step(s);
	int ret = rc == SQLITE_ROW    ? sqlite3_column_int(s, 0)
		  : rc == SQLITE_DONE ? -ENOENT
				      : -EIO;
	sqlite3_reset(s);
	unlock(db);
	return ret;
}

int db_image_evicted(struct db *db, const char *patient, const char *date,
		     const char *name)
{
	int ret = path_int(db, S_IMG_EVICTED, patient, date, name);
	return ret > 0 ? 1 : ret;
}

int db_image_restored(struct db *db, const char *patient, const char *date,
		      const char *name)
{
	pthread_mutex_lock(&db->lock);
	int ret = path_stmt(db, S_IMG_RESTORED, patient, date, name);
	unlock(db);
	return ret;
}

int db_thumb_settled(struct db *db, const char *patient, const char *date,
		     const char *thumb_name)
{
	int ret = path_int(db, S_THUMB_SETTLED, patient, date, thumb_name);
	return ret == -ENOENT ? 0 : ret;
}

/* ---- rows without a thumbnail ---- */

int db_backfill_queue(struct db *db, const char *patient, const char *date)
{
	pthread_mutex_lock(&db->lock);
	sqlite3_stmt *s = use(db, S_BACKFILL_QUEUE);
	if (patient)
		bind_text(s, 1, patient);
	if (date)
		bind_text(s, 2, date);
	int ret = run(s);
	if (ret == 0)
		ret = sqlite3_changes(db->conn);
	unlock(db);
	return ret;
}

int db_backfill_failed(struct db *db, const struct db_job *job,
		       const char *error)
{
	pthread_mutex_lock(&db->lock);
	int ret = begin(db);
	if (ret == 0) {
		sqlite3_stmt *s = use(db, S_BACKFILL_FAILED);
		bind_text(s, 1, job->image_id);
		sqlite3_bind_int64(s, 2, job->gen);
		bind_text(s, 3, error);
		ret = run(s);
		if (ret == 0)
			ret = job_stmt_locked(db, S_JOB_DELETE, job->id);
		ret = finish(db, ret);
	}
	unlock(db);
	return ret;
}
