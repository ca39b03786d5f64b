/*
 * internal.h - what the files of db/ share and nothing else sees: the
 * connection, its statement cache, the transaction helper, and the
 * tables that bind a row's columns by name.
 *
 * Locking: struct db's lock guards the connection and every statement.
 * A function named *_locked expects the caller to hold it; db_tx_begin()
 * takes it (with a write transaction), db_tx_end() commits or rolls back
 * and gives it up. The checkpointer's own connection (ckpt) is guarded by
 * ckpt_lock, which is taken before lock, never after.
 */
#ifndef DB_INTERNAL_H
#define DB_INTERNAL_H

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "db/catalog.h"
#include "db/conn.h"
#include "db/evict.h"
#include "db/move.h"
#include "db/queue.h"
#include "db/remote.h"

/*
 * Every statement the catalog prepares is defined with DB_SQL (or
 * DB_SQL_WHOLE), which also lists it where the linker gathers them all
 * (the section db_sql, read through db_sql_first and db_sql_end): the
 * statement cache is as large as that list, and tests/unit/test_plans.c
 * checks each one's query plan against a catalog with rows. A statement
 * that reads a whole table on purpose (the status file's queue counts, a
 * backfill) says why in DB_SQL_WHOLE; every other one must find its rows
 * by an index, so that its cost does not grow with the archive.
 */
struct db_sql {
	const char *name;
	const char *text;
	const char *whole; /* NULL, or why it reads a whole table */
};
#define DB_SQL_ENTRY(n, why)                                                   \
	static const struct db_sql n##_sql = {#n, n, why};                     \
	static const struct db_sql *const n##_entry __attribute__((            \
	    used, section("db_sql"), aligned(sizeof(void *)))) = &n##_sql
#define DB_SQL(n, text)                                                        \
	static const char n[] = text;                                          \
	DB_SQL_ENTRY(n, NULL)
#define DB_SQL_WHOLE(n, why, text)                                             \
	static const char n[] = text;                                          \
	DB_SQL_ENTRY(n, why)
/* the linker's bounds of the list (GNU ld and lld define them) */
extern const struct db_sql *const __start_db_sql[];
extern const struct db_sql *const __stop_db_sql[];
#define db_sql_first __start_db_sql
#define db_sql_end   __stop_db_sql

struct db {
	pthread_mutex_t lock; /* guards conn, stmt[], pg_sync, keep_objects */
	_Atomic unsigned long holder; /* the thread holding lock, or 0 */
	bool pg_sync;
	bool keep_objects; /* [store] delete = keep */
	sqlite3 *conn;
	struct db_stmt {
		const char *sql;
		sqlite3_stmt *st;
	} * stmt;   /* prepared on first use and kept, found by the */
	int n_stmt; /* address of their text; at most one per DB_SQL */
	_Atomic int wal_pages;	   /* in the log after the last commit */
	pthread_mutex_t ckpt_lock; /* guards ckpt; taken before lock */
	sqlite3 *ckpt;		   /* the checkpointer's connection */
	pthread_mutex_t due_lock;  /* with due: the log's size reached */
	pthread_cond_t due;	   /* DB_WAL_PAGES (db_checkpoint_wait) */
	pthread_mutex_t sync_lock; /* guards wal_fd; taken alone */
	int wal_fd;		   /* the log, for db_sync; -1 until then */
	char path[4096];
};

/*
 * The columns of images (and of tombstones and jobs), each named once:
 * X(column, type) where the column is also the struct field's name. The
 * select list, the parameter list and the readers and binders below are
 * made from these, so a new column is one line here (and one migration).
 */
#define DB_IMAGE_COLUMNS(X)                                                    \
	X(id, text)                                                            \
	X(patient_id, text)                                                    \
	X(batch_date, text)                                                    \
	X(name, text)                                                          \
	X(state, text)                                                         \
	X(gen, int64)                                                          \
	X(file_size, int64)                                                    \
	X(s3_key, text)                                                        \
	X(s3_thumbnail_key, text)                                              \
	X(s3_bucket, text)                                                     \
	X(thumbnail_name, text)                                                \
	X(thumbnail_size, int64)                                               \
	X(mime_type, text)                                                     \
	X(width, int)                                                          \
	X(height, int)                                                         \
	X(sha256, text)                                                        \
	X(error, text)                                                         \
	X(uploaded_by, text)                                                   \
	X(created_at, text)                                                    \
	X(updated_at, text)                                                    \
	X(category, text)                                                      \
	X(filemaker_id, text)                                                  \
	X(thumb_claim, text)

#define DB_TOMB_COLUMNS(X)                                                     \
	X(id, text)                                                            \
	X(image_id, text)                                                      \
	X(patient_id, text)                                                    \
	X(batch_date, text)                                                    \
	X(name, text)                                                          \
	X(s3_bucket, text)                                                     \
	X(s3_key, text)                                                        \
	X(s3_thumbnail_key, text)                                              \
	X(sha256, text)                                                        \
	X(file_size, int64)                                                    \
	X(deleted_by, text)                                                    \
	X(deleted_at, text)                                                    \
	X(objects_kept, int)                                                   \
	X(stamp, text)

#define DB_JOB_COLUMNS(X)                                                      \
	X(id, int64)                                                           \
	X(kind, int)                                                           \
	X(image_id, text)                                                      \
	X(gen, int64)                                                          \
	X(key, text)                                                           \
	X(key2, text)                                                          \
	X(name, text)                                                          \
	X(attempts, int)                                                       \
	X(wrong, int)                                                          \
	X(not_before, int64)                                                   \
	X(stamp, text)

/* ", id, patient_id, ..." and ", :id, :patient_id, ...": each list starts
 * with a comma, so a statement writes "SELECT rowid" DB_IMAGE_SELECT, or
 * "INSERT INTO t (a" DB_..._NAMES ") VALUES (:a" DB_..._PARAMS ")". */
#define DB_COL_NAME(n, t)  ", " #n
#define DB_COL_PARAM(n, t) ", :" #n
#define DB_IMAGE_SELECT	   DB_IMAGE_COLUMNS(DB_COL_NAME)
#define DB_IMAGE_PARAMS	   DB_IMAGE_COLUMNS(DB_COL_PARAM)
#define DB_TOMB_SELECT	   DB_TOMB_COLUMNS(DB_COL_NAME)
#define DB_TOMB_PARAMS	   DB_TOMB_COLUMNS(DB_COL_PARAM)
#define DB_JOB_SELECT	   DB_JOB_COLUMNS(DB_COL_NAME)

/* The statement for sql (a string with static storage: it is found by its
 * address), reset and unbound; NULL if it does not prepare, which every
 * sqlite3_* call below takes as a failure. Under db->lock. */
sqlite3_stmt *db_use(struct db *db, const char *sql);

/* The lock rule, checked where it matters (every statement's use, every
 * *_locked function): the calling thread holds db->lock. An assert, so
 * every build checks it, and the suite runs every path that takes it. */
#define DB_ASSERT_LOCKED(db)                                                   \
	assert(atomic_load(&(db)->holder) == (unsigned long)pthread_self())

/* Take and leave the connection. Leaving resets any statement left on a
 * row: it would hold a read transaction open, and no checkpoint could
 * move the log past it. */
void db_lock(struct db *db);
void db_unlock(struct db *db);

/* db_lock() and BEGIN IMMEDIATE: 0 with the lock held, or -errno with it
 * given up. db_tx_end(): COMMIT if ret is 0, else ROLLBACK; then
 * db_unlock(). Returns ret, or the commit's failure. */
int db_tx_begin(struct db *db);
int db_tx_end(struct db *db, int ret);

/* Step a statement that returns no rows (or whose rows are not wanted):
 * 0, -ENOSPC (the disk is full) or -EIO. */
int db_run(sqlite3_stmt *s);

/* Bind a value to the named parameter (":name"), if the statement has it. */
void db_bind_text(sqlite3_stmt *s, const char *param, const char *v);
void db_bind_int64(sqlite3_stmt *s, const char *param, int64_t v);

/* Bind every column of the struct whose parameter the statement has. */
void db_bind_image(sqlite3_stmt *s, const struct db_image *img);
void db_bind_tomb(sqlite3_stmt *s, const struct db_tombstone *t);

/* Step a "SELECT rowid" DB_*_SELECT statement and reset it: 0 with out
 * filled, -ENOENT when there is no row, -EIO. */
int db_step_image(sqlite3_stmt *s, struct db_image *out);
/* The image columns of the row s is on, from column first on. */
void db_read_image(sqlite3_stmt *s, int first, struct db_image *out);
int db_step_tomb(sqlite3_stmt *s, struct db_tombstone *out);
int db_step_job(sqlite3_stmt *s, struct db_job *out);

/* Step s and reset it: the integer in its first column, -ENOENT when it
 * returns no row, -EIO. */
int64_t db_int(sqlite3_stmt *s);

/* Statements of several files. */
/* Insert img as a new row; in_pg: PostgreSQL has it already. */
int db_insert_image_locked(struct db *db, const struct db_image *img,
			   bool in_pg);
/* The image (patient, date, name) into out: 0, -ENOENT or -EIO. */
int db_get_locked(struct db *db, const char *patient, const char *date,
		  const char *name, struct db_image *out);
int db_get_by_id_locked(struct db *db, const char *id, struct db_image *out);
/* db_use(sql) with :patient_id, :batch_date and :name bound. */
sqlite3_stmt *db_use_path(struct db *db, const char *sql, const char *patient,
			  const char *date, const char *name);
/* Run sql with :patient_id, :batch_date and :name bound. */
int db_path_stmt(struct db *db, const char *sql, const char *patient,
		 const char *date, const char *name);
/* Queue a DB_JOB_DELETE of key and key2 for image_id (at gen), meaning
 * the versions stamped up to stamp ("" when it cannot say: then a key
 * another mount claimed is kept, db/pgkey.h). When key is the key of an
 * image at (patient, date, name) (NULL: a thumbnail's only), the job is
 * named so: a new image of that name, whose upload would go under the
 * same key, waits until it is done. */
int db_queue_delete(struct db *db, const char *image_id, int64_t gen,
		    const char *key, const char *key2, const char *stamp,
		    const char *patient, const char *date, const char *name);
/* Queue an ingest of image id at gen: its waiting job if it has one. */
int db_queue_ingest_locked(struct db *db, const char *id, int64_t gen);
/* With sync on, queue a PostgreSQL job of kind for the image. */
int db_queue_sync(struct db *db, enum db_job_kind kind, const char *id,
		  const char *patient, const char *date, const char *name);
/* The image (patient, date, name) leaves: see catalog.c. */
int db_removed_locked(struct db *db, const char *patient, const char *date,
		      const char *name, const char *who);
int db_tomb_get_locked(struct db *db, const char *id, struct db_tombstone *out);
/* Record tombstone t. */
int db_tomb_insert_locked(struct db *db, const struct db_tombstone *t);

/* Create or bring the schema forward (schema.c): 0, or -errno with err. */
int db_migrate(sqlite3 *conn, char *err, size_t errlen);

#endif
