/* conn.c - the catalog's connection: open, statements, transactions,
 * checkpoints, and reading and binding rows by column name. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db/internal.h"

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

void db_now(char out[32])
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%06ldZ", ts.tv_nsec / 1000);
}

/* ---- statements and transactions ---- */

sqlite3_stmt *db_use(struct db *db, const char *sql)
{
	sqlite3_stmt *s = NULL;
	DB_ASSERT_LOCKED(db);
	for (int i = 0; i < db->n_stmt; i++) {
		if (db->stmt[i].sql == sql) {
			s = db->stmt[i].st;
			sqlite3_reset(s);
			sqlite3_clear_bindings(s);
			return s;
		}
	}
	if (db->n_stmt == db_sql_end - db_sql_first ||
	    sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, &s,
			       NULL) != SQLITE_OK)
		return NULL;
	db->stmt[db->n_stmt].sql = sql;
	db->stmt[db->n_stmt].st = s;
	db->n_stmt++;
	return s;
}

void db_lock(struct db *db)
{
	pthread_mutex_lock(&db->lock);
	atomic_store(&db->holder, (unsigned long)pthread_self());
}

void db_unlock(struct db *db)
{
	sqlite3_stmt *s = NULL;
	while ((s = sqlite3_next_stmt(db->conn, s)))
		if (sqlite3_stmt_busy(s))
			sqlite3_reset(s);
	atomic_store(&db->holder, 0UL);
	pthread_mutex_unlock(&db->lock);
}

int db_run(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_FULL ? -ENOSPC : -EIO;
}

int64_t db_int(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);
	int64_t v = rc == SQLITE_ROW	? sqlite3_column_int64(s, 0)
		    : rc == SQLITE_DONE ? -ENOENT
					: -EIO;
	sqlite3_reset(s);
	return v;
}

DB_SQL(SQL_BEGIN, "BEGIN IMMEDIATE");
DB_SQL(SQL_COMMIT, "COMMIT");
DB_SQL(SQL_ROLLBACK, "ROLLBACK");

int db_tx_begin(struct db *db)
{
	db_lock(db);
	int ret = db_run(db_use(db, SQL_BEGIN));
	if (ret)
		db_unlock(db);
	return ret;
}

int db_tx_end(struct db *db, int ret)
{
	if (ret != 0 || (ret = db_run(db_use(db, SQL_COMMIT))) != 0)
		db_run(db_use(db, SQL_ROLLBACK));
	db_unlock(db);
	return ret;
}

/* ---- columns by name ---- */

void db_bind_text(sqlite3_stmt *s, const char *param, const char *v)
{
	int i = sqlite3_bind_parameter_index(s, param);
	if (i)
		sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_TRANSIENT);
}

void db_bind_int64(sqlite3_stmt *s, const char *param, int64_t v)
{
	int i = sqlite3_bind_parameter_index(s, param);
	if (i)
		sqlite3_bind_int64(s, i, v);
}

#define BIND_text(n)  db_bind_text(s, ":" #n, row->n);
#define BIND_int64(n) db_bind_int64(s, ":" #n, row->n);
#define BIND_int(n)   db_bind_int64(s, ":" #n, row->n);
#define BIND(n, t)    BIND_##t(n)

void db_bind_image(sqlite3_stmt *s, const struct db_image *row)
{
	DB_IMAGE_COLUMNS(BIND)
}

void db_bind_tomb(sqlite3_stmt *s, const struct db_tombstone *row)
{
	DB_TOMB_COLUMNS(BIND)
}

static void col_text(sqlite3_stmt *s, int i, char *out, size_t n)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	snprintf(out, n, "%s", t ? (const char *)t : "");
}

/* Column 0 is the rowid; the struct's columns follow in their order. */
#define READ_text(n)  col_text(s, i++, row->n, sizeof(row->n));
#define READ_int64(n) row->n = sqlite3_column_int64(s, i++);
#define READ_int(n)   row->n = sqlite3_column_int(s, i++);
#define READ(n, t)    READ_##t(n)

/* Step s; on a row, read it with the reader of its struct. */
#define STEP_ROW(s, row, COLUMNS, FIRST)                                       \
	do {                                                                   \
		int rc_ = sqlite3_step(s), i = 1;                              \
		ret = rc_ == SQLITE_DONE ? -ENOENT : -EIO;                     \
		if (rc_ == SQLITE_ROW) {                                       \
			memset(row, 0, sizeof(*row));                          \
			FIRST;                                                 \
			COLUMNS(READ)                                          \
			ret = 0;                                               \
		}                                                              \
		(void)i;                                                       \
		sqlite3_reset(s);                                              \
	} while (0)

int db_step_image(sqlite3_stmt *s, struct db_image *row)
{
	int ret;
	STEP_ROW(s, row, DB_IMAGE_COLUMNS,
		 row->rowid = sqlite3_column_int64(s, 0));
	return ret;
}

void db_read_image(sqlite3_stmt *s, int first, struct db_image *row)
{
	int i = first;
	memset(row, 0, sizeof(*row));
	DB_IMAGE_COLUMNS(READ)
}

int db_step_tomb(sqlite3_stmt *s, struct db_tombstone *row)
{
	int ret;
	STEP_ROW(s, row, DB_TOMB_COLUMNS, (void)0);
	return ret;
}

int db_step_job(sqlite3_stmt *s, struct db_job *row)
{
	int ret;
	STEP_ROW(s, row, DB_JOB_COLUMNS, (void)0);
	return ret;
}

/* ---- open, close, settings ---- */

void db_free(struct db *db)
{
	if (!db)
		return;
	for (int i = 0; i < db->n_stmt; i++)
		sqlite3_finalize(db->stmt[i].st);
	free(db->stmt);
	sqlite3_close(db->ckpt);
	sqlite3_close(db->conn);
	if (db->wal_fd >= 0)
		close(db->wal_fd);
	pthread_mutex_destroy(&db->sync_lock);
	pthread_mutex_destroy(&db->due_lock);
	pthread_cond_destroy(&db->due);
	pthread_mutex_destroy(&db->ckpt_lock);
	pthread_mutex_destroy(&db->lock);
	free(db);
}

static int wal_grown(void *arg, sqlite3 *conn, const char *name, int pages)
{
	struct db *db = arg;
	(void)conn;
	(void)name;
	db->wal_pages = pages;
	if (pages >= DB_WAL_PAGES) { /* the checkpointer's turn */
		pthread_mutex_lock(&db->due_lock);
		pthread_cond_signal(&db->due);
		pthread_mutex_unlock(&db->due_lock);
	}
	return SQLITE_OK;
}

/* The connection's settings, as one statement's text, or its failure. */
static int exec(struct db *db, const char *sql, const char *what, char *err,
		size_t errlen)
{
	char *msg = NULL;
	if (sqlite3_exec(db->conn, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	/* the extended code tells which I/O failed (SQLITE_IOERR_*) */
	snprintf(err, errlen, "%s '%s': %s (SQLite code %d)", what, db->path,
		 msg ? msg : "?", sqlite3_extended_errcode(db->conn));
	sqlite3_free(msg);
	return -EIO;
}

/* Open; own: this process runs the jobs (see catalog.h). */
static struct db *open_catalog(const char *dir, bool own, char *err,
			       size_t errlen)
{
	struct db *db = calloc(1, sizeof(*db));
	if (db && !(db->stmt = calloc((size_t)(db_sql_end - db_sql_first),
				      sizeof(*db->stmt)))) {
		free(db);
		db = NULL;
	}
	if (!db) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&db->lock, NULL);
	pthread_mutex_init(&db->ckpt_lock, NULL);
	pthread_mutex_init(&db->sync_lock, NULL);
	pthread_mutex_init(&db->due_lock, NULL);
	pthread_cond_init(&db->due, NULL);
	db->wal_fd = -1;
	snprintf(db->path, sizeof(db->path), "%s/catalog.db", dir);
	if (sqlite3_open_v2(db->path, &db->conn,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open catalog '%s': %s", db->path,
			 db->conn ? sqlite3_errmsg(db->conn) : "out of memory");
		goto out_fail;
	}
	sqlite3_busy_timeout(db->conn, 5000);
	/* The log and its index stay when the last connection closes, so a
	 * start (which opens the catalog, closes it and opens it again) never
	 * unlinks them and makes them anew; after a power cut LazyFS failed
	 * that new index's ftruncate (SQLITE_IOERR_SHMOPEN, ENOENT), and a
	 * real disk has no need of the churn either. */
	int persist = 1;
	sqlite3_file_control(db->conn, "main", SQLITE_FCNTL_PERSIST_WAL,
			     &persist);
	chmod(db->path, 0600); /* patient data: whatever the umask */
	if (exec(db,
		 "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
		 " PRAGMA foreign_keys = ON;"
		 /* 32 MiB of pages: a large catalog's indexes stay in
		  * memory, and the daemon's memory has this bound */
		 " PRAGMA cache_size = -32768",
		 "cannot use catalog", err, errlen) ||
	    db_migrate(db->conn, err, errlen))
		goto out_fail;
	/* replaces the automatic checkpoint: see db_checkpoint() */
	sqlite3_wal_hook(db->conn, wal_grown, db);
	/* claims live in memory: whoever held them is gone; and what had
	 * failed for good is tried again */
	if (own && exec(db, "UPDATE jobs SET claimed = 0, parked = 0",
			"cannot release the job claims of", err, errlen))
		goto out_fail;
	return db;
out_fail:
	db_free(db);
	return NULL;
}

struct db *db_open(const char *dir, char *err, size_t errlen)
{
	return open_catalog(dir, true, err, errlen);
}

struct db *db_open_beside(const char *dir, char *err, size_t errlen)
{
	return open_catalog(dir, false, err, errlen);
}

static void (*sqlite_logger)(int, const char *);

static void on_sqlite_log(void *arg, int code, const char *msg)
{
	(void)arg;
	/* the warnings and errors; not SQLITE_SCHEMA (SQLite retrying a
	 * statement by itself) nor the notices (a persistent log is
	 * "recovered" at every open) */
	if (sqlite_logger && (code & 0xff) != SQLITE_SCHEMA &&
	    (code & 0xff) != SQLITE_NOTICE)
		sqlite_logger(code, msg);
}

void db_set_logger(void (*fn)(int code, const char *msg))
{
	sqlite_logger = fn;
	sqlite3_config(SQLITE_CONFIG_LOG, on_sqlite_log, NULL);
}

/* The catalog's directory synced: the log's name is on the disk. */
static int sync_dir(const char *path)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int ret = fsync(fd) ? -errno : 0;
	close(fd);
	return ret;
}

int db_sync(struct db *db)
{
	char wal[4200];
	int ret = 0;
	pthread_mutex_lock(&db->sync_lock);
	if (db->wal_fd < 0) {
		snprintf(wal, sizeof(wal), "%s-wal", db->path);
		db->wal_fd = open(wal, O_RDONLY | O_CLOEXEC);
		if (db->wal_fd < 0)
			ret = -errno;
		else
			ret = sync_dir(db->path);
	}
	if (ret == 0 && fdatasync(db->wal_fd))
		ret = -errno;
	pthread_mutex_unlock(&db->sync_lock);
	return ret;
}

void db_set_pg_sync(struct db *db, bool on)
{
	db_lock(db);
	db->pg_sync = on;
	db_unlock(db);
}

void db_set_keep_objects(struct db *db, bool on)
{
	db_lock(db);
	db->keep_objects = on;
	db_unlock(db);
}

/* ---- the write-ahead log ---- */

/* One passive checkpoint on db->ckpt: 1 done, 0 busy, -EIO. */
static int passive(struct db *db, int *logged, int *copied)
{
	int rc = sqlite3_wal_checkpoint_v2(
	    db->ckpt, NULL, SQLITE_CHECKPOINT_PASSIVE, logged, copied);
	return rc == SQLITE_BUSY		? 0
	       : rc != SQLITE_OK || *logged < 0 ? -EIO
						: 1;
}

void db_checkpoint_wait(struct db *db, int ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += (long)ms * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&db->due_lock);
	if (db->wal_pages < DB_WAL_PAGES)
		pthread_cond_timedwait(&db->due, &db->due_lock, &until);
	pthread_mutex_unlock(&db->due_lock);
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
		db_lock(db);
		ret = passive(db, &logged, &copied);
		if (ret == 1 && copied == logged)
			db->wal_pages = 0;
		db_unlock(db);
	}
	pthread_mutex_unlock(&db->ckpt_lock);
	return ret;
}
