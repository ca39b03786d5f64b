/* gate.c - one owner per store key: whether a job may write a key now,
 * and whether a delete may remove one (see gate.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "db/gate.h"
#include "db/internal.h"

/* A delete of the key waits: queued, or waiting for its tombstone to
 * reach PostgreSQL (then it is queued). */
DB_SQL(SQL_DELETE_WAITS,
       "SELECT 1 FROM jobs WHERE kind = 2 AND (key = :key OR key2 = :key)"
       " UNION ALL SELECT 1 FROM jobs j JOIN tombstones t ON"
       " t.id = j.image_id WHERE j.kind = 4 AND (t.s3_key = :key OR"
       " t.s3_thumbnail_key = :key) LIMIT 1");
/* Another job is writing the key. */
DB_SQL(SQL_WRITING_KEY,
       "SELECT 1 FROM jobs WHERE id != :job AND claimed = 1 AND"
       " put_key = :key AND put_key != '' UNION ALL SELECT 1 FROM jobs"
       " WHERE id != :job AND claimed = 1 AND put_key2 = :key AND"
       " put_key2 != '' LIMIT 1");
/* Another image's row holds the key: its path, and whether a move of it
 * waits (it leaves the key then). */
DB_SQL(SQL_HOLDER,
       "SELECT patient_id || '/' || batch_date || '/' || name, EXISTS"
       " (SELECT 1 FROM jobs j WHERE j.image_id = images.id AND"
       " j.kind = 6) FROM images WHERE id != :image AND s3_key = :key"
       " UNION ALL SELECT patient_id || '/' || batch_date || '/' || name,"
       " EXISTS (SELECT 1 FROM jobs j WHERE j.image_id = images.id AND"
       " j.kind = 6) FROM images WHERE id != :image AND"
       " s3_thumbnail_key = :key LIMIT 1");
DB_SQL(SQL_HELD,
       "SELECT 1 FROM images WHERE s3_key = :key UNION ALL SELECT 1 FROM"
       " images WHERE s3_thumbnail_key = :key LIMIT 1");
DB_SQL(SQL_PUTS,
       "UPDATE jobs SET put_key = :key, put_key2 = :key2 WHERE id = :job");
DB_SQL(SQL_WAIT, "UPDATE jobs SET claimed = 0, put_key = '', put_key2 = '',"
		 " not_before = :not_before WHERE id = :job");

/* 1 when sql, with :key (and :job, :image) bound, returns a row; 0 when
 * not; -errno. */
static int any(struct db *db, const char *sql, const struct db_job *job,
	       const char *key)
{
	sqlite3_stmt *s = db_use(db, sql);
	db_bind_text(s, ":key", key);
	db_bind_int64(s, ":job", job->id);
	db_bind_text(s, ":image", job->image_id);
	int64_t v = db_int(s);
	return v == -ENOENT ? 0 : v < 0 ? (int)v : 1;
}

/* Whether job may write key: 0, -EBUSY, -EEXIST (who said), -errno. */
static int may_put(struct db *db, const struct db_job *job, const char *key,
		   char *who, size_t n)
{
	if (!key[0])
		return 0;
	int ret = any(db, SQL_DELETE_WAITS, job, key);
	if (ret == 0)
		ret = any(db, SQL_WRITING_KEY, job, key);
	if (ret)
		return ret < 0 ? ret : -EBUSY;
	sqlite3_stmt *s = db_use(db, SQL_HOLDER);
	db_bind_text(s, ":key", key);
	db_bind_text(s, ":image", job->image_id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		snprintf(who, n, "%s", (const char *)sqlite3_column_text(s, 0));
		ret = sqlite3_column_int(s, 1) ? -EBUSY : -EEXIST;
	} else if (rc != SQLITE_DONE) {
		ret = -EIO;
	}
	sqlite3_reset(s);
	return ret;
}

int db_gate_put(struct db *db, const struct db_job *job, const char *key,
		const char *key2, char *who, size_t n)
{
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	who[0] = '\0';
	ret = may_put(db, job, key, who, n);
	if (ret == 0)
		ret = may_put(db, job, key2, who, n);
	if (ret == 0) {
		sqlite3_stmt *s = db_use(db, SQL_PUTS);
		db_bind_text(s, ":key", key);
		db_bind_text(s, ":key2", key2);
		db_bind_int64(s, ":job", job->id);
		ret = db_run(s);
	}
	int end = db_tx_end(db, ret == 0 ? 0 : -EAGAIN);
	return ret ? ret : end;
}

int db_gate_delete(struct db *db, const struct db_job *job, const char *key)
{
	db_lock(db);
	int ret = any(db, SQL_WRITING_KEY, job, key);
	if (ret == 0)
		ret = any(db, SQL_HELD, job, key);
	else if (ret == 1)
		ret = -EBUSY;
	db_unlock(db);
	return ret;
}

int db_job_wait(struct db *db, int64_t job_id, int delay_s)
{
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_WAIT);
	db_bind_int64(s, ":job", job_id);
	db_bind_int64(s, ":not_before", (int64_t)time(NULL) + delay_s);
	int ret = db_run(s);
	db_unlock(db);
	return ret;
}
