/* gate.c - one owner per store key: whether a job may write a key now,
 * and whether a delete may remove one (see gate.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "db/gate.h"
#include "db/internal.h"

/* A delete of the key is queued. (One that waits for its tombstone to
 * reach PostgreSQL does not hold a write back: that delete leaves the
 * original's key to a new image of its name, and db_thumb_claim gives no
 * image its thumbnail's name meanwhile; uploads do not wait for
 * PostgreSQL.) */
DB_SQL(SQL_DELETE_WAITS,
       "SELECT 1 FROM jobs WHERE kind = 2 AND (key = :key OR key2 = :key)"
       " LIMIT 1");
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
DB_SQL(SQL_PUTS, "UPDATE jobs SET put_key = :key, put_key2 = :key2,"
		 " stamp = '' WHERE id = :job");
DB_SQL(SQL_STAMP, "UPDATE jobs SET stamp = :stamp WHERE id = :job");
DB_SQL(SQL_JOB_GONE, "DELETE FROM jobs WHERE id = :job");
DB_SQL(SQL_WAIT, "UPDATE jobs SET claimed = 0, not_before = :not_before"
		 " WHERE id = :job");
DB_SQL(SQL_PUT_BEFORE,
       "SELECT put_key, put_key2, stamp FROM jobs WHERE id = :job");
DB_SQL(SQL_PUTS_OF,
       "SELECT put_key, put_key2, stamp FROM jobs WHERE image_id = :image AND"
       " kind = 1 AND claimed = 0 AND (put_key != '' OR put_key2 != '')");

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

/* Queue the delete of key, written by a job of image_id whose result was
 * not recorded (a crash, a rewrite, a format that changed), unless a row
 * holds it or it is one of the keys the job writes now (keep, keep2);
 * stamp: what the job stamped it with (db_job_stamp), if it got so far. */
static int drop_written(struct db *db, const char *image_id, const char *key,
			const char *stamp, const char *keep, const char *keep2)
{
	if (!key[0] || !strcmp(key, keep) || !strcmp(key, keep2))
		return 0;
	int held = db_key_held_locked(db, key);
	if (held)
		return held < 0 ? held : 0;
	return db_queue_delete(db, image_id, 0, key, "", stamp, NULL, NULL,
			       NULL);
}

/* The keys the job wrote before (its put keys, kept until replaced) that
 * it does not write now: what a run it could not record stored there
 * goes, if nobody holds it. */
static int drop_before(struct db *db, const struct db_job *job, const char *key,
		       const char *key2)
{
	char before[3][DB_KEY_MAX] = {"", "", ""};
	sqlite3_stmt *s = db_use(db, SQL_PUT_BEFORE);
	db_bind_int64(s, ":job", job->id);
	int rc = sqlite3_step(s);
	for (int i = 0; rc == SQLITE_ROW && i < 3; i++)
		snprintf(before[i], sizeof(before[i]), "%s",
			 (const char *)sqlite3_column_text(s, i));
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return -EIO;
	int ret =
	    drop_written(db, job->image_id, before[0], before[2], key, key2);
	return ret ? ret
		   : drop_written(db, job->image_id, before[1], before[2], key,
				  key2);
}

int db_gate_drop_puts_locked(struct db *db, const char *image_id)
{
	DB_ASSERT_LOCKED(db);
	char keys[8][DB_KEY_MAX], stamps[8][32];
	int n = 0, rc, ret = 0;
	sqlite3_stmt *s = db_use(db, SQL_PUTS_OF);
	db_bind_text(s, ":image", image_id);
	while (n < 7 && (rc = sqlite3_step(s)) == SQLITE_ROW)
		for (int i = 0; i < 2; i++, n++) {
			snprintf(keys[n], sizeof(keys[0]), "%s",
				 (const char *)sqlite3_column_text(s, i));
			snprintf(stamps[n], sizeof(stamps[0]), "%s",
				 (const char *)sqlite3_column_text(s, 2));
		}
	sqlite3_reset(s);
	for (int i = 0; ret == 0 && i < n; i++)
		ret = drop_written(db, image_id, keys[i], stamps[i], "", "");
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
	if (ret == 0)
		ret = drop_before(db, job, key, key2);
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

int db_key_held_locked(struct db *db, const char *key)
{
	DB_ASSERT_LOCKED(db);
	sqlite3_stmt *s = db_use(db, SQL_HELD);
	db_bind_text(s, ":key", key);
	int64_t v = db_int(s);
	return v == -ENOENT ? 0 : v < 0 ? (int)v : 1;
}

int db_gate_delete(struct db *db, const struct db_job *job, const char *key)
{
	db_lock(db);
	int ret = any(db, SQL_WRITING_KEY, job, key);
	if (ret == 0)
		ret = db_key_held_locked(db, key);
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

int db_job_stamp(struct db *db, int64_t job_id, const char *stamp)
{
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_STAMP);
	db_bind_int64(s, ":job", job_id);
	db_bind_text(s, ":stamp", stamp);
	int ret = db_run(s);
	db_unlock(db);
	return ret;
}

int db_job_drop(struct db *db, const struct db_job *job)
{
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	ret = drop_before(db, job, "", "");
	if (ret == 0) {
		sqlite3_stmt *s = db_use(db, SQL_JOB_GONE);
		db_bind_int64(s, ":job", job->id);
		ret = db_run(s);
	}
	return db_tx_end(db, ret);
}
