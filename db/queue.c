/* queue.c - the job queue: store jobs claimed one image at a time,
 * PostgreSQL jobs in strict order, retries, and what a finished job
 * records (see catalog.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "db/gate.h"
#include "db/internal.h"

/* One job of an image at a time: an older ingest still running would
 * otherwise store its content after the newer one's. And no ingest of an
 * image while the delete of a former image of its name (its key) waits:
 * the delete would land after the new upload. */
DB_SQL(SQL_CLAIM_PICK,
       "SELECT rowid" DB_JOB_SELECT " FROM jobs WHERE kind IN (1, 2, 5, 6)"
       " AND claimed = 0 AND parked = 0 AND not_before <= :now AND NOT"
       " EXISTS (SELECT 1 FROM"
       " jobs o WHERE o.image_id = jobs.image_id AND o.image_id != '' AND"
       " o.claimed = 1 AND o.kind IN (1, 2, 5, 6)) AND NOT (kind = 1 AND"
       " EXISTS (SELECT 1 FROM jobs d JOIN images i ON i.id = jobs.image_id"
       " WHERE d.kind = 2 AND d.name = i.patient_id || '/' || i.batch_date ||"
       " '/' || i.name)) ORDER BY id LIMIT 1");
DB_SQL(SQL_SYNC_PICK,
       "SELECT rowid" DB_JOB_SELECT " FROM jobs WHERE kind IN (3, 4) AND"
       " claimed = 0 AND parked = 0 AND id > :after ORDER BY id LIMIT 1");
DB_SQL(SQL_CLAIM_MARK, "UPDATE jobs SET claimed = 1 WHERE id = :job");
DB_SQL(SQL_RELEASE, "UPDATE jobs SET claimed = 0 WHERE id = :job");
DB_SQL(SQL_DONE, "DELETE FROM jobs WHERE id = :job");
DB_SQL(SQL_RETRY,
       "UPDATE jobs SET claimed = 0, attempts = attempts + 1,"
       " wrong = wrong + :wrong, not_before = :not_before, last_error = :error"
       " WHERE id = :job");
DB_SQL(SQL_INSERT,
       "INSERT INTO jobs (kind, image_id, gen, key, key2, name, stamp) VALUES"
       " (:kind, :image_id, :gen, :key, :key2, :name, :stamp)");
DB_SQL(SQL_PARK, "UPDATE jobs SET claimed = 0, parked = 1,"
		 " last_error = :error WHERE id = :job");
DB_SQL(SQL_UNPARK_ALL,
       "UPDATE jobs SET parked = 0, not_before = 0, attempts = 0 WHERE"
       " parked");
DB_SQL(SQL_UNPARK,
       "UPDATE jobs SET parked = 0, not_before = 0, attempts = 0 WHERE"
       " parked AND image_id IN (SELECT id FROM images WHERE"
       " patient_id = :patient_id AND (:batch_date = '' OR"
       " batch_date = :batch_date) AND (:name = '' OR name = :name))");
DB_SQL(SQL_WAITING_GO,
       "UPDATE jobs SET not_before = 0 WHERE kind IN (1, 2, 5, 6) AND"
       " claimed = 0 AND parked = 0 AND attempts > 0 AND not_before > :now");
DB_SQL(SQL_PARKED_OF,
       "SELECT last_error FROM jobs WHERE image_id = :id AND parked = 1"
       " LIMIT 1");
DB_SQL(SQL_IN_PG, "UPDATE images SET in_pg = 1 WHERE id = :id");
DB_SQL(SQL_IMG_DONE,
       "UPDATE images SET state = 'uploaded', s3_key = :s3_key,"
       " s3_thumbnail_key = :s3_thumbnail_key, s3_bucket = :s3_bucket,"
       " thumbnail_name = :thumbnail_name, thumbnail_size = :thumbnail_size,"
       " mime_type = :mime_type, width = :width, height = :height,"
       " sha256 = :sha256, error = :error, file_size = :file_size,"
       " updated_at = :updated_at, category = :category,"
       " filemaker_id = :filemaker_id WHERE id = :id AND gen = :gen");
/* rows the store has with no thumbnail and no error that says why, with
 * no job of theirs waiting: of the whole catalog by the index of
 * thumbnail keys (tk), or of one date by its own (tk is "+..." there, which
 * keeps SQLite from the other index, whose '' holds every other file) */
#define BACKFILL_SELECT(tk)                                                    \
	"INSERT INTO jobs (kind, image_id, gen) SELECT 5, id, gen FROM"        \
	" images WHERE state = 'uploaded' AND s3_key != '' AND " tk " = ''"    \
	" AND error = '' AND NOT EXISTS (SELECT 1 FROM jobs j WHERE"           \
	" j.image_id = images.id AND j.kind IN (1, 5))"
DB_SQL(SQL_BACKFILL_ALL, BACKFILL_SELECT("s3_thumbnail_key"));
DB_SQL(SQL_BACKFILL_BATCH,
       BACKFILL_SELECT("+s3_thumbnail_key") " AND patient_id = :patient_id"
					    " AND batch_date = :batch_date");
/* a thumbnail's object another image holds (by key or by its claim), or
 * its name an image's of the date (right_thumb.jpg, a photo of a right
 * thumb), stored or being written */
DB_SQL(SQL_THUMB_HELD,
       "SELECT 1 FROM images WHERE id != :id AND (s3_thumbnail_key = :key OR"
       " s3_key = :key OR (patient_id = :patient_id AND"
       " batch_date = :batch_date AND ((thumb_claim = :name AND"
       " thumb_claim != '') OR name = :name))) UNION ALL SELECT 1 FROM"
       " writing WHERE patient_id = :patient_id AND"
       " batch_date = :batch_date AND name = :name LIMIT 1");
/* an object whose delete is queued, or waits for its tombstone to reach
 * PostgreSQL */
DB_SQL(SQL_KEY_DYING,
       "SELECT 1 FROM jobs WHERE kind = 2 AND (key = :key OR key2 = :key)"
       " UNION ALL SELECT 1 FROM jobs j JOIN tombstones t ON t.id = j.image_id"
       " WHERE j.kind = 4 AND (t.s3_key = :key OR t.s3_thumbnail_key = :key)"
       " LIMIT 1");
DB_SQL(SQL_CLAIM,
       "UPDATE OR IGNORE images SET thumb_claim = :name WHERE id = :id");
DB_SQL(SQL_UNCLAIM, "UPDATE images SET thumb_claim = '' WHERE id = :id AND"
		    " thumb_claim = :name");
DB_SQL(SQL_BACKFILL_FAILED,
       "UPDATE images SET error = :error WHERE id = :id AND gen = :gen");

/* Insert a job of kind with these fields (NULL or 0: empty). */
static int insert_job(struct db *db, enum db_job_kind kind,
		      const char *image_id, int64_t gen, const char *key,
		      const char *key2, const char *name, const char *stamp)
{
	sqlite3_stmt *s = db_use(db, SQL_INSERT);
	db_bind_int64(s, ":kind", kind);
	db_bind_text(s, ":image_id", image_id);
	db_bind_int64(s, ":gen", gen);
	db_bind_text(s, ":key", key);
	db_bind_text(s, ":key2", key2);
	db_bind_text(s, ":name", name);
	db_bind_text(s, ":stamp", stamp ? stamp : "");
	return db_run(s);
}

void db_image_name(char out[400], const char *patient, const char *date,
		   const char *name)
{
	snprintf(out, 400, "%s/%s/%s", patient, date, name);
}

int db_queue_delete(struct db *db, const char *image_id, int64_t gen,
		    const char *key, const char *key2, const char *stamp,
		    const char *patient, const char *date, const char *name)
{
	char who[400] = "";
	if (patient)
		db_image_name(who, patient, date, name);
	return insert_job(db, DB_JOB_DELETE, image_id, gen, key, key2, who,
			  stamp);
}

int db_queue_sync(struct db *db, enum db_job_kind kind, const char *id,
		  const char *patient, const char *date, const char *name)
{
	if (!db->pg_sync)
		return 0;
	return insert_job(db, kind, id, 0, patient, date, name, NULL);
}

/* Run sql, whose one parameter is a job id. */
static int job_stmt_locked(struct db *db, const char *sql, int64_t job_id)
{
	DB_ASSERT_LOCKED(db);
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
	DB_ASSERT_LOCKED(db);
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
 * store's objects may go, unless kept, or a row holds one again, or a new
 * image of the name will store under it: the original's key always, the
 * thumbnail's when it holds (or has not yet claimed) that name. One that
 * took another thumbnail name (this one's delete was waiting) leaves the
 * old thumbnail to go. */
static int tombstone_synced(struct db *db, const struct db_job *job)
{
	struct db_tombstone t;
	struct db_image now;
	if (!job->image_id[0])
		return 0;
	int ret = db_tomb_get_locked(db, job->image_id, &t);
	if (ret)
		return ret == -ENOENT ? 0 : ret;
	if (t.objects_kept)
		return 0;
	int at = db_get_locked(db, t.patient_id, t.batch_date, t.name, &now);
	if (at < 0 && at != -ENOENT)
		return at;
	const char *base = strrchr(t.s3_thumbnail_key, '/');
	base = base ? base + 1 : t.s3_thumbnail_key;
	if (at == 0 && !now.thumb_claim[0] && base[0]) {
		/* The new image has not chosen its thumbnail's name yet: it
		 * claims the old one now, so that the key is its to keep, or
		 * to drop if it takes another name (db_thumb_claim), and
		 * never left to nobody. (Ignored if another image of the
		 * date holds the name.) */
		sqlite3_stmt *s = db_use(db, SQL_CLAIM);
		db_bind_text(s, ":name", base);
		db_bind_text(s, ":id", now.id);
		if ((ret = db_run(s)))
			return ret;
		if (sqlite3_changes(db->conn) == 1)
			snprintf(now.thumb_claim, sizeof(now.thumb_claim), "%s",
				 base);
	}
	bool again[2] = {at == 0, at == 0 && !strcmp(now.thumb_claim, base)};
	char *const keys[] = {t.s3_key, t.s3_thumbnail_key};
	for (int i = 0; i < 2; i++) {
		int held = keys[i][0] && !again[i]
			       ? db_key_held_locked(db, keys[i])
			       : again[i];
		if (held < 0)
			return held;
		if (held)
			keys[i][0] = '\0';
	}
	if (!t.s3_key[0] && !t.s3_thumbnail_key[0])
		return 0;
	return db_queue_delete(db, t.image_id, 0, t.s3_key, t.s3_thumbnail_key,
			       t.stamp, t.patient_id, t.batch_date, t.name);
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

static int retry(struct db *db, int64_t job_id, int delay_s, const char *error,
		 bool wrong)
{
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_RETRY);
	db_bind_int64(s, ":job", job_id);
	db_bind_int64(s, ":wrong", wrong);
	db_bind_int64(s, ":not_before", (int64_t)time(NULL) + delay_s);
	db_bind_text(s, ":error", error);
	int ret = db_run(s);
	db_unlock(db);
	return ret;
}

int db_job_retry(struct db *db, int64_t job_id, int delay_s, const char *error)
{
	return retry(db, job_id, delay_s, error, false);
}

int db_job_wrong(struct db *db, int64_t job_id, int delay_s, const char *error)
{
	return retry(db, job_id, delay_s, error, true);
}

/* 1 if another image than id holds the thumbnail name of its date, or
 * its object under key; 0 if not; -EIO. */
static int thumb_held(struct db *db, const char *id, const char *patient,
		      const char *date, const char *name, const char *key)
{
	sqlite3_stmt *s = db_use_path(db, SQL_THUMB_HELD, patient, date, name);
	db_bind_text(s, ":id", id);
	db_bind_text(s, ":key", key);
	int64_t v = db_int(s);
	return v == -ENOENT ? 0 : v < 0 ? (int)v : 1;
}

/* The image claims another thumbnail name than the one it held (its
 * format changed): what an ingest it could not record stored under the
 * old name's key (beside key, the new one) goes, unless a row holds it. */
static int drop_old_claim(struct db *db, const struct db_image *img,
			  const char *old)
{
	if (!old || !old[0])
		return 0;
	int held = db_key_held_locked(db, old);
	if (held)
		return held < 0 ? held : 0;
	return db_queue_delete(db, img->id, img->gen, old, "", img->updated_at,
			       NULL, NULL, NULL);
}

int db_thumb_claim(struct db *db, const char *id, const char *name,
		   const char *key, const char *held, const char *held_key)
{
	struct db_image img;
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	ret = db_get_by_id_locked(db, id, &img);
	/* a name claimed for it since the caller read the row (at its
	 * tombstone's sync, the name a former image of its name left): the
	 * caller reads it again, to drop it if it takes another */
	if (ret == 0 && img.thumb_claim[0] && strcmp(img.thumb_claim, name) &&
	    (!held || strcmp(img.thumb_claim, held)))
		ret = -EBUSY;
	if (ret == 0 && strcmp(img.thumb_claim, name) && img.thumb_claim[0] &&
	    held && !strcmp(img.thumb_claim, held))
		ret = drop_old_claim(db, &img, held_key);
	if (ret == 0 && strcmp(img.thumb_claim, name)) {
		sqlite3_stmt *s = db_use(db, SQL_KEY_DYING);
		db_bind_text(s, ":key", key);
		int64_t dying = db_int(s);
		ret = thumb_held(db, id, img.patient_id, img.batch_date, name,
				 key);
		if (ret == 0 && dying != -ENOENT)
			ret = dying < 0 ? (int)dying : 1;
		if (ret == 0) {
			s = db_use(db, SQL_CLAIM);
			db_bind_text(s, ":name", name);
			db_bind_text(s, ":id", id);
			ret = db_run(s);
			if (ret == 0 && sqlite3_changes(db->conn) == 0)
				ret = 1; /* another holds it (the index) */
		}
		if (ret == 1)
			ret = -EEXIST;
	}
	return db_tx_end(db, ret == -EEXIST ? 0 : ret) ?: ret;
}

/* The keys just stored (img's) that no row holds go: the image left their
 * place while its ingest ran (a folder renamed: its next ingest stores
 * under the keys of the new place). */
static int left_behind_locked(struct db *db, const struct db_job *job,
			      const struct db_image *img)
{
	const char *const keys[] = {img->s3_key, img->s3_thumbnail_key};
	int ret = 0;
	for (int i = 0; ret == 0 && i < 2; i++) {
		if (!keys[i][0] || (ret = db_key_held_locked(db, keys[i])))
			ret = ret < 0 ? ret : 0;
		else
			ret = db_queue_delete(db, job->image_id, job->gen,
					      keys[i], "", img->updated_at,
					      NULL, NULL, NULL);
	}
	return ret;
}

/* The row went away while its ingest ran: unless the name is in use again,
 * or another image holds the thumbnail, the objects just stored belong to
 * nobody, so queue their removal. A row still there moved on from them. */
static int orphan_locked(struct db *db, const struct db_job *job,
			 const struct db_image *img)
{
	DB_ASSERT_LOCKED(db);
	struct db_image other;
	int ret = db_get_by_id_locked(db, job->image_id, &other);
	if (ret == 0 && (strcmp(other.patient_id, img->patient_id) ||
			 strcmp(other.batch_date, img->batch_date) ||
			 strcmp(other.name, img->name)))
		return left_behind_locked(db, job, img); /* moved */
	if (ret != -ENOENT)
		return ret; /* rewritten: its next ingest stores there again
			     * (a thumbnail in another format: db_thumb_claim
			     * drops the old one), or a failure */
	int again = db_get_locked(db, img->patient_id, img->batch_date,
				  img->name, &other);
	if (again != -ENOENT && again != 0)
		return again;
	ret = img->s3_thumbnail_key[0]
		  ? thumb_held(db, job->image_id, img->patient_id,
			       img->batch_date, img->thumbnail_name,
			       img->s3_thumbnail_key)
		  : 0;
	if (ret < 0)
		return ret;
	if (again == 0) /* removed and written again: the new image stores
			 * under the original's key; the thumbnail goes unless
			 * it holds or claims its name (another format) */
		return ret || !img->s3_thumbnail_key[0]
			   ? 0
			   : db_queue_delete(db, job->image_id, job->gen,
					     img->s3_thumbnail_key, "",
					     img->updated_at, NULL, NULL, NULL);
	return db_queue_delete(db, job->image_id, job->gen, img->s3_key,
			       ret ? "" : img->s3_thumbnail_key,
			       img->updated_at, img->patient_id,
			       img->batch_date, img->name);
}

/* The image's thumbnail was old (its name and key) and is now new's: the
 * old object goes, unless another image holds it; the image lets go of
 * its claim on the old name. */
static int thumb_replaced(struct db *db, const struct db_image *old,
			  const struct db_image *new)
{
	if (!old->s3_thumbnail_key[0] ||
	    !strcmp(old->s3_thumbnail_key, new->s3_thumbnail_key))
		return 0;
	sqlite3_stmt *s = db_use(db, SQL_UNCLAIM);
	db_bind_text(s, ":id", old->id);
	db_bind_text(s, ":name", old->thumbnail_name);
	int ret = db_run(s);
	if (ret == 0)
		ret = thumb_held(db, old->id, old->patient_id, old->batch_date,
				 old->thumbnail_name, old->s3_thumbnail_key);
	if (ret != 0)
		return ret < 0 ? ret : 0;
	return db_queue_delete(db, old->id, old->gen, old->s3_thumbnail_key, "",
			       old->updated_at, NULL, NULL, NULL);
}

int db_ingest_done(struct db *db, const struct db_job *job,
		   const struct db_image *img, const char *stamp, bool *current)
{
	struct db_image u = *img;
	*current = false;
	snprintf(u.id, sizeof(u.id), "%s", job->image_id);
	u.gen = job->gen;
	if (stamp && stamp[0])
		snprintf(u.updated_at, sizeof(u.updated_at), "%s", stamp);
	else
		db_now(u.updated_at);
	struct db_image old;
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	int had = db_get_by_id_locked(db, job->image_id, &old);
	sqlite3_stmt *s = db_use(db, SQL_IMG_DONE);
	db_bind_image(s, &u);
	ret = had == -EIO ? -EIO : db_run(s);
	if (ret == 0)
		*current = sqlite3_changes(db->conn) > 0;
	if (ret == 0 && *current && had == 0)
		ret = thumb_replaced(db, &old, &u);
	if (ret == 0 && !*current)
		ret = orphan_locked(db, job, &u);
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

int db_job_park(struct db *db, int64_t job_id, const char *error)
{
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_PARK);
	db_bind_int64(s, ":job", job_id);
	db_bind_text(s, ":error", error);
	int ret = db_run(s);
	db_unlock(db);
	return ret;
}

int db_jobs_unpark(struct db *db, const char *patient, const char *date,
		   const char *name)
{
	db_lock(db);
	sqlite3_stmt *s = patient
			      ? db_use_path(db, SQL_UNPARK, patient,
					    date ? date : "", name ? name : "")
			      : db_use(db, SQL_UNPARK_ALL);
	int ret = db_run(s);
	if (ret == 0)
		ret = sqlite3_changes(db->conn);
	db_unlock(db);
	return ret;
}

int db_jobs_go(struct db *db)
{
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_WAITING_GO);
	db_bind_int64(s, ":now", (int64_t)time(NULL));
	int ret = db_run(s);
	if (ret == 0)
		ret = sqlite3_changes(db->conn);
	db_unlock(db);
	return ret;
}

int db_image_parked(struct db *db, const char *id, char *why, size_t n)
{
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_PARKED_OF);
	db_bind_text(s, ":id", id);
	int rc = sqlite3_step(s), ret = rc == SQLITE_DONE ? 0 : -EIO;
	if (rc == SQLITE_ROW) {
		snprintf(why, n, "%s", (const char *)sqlite3_column_text(s, 0));
		ret = 1;
	}
	db_unlock(db);
	return ret;
}
