/* move.c - a patient's or a date's directory renamed: its images move in
 * one transaction, and the store's keys and PostgreSQL follow through the
 * queue (a move job per stored image). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "db/gate.h"
#include "db/internal.h"

/* The rows moved: of patient :fp, of its date :fd ('' for every date). */
#define FROM " patient_id = :fp AND (:fd = '' OR batch_date = :fd)"

DB_SQL(SQL_TARGET_USED,
       "SELECT 1 FROM images WHERE patient_id = :tp AND (:td = '' OR"
       " batch_date = :td) LIMIT 1");
/* PostgreSQL forgets them where they were; their rows there come back
 * at the new place once their objects are (a move job's upsert) */
DB_SQL(SQL_PG_DELETES,
       "INSERT INTO jobs (kind, image_id, key, key2, name) SELECT 4, '',"
       " patient_id, batch_date, name FROM images WHERE in_pg = 1 AND" FROM);
DB_SQL(SQL_MOVE_JOBS,
       "INSERT INTO jobs (kind, image_id, gen, key, key2, name) SELECT 6, id,"
       " gen + 1, s3_key, s3_thumbnail_key, patient_id || '/' || batch_date ||"
       " '/' || name FROM images WHERE s3_key != '' AND" FROM);
/* a waiting ingest is for the new gen; one under way is made stale */
DB_SQL(SQL_INGESTS_ON,
       "UPDATE jobs SET gen = (SELECT i.gen + 1 FROM images i WHERE"
       " i.id = jobs.image_id), not_before = 0, attempts = 0 WHERE kind = 1"
       " AND claimed = 0 AND image_id IN (SELECT id FROM images WHERE" FROM
       ")");
DB_SQL(
    SQL_INGESTS_NEW,
    "INSERT INTO jobs (kind, image_id, gen) SELECT 1, id, gen + 1 FROM"
    " images WHERE state = 'spooled' AND NOT EXISTS (SELECT 1 FROM jobs j"
    " WHERE j.image_id = images.id AND j.kind = 1 AND j.claimed = 0) AND" FROM);
DB_SQL(SQL_ROWS,
       "UPDATE images SET patient_id = :tp, batch_date = CASE WHEN :td = ''"
       " THEN batch_date ELSE :td END, in_pg = 0, gen = gen + 1 WHERE" FROM);
DB_SQL(SQL_WRITING,
       "UPDATE writing SET patient_id = :tp, batch_date = CASE WHEN :td = ''"
       " THEN batch_date ELSE :td END WHERE" FROM);
DB_SQL(SQL_RECORD,
       "INSERT INTO moves (from_patient, from_date, to_patient, to_date)"
       " VALUES (:fp, :fd, :tp, :td)");
DB_SQL(SQL_FIRST, "SELECT from_patient, from_date, to_patient,"
		  " to_date FROM moves ORDER BY rowid LIMIT 1");
DB_SQL(SQL_SETTLED,
       "DELETE FROM moves WHERE from_patient = :fp AND from_date = :fd AND"
       " to_patient = :tp AND to_date = :td");
DB_SQL(SQL_KEYS,
       "UPDATE images SET s3_key = :key, s3_thumbnail_key = CASE WHEN"
       " s3_thumbnail_key = :old_thumb THEN :thumb ELSE s3_thumbnail_key END,"
       " updated_at = CASE WHEN :stamp = '' THEN updated_at ELSE :stamp END"
       " WHERE id = :id");
DB_SQL(SQL_DONE, "DELETE FROM jobs WHERE id = :job");
/* any job of the image but its moves */
DB_SQL(SQL_OTHER_JOBS, "SELECT 1 FROM jobs WHERE image_id = :id AND kind NOT"
		       " IN (2, 4, 6) LIMIT 1");
DB_SQL(SQL_MOVES_DROP, "DELETE FROM jobs WHERE image_id = :id AND kind = 6");
DB_SQL(SQL_ROW_DROP, "DELETE FROM images WHERE id = :id");

/* sql with the move's four places bound. */
static sqlite3_stmt *use_move(struct db *db, const char *sql,
			      const struct db_move *m)
{
	sqlite3_stmt *s = db_use(db, sql);
	db_bind_text(s, ":fp", m->from_patient);
	db_bind_text(s, ":fd", m->from_date);
	db_bind_text(s, ":tp", m->to_patient);
	db_bind_text(s, ":td", m->to_date);
	return s;
}

int db_dir_move(struct db *db, const struct db_move *m)
{
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	int64_t used = db_int(use_move(db, SQL_TARGET_USED, m));
	if (used != -ENOENT)
		ret = used < 0 ? (int)used : -ENOTEMPTY;
	if (ret == 0 && db->pg_sync)
		ret = db_run(use_move(db, SQL_PG_DELETES, m));
	const char *const steps[] = {SQL_MOVE_JOBS, SQL_INGESTS_ON,
				     SQL_INGESTS_NEW, SQL_ROWS};
	for (size_t i = 0; ret == 0 && i < sizeof(steps) / sizeof(*steps); i++)
		ret = db_run(use_move(db, steps[i], m));
	int moved = ret == 0 ? sqlite3_changes(db->conn) : 0;
	if (ret == 0)
		ret = db_run(use_move(db, SQL_WRITING, m));
	if (ret == 0)
		ret = db_run(use_move(db, SQL_RECORD, m));
	ret = db_tx_end(db, ret);
	return ret ? ret : moved;
}

int db_move_first(struct db *db, struct db_move *out)
{
	memset(out, 0, sizeof(*out));
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_FIRST);
	int rc = sqlite3_step(s), ret = rc == SQLITE_DONE ? -ENOENT : -EIO;
	if (rc == SQLITE_ROW) {
		char *const f[] = {out->from_patient, out->from_date,
				   out->to_patient, out->to_date};
		const size_t n[] = {
		    sizeof(out->from_patient), sizeof(out->from_date),
		    sizeof(out->to_patient), sizeof(out->to_date)};
		for (int i = 0; i < 4; i++)
			snprintf(f[i], n[i], "%s",
				 (const char *)sqlite3_column_text(s, i));
		ret = 0;
	}
	db_unlock(db);
	return ret;
}

int db_move_settled(struct db *db, const struct db_move *m)
{
	db_lock(db);
	int ret = db_run(use_move(db, SQL_SETTLED, m));
	db_unlock(db);
	return ret;
}

/* Queue the removal of key, an object no image holds now: the image's
 * key at its old place (named so: see db_queue_delete), when image. */
static int drop_key(struct db *db, const struct db_job *job, const char *key,
		    bool image, const char *stamp)
{
	if (!key || !key[0])
		return 0;
	int held = db_key_held_locked(db, key);
	if (held)
		return held < 0 ? held : 0;
	char who[400], *date, *name;
	snprintf(who, sizeof(who), "%s", job->name);
	if (!image || !(date = strchr(who, '/')) ||
	    !(name = strchr(date + 1, '/')))
		return db_queue_delete(db, job->image_id, job->gen, key, "",
				       stamp, NULL, NULL, NULL);
	*date++ = '\0';
	*name++ = '\0';
	return db_queue_delete(db, job->image_id, job->gen, key, "", stamp, who,
			       date, name);
}

int db_move_done(struct db *db, const struct db_job *job, const char *from_key,
		 const char *from_thumb, const char *key, const char *thumb_key,
		 const char *stamp)
{
	struct db_image img;
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	ret = db_get_by_id_locked(db, job->image_id, &img);
	/* the version the old keys held, as far as it is known */
	char was[32] = "";
	if (ret == 0)
		snprintf(was, sizeof(was), "%s", img.updated_at);
	stamp = stamp ? stamp : "";
	bool moved = ret == 0 && key && !strcmp(img.s3_key, from_key);
	if (moved) {
		sqlite3_stmt *s = db_use(db, SQL_KEYS);
		db_bind_text(s, ":key", key);
		db_bind_text(s, ":thumb", thumb_key);
		db_bind_text(s, ":old_thumb", from_thumb);
		db_bind_text(s, ":stamp", stamp);
		db_bind_text(s, ":id", img.id);
		ret = db_run(s);
		if (ret == 0 && !strcmp(img.state, "uploaded"))
			ret = db_queue_sync(db, DB_JOB_PG_UPSERT, img.id,
					    img.patient_id, img.batch_date,
					    img.name);
	} else if (ret == -ENOENT || ret == 0) {
		/* removed, or stored anew by another mount, since: what was
		 * copied belongs to nobody (unless a row holds it) */
		ret = drop_key(db, job, key, false, stamp);
		if (ret == 0)
			ret = drop_key(db, job, thumb_key, false, stamp);
	}
	/* the old keys, once the new ones exist (or the image moved on):
	 * the job's, and those it copied from when a move before this one
	 * had changed them */
	if (ret == 0)
		ret = drop_key(db, job, job->key, true, was);
	if (ret == 0)
		ret = drop_key(db, job, job->key2, false, was);
	if (ret == 0 && from_key && strcmp(from_key, job->key))
		ret = drop_key(db, job, from_key, false, was);
	if (ret == 0 && from_thumb && strcmp(from_thumb, job->key2))
		ret = drop_key(db, job, from_thumb, false, was);
	if (ret == 0) {
		sqlite3_stmt *s = db_use(db, SQL_DONE);
		db_bind_int64(s, ":job", job->id);
		ret = db_run(s);
	}
	return db_tx_end(db, ret);
}

int db_move_vanished(struct db *db, const struct db_job *job, const char *key,
		     const char *thumb_key, const char *stamp,
		     struct db_image *out)
{
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	ret = db_get_by_id_locked(db, job->image_id, out);
	sqlite3_stmt *s;
	if (ret == 0) {
		s = db_use(db, SQL_OTHER_JOBS);
		db_bind_text(s, ":id", out->id);
		int64_t other = db_int(s);
		ret = other == -ENOENT ? 0 : other < 0 ? (int)other : -EBUSY;
	}
	if (ret == 0) {
		s = db_use(db, SQL_ROW_DROP);
		db_bind_text(s, ":id", out->id);
		ret = db_run(s);
	}
	if (ret == 0) {
		s = db_use(db, SQL_MOVES_DROP);
		db_bind_text(s, ":id", out->id);
		ret = db_run(s);
	}
	if (ret == 0)
		ret = drop_key(db, job, key, false, stamp);
	if (ret == 0)
		ret = drop_key(db, job, thumb_key, false, stamp);
	return db_tx_end(db, ret);
}
