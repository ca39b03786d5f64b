/* queue.c - the job queue: store jobs claimed one image at a time,
 * PostgreSQL jobs in strict order, retries, and what a finished job
 * records (see catalog.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "db/internal.h"

/* One job of an image at a time: an older ingest still running would
 * otherwise store its content after the newer one's. */
static const char SQL_CLAIM_PICK[] =
    "SELECT rowid" DB_JOB_SELECT " FROM jobs WHERE kind IN (1, 2, 5) AND"
    " claimed = 0 AND not_before <= :now AND NOT EXISTS (SELECT 1 FROM"
    " jobs o WHERE o.image_id = jobs.image_id AND o.image_id != '' AND"
    " o.claimed = 1 AND o.kind IN (1, 2, 5)) ORDER BY id LIMIT 1";
static const char SQL_SYNC_PICK[] =
    "SELECT rowid" DB_JOB_SELECT " FROM jobs WHERE kind IN (3, 4) AND"
    " claimed = 0 AND id > :after ORDER BY id LIMIT 1";
static const char SQL_CLAIM_MARK[] =
    "UPDATE jobs SET claimed = 1 WHERE id = :job";
static const char SQL_RELEASE[] = "UPDATE jobs SET claimed = 0 WHERE id = :job";
static const char SQL_DONE[] = "DELETE FROM jobs WHERE id = :job";
static const char SQL_RETRY[] =
    "UPDATE jobs SET claimed = 0, attempts = attempts + 1,"
    " not_before = :not_before, last_error = :error WHERE id = :job";
static const char SQL_INSERT[] =
    "INSERT INTO jobs (kind, image_id, gen, key, key2, name) VALUES"
    " (:kind, :image_id, :gen, :key, :key2, :name)";
static const char SQL_IN_PG[] = "UPDATE images SET in_pg = 1 WHERE id = :id";
static const char SQL_IMG_DONE[] =
    "UPDATE images SET state = 'uploaded', s3_key = :s3_key,"
    " s3_thumbnail_key = :s3_thumbnail_key, s3_bucket = :s3_bucket,"
    " thumbnail_name = :thumbnail_name, thumbnail_size = :thumbnail_size,"
    " mime_type = :mime_type, width = :width, height = :height,"
    " sha256 = :sha256, error = :error, file_size = :file_size,"
    " updated_at = :updated_at, category = :category,"
    " filemaker_id = :filemaker_id WHERE id = :id AND gen = :gen";
/* rows the store has with no thumbnail and no error that says why, with
 * no job of theirs waiting */
#define BACKFILL_SELECT                                                        \
	"INSERT INTO jobs (kind, image_id, gen) SELECT 5, id, gen FROM"        \
	" images WHERE state = 'uploaded' AND s3_key != '' AND"                \
	" s3_thumbnail_key = '' AND error = '' AND id NOT IN (SELECT"          \
	" image_id FROM jobs WHERE kind IN (1, 5))"
static const char SQL_BACKFILL_ALL[] = BACKFILL_SELECT;
static const char SQL_BACKFILL_BATCH[] =
    BACKFILL_SELECT " AND patient_id = :patient_id AND"
		    " batch_date = :batch_date";
static const char SQL_BACKFILL_FAILED[] =
    "UPDATE images SET error = :error WHERE id = :id AND gen = :gen";

/* Insert a job of kind with these fields (NULL or 0: empty). */
static int insert_job(struct db *db, enum db_job_kind kind,
		      const char *image_id, int64_t gen, const char *key,
		      const char *key2, const char *name)
{
	sqlite3_stmt *s = db_use(db, SQL_INSERT);
	db_bind_int64(s, ":kind", kind);
	db_bind_text(s, ":image_id", image_id);
	db_bind_int64(s, ":gen", gen);
	db_bind_text(s, ":key", key);
	db_bind_text(s, ":key2", key2);
	db_bind_text(s, ":name", name);
	return db_run(s);
}

int db_queue_delete(struct db *db, const char *image_id, int64_t gen,
		    const char *key, const char *key2)
{
	return insert_job(db, DB_JOB_DELETE, image_id, gen, key, key2, NULL);
}

int db_queue_sync(struct db *db, enum db_job_kind kind, const char *id,
		  const char *patient, const char *date, const char *name)
{
	if (!db->pg_sync)
		return 0;
	return insert_job(db, kind, id, 0, patient, date, name);
}

/* Run sql, whose one parameter is a job id. */
static int job_stmt_locked(struct db *db, const char *sql, int64_t job_id)
{
	sqlite3_stmt *s = db_use(db, sql);
	db_bind_int64(s, ":job", job_id);
	return db_run(s);
}

/* Run sql on the job under the lock alone. */
static int job_stmt(struct db *db, const char *sql, int64_t job_id)
{
	db_lock(db);
	int ret = job_stmt_locked(db, sql, job_id);
	db_unlock(db);
	return ret;
}

/* Claim the job the pick statement s returns, if it is due: 0, -EAGAIN
 * (not due yet), -ENOENT (none), -EIO. */
static int claim_locked(struct db *db, sqlite3_stmt *s, struct db_job *job)
{
	int ret = db_step_job(s, job);
	if (ret == 0 && job->not_before > (int64_t)time(NULL))
		ret = -EAGAIN;
	if (ret == 0)
		ret = job_stmt_locked(db, SQL_CLAIM_MARK, job->id);
	return ret;
}

int db_job_claim(struct db *db, struct db_job *job)
{
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_CLAIM_PICK);
	db_bind_int64(s, ":now", (int64_t)time(NULL));
	int ret = claim_locked(db, s, job);
	db_unlock(db);
	return ret;
}

int db_sync_claim(struct db *db, struct db_job *jobs, int max)
{
	int n = 0, ret = db_tx_begin(db);
	if (ret)
		return -EIO;
	while (n < max) {
		sqlite3_stmt *s = db_use(db, SQL_SYNC_PICK);
		db_bind_int64(s, ":after", n ? jobs[n - 1].id : 0);
		ret = claim_locked(db, s, &jobs[n]);
		if (ret)
			break;
		n++;
	}
	if (db_tx_end(db, ret == -EIO ? -EIO : 0))
		return -EIO;
	if (n > 0)
		return n;
	return ret == -EAGAIN ? ret : -ENOENT;
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
	int ret = db_tomb_get_locked(db, job->image_id, &t);
	if (ret)
		return ret == -ENOENT ? 0 : ret;
	if (t.objects_kept)
		return 0;
	ret = db_get_locked(db, t.patient_id, t.batch_date, t.name, &img);
	if (ret != -ENOENT)
		return ret; /* in use again (0), or a failure */
	return db_queue_delete(db, t.image_id, 0, t.s3_key, t.s3_thumbnail_key);
}

int db_sync_done(struct db *db, const struct db_job *jobs, int n)
{
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	for (int i = 0; ret == 0 && i < n; i++) {
		if (jobs[i].kind == DB_JOB_PG_UPSERT) {
			sqlite3_stmt *s = db_use(db, SQL_IN_PG);
			db_bind_text(s, ":id", jobs[i].image_id);
			ret = db_run(s);
		} else if (jobs[i].kind == DB_JOB_PG_DELETE) {
			ret = tombstone_synced(db, &jobs[i]);
		}
		if (ret == 0)
			ret = job_stmt_locked(db, SQL_DONE, jobs[i].id);
	}
	return db_tx_end(db, ret); /* commits, or rolls back on failure */
}

int db_job_release(struct db *db, int64_t job_id)
{
	return job_stmt(db, SQL_RELEASE, job_id);
}

int db_job_done(struct db *db, int64_t job_id)
{
	return job_stmt(db, SQL_DONE, job_id);
}

int db_job_retry(struct db *db, int64_t job_id, int delay_s, const char *error)
{
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_RETRY);
	db_bind_int64(s, ":job", job_id);
	db_bind_int64(s, ":not_before", (int64_t)time(NULL) + delay_s);
	db_bind_text(s, ":error", error);
	int ret = db_run(s);
	db_unlock(db);
	return ret;
}

/* The row went away while its ingest ran: unless the name is in use again,
 * the objects just stored belong to nobody, so queue their removal. */
static int orphan_locked(struct db *db, const struct db_job *job,
			 const struct db_image *img)
{
	struct db_image other;
	int ret = db_get_by_id_locked(db, job->image_id, &other);
	if (ret != -ENOENT)
		return ret; /* still there, moved on (0), or a failure */
	ret = db_get_locked(db, img->patient_id, img->batch_date, img->name,
			    &other);
	if (ret != -ENOENT)
		return ret;
	return db_queue_delete(db, job->image_id, job->gen, img->s3_key,
			       img->s3_thumbnail_key);
}

int db_ingest_done(struct db *db, const struct db_job *job,
		   const struct db_image *img, bool *current)
{
	struct db_image u = *img;
	*current = false;
	snprintf(u.id, sizeof(u.id), "%s", job->image_id);
	u.gen = job->gen;
	db_now(u.updated_at);
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	sqlite3_stmt *s = db_use(db, SQL_IMG_DONE);
	db_bind_image(s, &u);
	ret = db_run(s);
	if (ret == 0)
		*current = sqlite3_changes(db->conn) > 0;
	if (ret == 0 && !*current)
		ret = orphan_locked(db, job, img);
	if (ret == 0 && *current)
		ret =
		    db_queue_sync(db, DB_JOB_PG_UPSERT, job->image_id,
				  img->patient_id, img->batch_date, img->name);
	if (ret == 0)
		ret = job_stmt_locked(db, SQL_DONE, job->id);
	return db_tx_end(db, ret);
}

int db_backfill_queue(struct db *db, const char *patient, const char *date)
{
	db_lock(db);
	sqlite3_stmt *s =
	    db_use(db, patient ? SQL_BACKFILL_BATCH : SQL_BACKFILL_ALL);
	db_bind_text(s, ":patient_id", patient);
	db_bind_text(s, ":batch_date", date);
	int ret = db_run(s);
	if (ret == 0)
		ret = sqlite3_changes(db->conn);
	db_unlock(db);
	return ret;
}

int db_backfill_failed(struct db *db, const struct db_job *job,
		       const char *error)
{
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	sqlite3_stmt *s = db_use(db, SQL_BACKFILL_FAILED);
	db_bind_text(s, ":id", job->image_id);
	db_bind_int64(s, ":gen", job->gen);
	db_bind_text(s, ":error", error);
	ret = db_run(s);
	if (ret == 0)
		ret = job_stmt_locked(db, SQL_DONE, job->id);
	return db_tx_end(db, ret);
}
