/* catalog.c - the images: written, being written, removed (with their
 * tombstones), read, listed and counted (see catalog.h). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uninorm.h>

#include "db/gate.h"
#include "db/internal.h"

DB_SQL(SQL_GET, "SELECT rowid" DB_IMAGE_SELECT
		" FROM images WHERE patient_id = :patient_id"
		" AND batch_date = :batch_date AND name = :name");
DB_SQL(SQL_GET_ID,
       "SELECT rowid" DB_IMAGE_SELECT " FROM images WHERE id = :id");
DB_SQL(SQL_GET_ROWID,
       "SELECT rowid" DB_IMAGE_SELECT " FROM images WHERE rowid = :rowid");
DB_SQL(SQL_GET_THUMB,
       "SELECT rowid" DB_IMAGE_SELECT " FROM images WHERE"
       " patient_id = :patient_id AND batch_date = :batch_date AND"
       " thumbnail_name = :name ORDER BY updated_at DESC LIMIT 1");
/* a thumbnail's name, by record: a row of the date has it as its
 * thumbnail or claims it, and no image of the date has it as its name */
DB_SQL(SQL_THUMB_NAMED,
       "SELECT NOT EXISTS (SELECT 1 FROM images WHERE"
       " patient_id = :patient_id AND batch_date = :batch_date AND"
       " name = :name) AND (EXISTS (SELECT 1 FROM images WHERE"
       " patient_id = :patient_id AND batch_date = :batch_date AND"
       " thumbnail_name = :name) OR EXISTS (SELECT 1 FROM images WHERE"
       " patient_id = :patient_id AND batch_date = :batch_date AND"
       " thumb_claim = :name AND thumb_claim != ''))");
DB_SQL(SQL_DATE_USED,
       "SELECT EXISTS (SELECT 1 FROM images WHERE"
       " patient_id = :patient_id AND batch_date = :batch_date)");
DB_SQL(SQL_PATIENT_USED, "SELECT EXISTS (SELECT 1 FROM images WHERE"
			 " patient_id = :patient_id)");
/* :in_pg: a row PostgreSQL already has (read from it) */
/* its rowid one past the largest ever given (schema v16) */
DB_SQL(SQL_INSERT,
       "INSERT INTO images (rowid, in_pg, seen, name_key" DB_IMAGE_SELECT
       ") VALUES ((SELECT n + 1 FROM rowid_seq WHERE one = 1), :in_pg,"
       " :in_pg, :name_key" DB_IMAGE_PARAMS ")");
/* the name of the date spelled as written first, of an NFC key */
DB_SQL(SQL_SPELLING,
       "SELECT name FROM images WHERE patient_id = :patient_id AND"
       " batch_date = :batch_date AND name_key = :name AND name_key != ''"
       " ORDER BY created_at LIMIT 1");
DB_SQL(SQL_REWRITE, "UPDATE images SET state = 'spooled', gen = gen + 1,"
		    " file_size = :file_size, uploaded_by = :uploaded_by,"
		    " updated_at = :updated_at, evicted = 0 WHERE id = :id");
DB_SQL(SQL_DELETE, "DELETE FROM images WHERE id = :id");
DB_SQL(
    SQL_BUMP,
    "UPDATE images SET gen = gen + 1, evicted = 0 WHERE"
    " patient_id = :patient_id AND batch_date = :batch_date AND name = :name");
DB_SQL(SQL_META,
       "UPDATE images SET category = :category, filemaker_id = :filemaker_id,"
       " updated_at = :updated_at WHERE id = :id");
DB_SQL(SQL_LIST,
       "SELECT name, thumbnail_name, state = 'uploaded', s3_thumbnail_key != ''"
       " AND count(*) OVER (PARTITION BY thumbnail_name) = 1, file_size,"
       " thumbnail_size, updated_at, rowid, id FROM images"
       " WHERE patient_id = :patient_id"
       " AND batch_date = :batch_date ORDER BY name");
/* kept as rows change (schema v8's triggers): nothing is scanned */
DB_SQL(SQL_COUNT_STATE,
       "SELECT sum(n * (what = 'spooled')), sum(n * (what = 'uploaded')),"
       " sum(n * (what = 'other')), sum(n * (what = 'errors')) FROM counts");
/* the newest of each kind, by the partial indexes of schema v7 */
DB_SQL(SQL_PROBLEMS,
       "SELECT * FROM (SELECT patient_id || '/' || batch_date || '/' || name,"
       " 'no thumbnail: ' || error, updated_at FROM images WHERE error != ''"
       " ORDER BY updated_at DESC LIMIT :n) UNION ALL"
       " SELECT * FROM (SELECT coalesce(i.patient_id || '/' || i.batch_date"
       " || '/' || i.name, j.key), 'failed for good: ' || j.last_error, ''"
       " FROM jobs j LEFT JOIN images i ON i.id = j.image_id WHERE j.parked"
       " ORDER BY j.id DESC LIMIT :n)");
/* kept as jobs change (schema v14's triggers), the oldest by its partial
 * indexes: nothing is scanned */
DB_SQL(SQL_COUNT_JOBS,
       "SELECT sum(n * (what = 'ingest')), sum(n * (what = 'delete')),"
       " sum(n * (what = 'retrying')), sum(n * (what = 'sync')),"
       " sum(n * (what = 'backfill')), sum(n * (what = 'move')),"
       " sum(n * (what = 'parked')),"
       " (SELECT min(queued) FROM jobs WHERE NOT parked),"
       " (SELECT min(queued) FROM jobs WHERE kind IN (3, 4) AND NOT parked)"
       " FROM job_counts");
DB_SQL(SQL_JOB_HAS, "SELECT 1 FROM jobs WHERE image_id = :id"
		    " LIMIT 1");
DB_SQL(SQL_JOB_FIND_INGEST,
       "SELECT id FROM jobs WHERE kind = 1 AND image_id = :id AND claimed = 0"
       " LIMIT 1");
DB_SQL(
    SQL_JOB_SET_GEN,
    "UPDATE jobs SET gen = :gen, not_before = 0, attempts = 0 WHERE id = :job");
DB_SQL(SQL_JOB_INSERT_INGEST,
       "INSERT INTO jobs (kind, image_id, gen) VALUES (1, :id, :gen)");
DB_SQL(SQL_JOB_DROP_INGESTS,
       "DELETE FROM jobs WHERE kind = 1 AND image_id = :id AND claimed = 0");
DB_SQL(
    SQL_WRITING_ADD,
    "INSERT OR IGNORE INTO writing VALUES (:patient_id, :batch_date, :name)");
DB_SQL(SQL_WRITING_DEL, "DELETE FROM writing WHERE patient_id = :patient_id AND"
			" batch_date = :batch_date AND name = :name");
DB_SQL(SQL_WRITING_FIRST,
       "SELECT patient_id, batch_date, name FROM writing LIMIT 1");
DB_SQL(SQL_TOMB_INSERT, "INSERT INTO tombstones (rowid" DB_TOMB_SELECT
			") VALUES (NULL" DB_TOMB_PARAMS ")");
DB_SQL(SQL_TOMB_GET,
       "SELECT rowid" DB_TOMB_SELECT " FROM tombstones WHERE id = :id");

sqlite3_stmt *db_use_path(struct db *db, const char *sql, const char *patient,
			  const char *date, const char *name)
{
	sqlite3_stmt *s = db_use(db, sql);
	db_bind_text(s, ":patient_id", patient);
	db_bind_text(s, ":batch_date", date);
	db_bind_text(s, ":name", name);
	return s;
}

int db_path_stmt(struct db *db, const char *sql, const char *patient,
		 const char *date, const char *name)
{
	return db_run(db_use_path(db, sql, patient, date, name));
}

int db_get_locked(struct db *db, const char *patient, const char *date,
		  const char *name, struct db_image *out)
{
	DB_ASSERT_LOCKED(db);
	return db_step_image(db_use_path(db, SQL_GET, patient, date, name),
			     out);
}

int db_get_by_id_locked(struct db *db, const char *id, struct db_image *out)
{
	DB_ASSERT_LOCKED(db);
	sqlite3_stmt *s = db_use(db, SQL_GET_ID);
	db_bind_text(s, ":id", id);
	return db_step_image(s, out);
}

int db_insert_image_locked(struct db *db, const struct db_image *img,
			   bool in_pg)
{
	DB_ASSERT_LOCKED(db);
	char key[1024];
	sqlite3_stmt *s = db_use(db, SQL_INSERT);
	db_bind_image(s, img);
	db_bind_int64(s, ":in_pg", in_pg);
	db_bind_text(s, ":name_key",
		     db_name_key(img->name, key, sizeof(key)) == 1 ? key : "");
	return db_run(s);
}

int db_name_key(const char *name, char *out, size_t n)
{
	const char *p = name;
	while (*p && (unsigned char)*p < 0x80)
		p++;
	if (!*p) /* ASCII: no other spelling (the common case, and cheap) */
		return 0;
	size_t len = 0;
	uint8_t *v = u8_normalize(UNINORM_NFC, (const uint8_t *)name,
				  strlen(name), NULL, &len);
	if (!v)
		return 0; /* no UTF-8: no path of the mount has it */
	int ret = len < n;
	if (ret) {
		memcpy(out, v, len);
		out[len] = '\0';
	}
	free(v);
	return ret;
}

int db_name_spelling(struct db *db, const char *patient, const char *date,
		     const char *key, char *out, size_t n)
{
	db_lock(db);
	sqlite3_stmt *s = db_use_path(db, SQL_SPELLING, patient, date, key);
	int rc = s ? sqlite3_step(s) : SQLITE_ERROR, ret = -EIO;
	if (rc == SQLITE_ROW) {
		snprintf(out, n, "%s", (const char *)sqlite3_column_text(s, 0));
		ret = 0;
	} else if (rc == SQLITE_DONE) {
		ret = -ENOENT;
	}
	if (s)
		sqlite3_reset(s);
	db_unlock(db);
	return ret;
}

/* The first column of the row sql returns with :id bound (db_int). */
static int64_t id_int(struct db *db, const char *sql, const char *id)
{
	sqlite3_stmt *s = db_use(db, sql);
	db_bind_text(s, ":id", id);
	return db_int(s);
}

int db_queue_ingest_locked(struct db *db, const char *id, int64_t gen)
{
	int64_t job = id_int(db, SQL_JOB_FIND_INGEST, id);
	sqlite3_stmt *s;
	if (job == -EIO)
		return -EIO;
	if (job > 0) {
		s = db_use(db, SQL_JOB_SET_GEN);
		db_bind_int64(s, ":job", job);
	} else {
		s = db_use(db, SQL_JOB_INSERT_INGEST);
		db_bind_text(s, ":id", id);
	}
	db_bind_int64(s, ":gen", gen);
	return db_run(s);
}

static int written_locked(struct db *db, const char *patient, const char *date,
			  const char *name, int64_t size,
			  const char *uploaded_by)
{
	DB_ASSERT_LOCKED(db);
	struct db_image img;
	int ret = db_get_locked(db, patient, date, name, &img);
	if (ret == -ENOENT) {
		memset(&img, 0, sizeof(img));
		db_uuid(img.id);
		snprintf(img.patient_id, sizeof(img.patient_id), "%s", patient);
		snprintf(img.batch_date, sizeof(img.batch_date), "%s", date);
		snprintf(img.name, sizeof(img.name), "%s", name);
		snprintf(img.state, sizeof(img.state), "spooled");
		img.gen = 1;
	} else if (ret == 0) {
		img.gen++;
	}
	img.file_size = size;
	snprintf(img.uploaded_by, sizeof(img.uploaded_by), "%s",
		 uploaded_by ? uploaded_by : "");
	db_now(img.updated_at);
	if (ret == -ENOENT) {
		memcpy(img.created_at, img.updated_at, sizeof(img.created_at));
		ret = db_insert_image_locked(db, &img, false);
	} else if (ret == 0) {
		sqlite3_stmt *s = db_use(db, SQL_REWRITE);
		db_bind_image(s, &img);
		ret = db_run(s);
	}
	if (ret == 0)
		ret = db_queue_ingest_locked(db, img.id, img.gen);
	if (ret == 0) /* the writer is told it is saved */
		ret = db_path_stmt(db, SQL_WRITING_DEL, patient, date, name);
	return ret;
}

int db_image_writing(struct db *db, const char *patient, const char *date,
		     const char *name)
{
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	/* a thumbnail claimed the name since the writer's path was read */
	int64_t named =
	    db_int(db_use_path(db, SQL_THUMB_NAMED, patient, date, name));
	ret = named < 0 ? (int)named : named ? -EEXIST : 0;
	if (ret == 0)
		ret = db_path_stmt(db, SQL_WRITING_ADD, patient, date, name);
	if (ret == 0) /* an ingest on its way reads a changing file */
		ret = db_path_stmt(db, SQL_BUMP, patient, date, name);
	return db_tx_end(db, ret);
}

DB_SQL(SQL_EVICTED_AGAIN,
       "UPDATE images SET evicted = 1 WHERE patient_id = :patient_id AND"
       " batch_date = :batch_date AND name = :name");

int db_writing_undo(struct db *db, const char *patient, const char *date,
		    const char *name, bool evicted)
{
	struct db_image img;
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	ret = db_path_stmt(db, SQL_WRITING_DEL, patient, date, name);
	if (ret == 0)
		ret = db_get_locked(db, patient, date, name, &img);
	if (ret == 0 && !strcmp(img.state, "spooled"))
		ret =
		    db_queue_ingest_locked(db, img.id, img.gen); /* still due */
	if (ret == 0 && evicted)
		ret = db_path_stmt(db, SQL_EVICTED_AGAIN, patient, date, name);
	return db_tx_end(db, ret == -ENOENT ? 0 : ret);
}

int db_tomb_insert_locked(struct db *db, const struct db_tombstone *t)
{
	DB_ASSERT_LOCKED(db);
	sqlite3_stmt *s = db_use(db, SQL_TOMB_INSERT);
	db_bind_tomb(s, t);
	return db_run(s);
}

int db_image_written(struct db *db, const char *patient, const char *date,
		     const char *name, int64_t size, const char *uploaded_by)
{
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	return db_tx_end(
	    db, written_locked(db, patient, date, name, size, uploaded_by));
}

/* The image leaves: its tombstone (when the store had it), then its
 * PostgreSQL delete; the store's delete follows the tombstone's arrival in
 * PostgreSQL (db_sync_done), or at once when there is no sync. */
int db_removed_locked(struct db *db, const char *patient, const char *date,
		      const char *name, const char *who)
{
	DB_ASSERT_LOCKED(db);
	struct db_image img;
	struct db_tombstone t;
	sqlite3_stmt *s;
	memset(&t, 0, sizeof(t));
	int ret = db_path_stmt(db, SQL_WRITING_DEL, patient, date, name);
	if (ret == 0)
		ret = db_get_locked(db, patient, date, name, &img);
	if (ret == 0)
		ret = db_gate_drop_puts_locked(db, img.id);
	if (ret == 0) {
		s = db_use(db, SQL_JOB_DROP_INGESTS);
		db_bind_text(s, ":id", img.id);
		ret = db_run(s);
	}
	if (ret == 0) {
		s = db_use(db, SQL_DELETE);
		db_bind_text(s, ":id", img.id);
		ret = db_run(s);
	}
	bool stored = ret == 0 && (img.s3_key[0] || img.s3_thumbnail_key[0]);
	if (stored) {
		db_uuid(t.id);
		snprintf(t.image_id, sizeof(t.image_id), "%s", img.id);
		snprintf(t.patient_id, sizeof(t.patient_id), "%s", patient);
		snprintf(t.batch_date, sizeof(t.batch_date), "%s", date);
		snprintf(t.name, sizeof(t.name), "%s", name);
		snprintf(t.s3_bucket, sizeof(t.s3_bucket), "%s", img.s3_bucket);
		snprintf(t.s3_key, sizeof(t.s3_key), "%s", img.s3_key);
		snprintf(t.s3_thumbnail_key, sizeof(t.s3_thumbnail_key), "%s",
			 img.s3_thumbnail_key);
		snprintf(t.sha256, sizeof(t.sha256), "%s", img.sha256);
		snprintf(t.stamp, sizeof(t.stamp), "%s", img.updated_at);
		t.file_size = img.file_size;
		snprintf(t.deleted_by, sizeof(t.deleted_by), "%s",
			 who ? who : "thumbfs");
		db_now(t.deleted_at);
		t.objects_kept = db->keep_objects;
		ret = db_tomb_insert_locked(db, &t);
	}
	if (ret == 0 && stored && !db->keep_objects && !db->pg_sync)
		ret = db_queue_delete(db, img.id, img.gen, img.s3_key,
				      img.s3_thumbnail_key, img.updated_at,
				      patient, date, name);
	if (ret == 0)
		ret = db_queue_sync(db, DB_JOB_PG_DELETE, t.id, patient, date,
				    name);
	return ret;
}

int db_image_removed(struct db *db, const char *patient, const char *date,
		     const char *name, const char *who)
{
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	int r = db_removed_locked(db, patient, date, name, who);
	ret = db_tx_end(db, r == -ENOENT ? 0 : r);
	return ret ? ret : r;
}

int db_tomb_get_locked(struct db *db, const char *id, struct db_tombstone *out)
{
	DB_ASSERT_LOCKED(db);
	sqlite3_stmt *s = db_use(db, SQL_TOMB_GET);
	db_bind_text(s, ":id", id);
	return db_step_tomb(s, out);
}

int db_tombstone_get(struct db *db, const char *id, struct db_tombstone *out)
{
	db_lock(db);
	int ret = db_tomb_get_locked(db, id, out);
	db_unlock(db);
	return ret;
}

DB_SQL(SQL_SPOOLED_NEXT,
       "SELECT patient_id, batch_date, name FROM images WHERE"
       " state = 'spooled' AND id > :after ORDER BY id LIMIT 1");

/* The (patient, date, name) of the first row of sql (bound to after when
 * given) into out; -ENOENT when there is none. */
static int first_path(struct db *db, const char *sql, const char *after,
		      struct db_image *out)
{
	memset(out, 0, sizeof(*out));
	db_lock(db);
	sqlite3_stmt *s = db_use(db, sql);
	if (after)
		db_bind_text(s, ":after", after);
	int rc = sqlite3_step(s), ret = rc == SQLITE_DONE ? -ENOENT : -EIO;
	if (rc == SQLITE_ROW) {
		snprintf(out->patient_id, sizeof(out->patient_id), "%s",
			 (const char *)sqlite3_column_text(s, 0));
		snprintf(out->batch_date, sizeof(out->batch_date), "%s",
			 (const char *)sqlite3_column_text(s, 1));
		snprintf(out->name, sizeof(out->name), "%s",
			 (const char *)sqlite3_column_text(s, 2));
		ret = 0;
	}
	db_unlock(db);
	return ret;
}

int db_spooled_next(struct db *db, char *after, size_t after_len,
		    struct db_image *out)
{
	int ret = first_path(db, SQL_SPOOLED_NEXT, after, out);
	if (ret == 0)
		ret = db_image_get(db, out->patient_id, out->batch_date,
				   out->name, out);
	if (ret == 0)
		snprintf(after, after_len, "%s", out->id);
	return ret;
}

int db_writing_first(struct db *db, struct db_image *out)
{
	return first_path(db, SQL_WRITING_FIRST, NULL, out);
}

int db_writing_abort(struct db *db, const char *patient, const char *date,
		     const char *name, bool *kept)
{
	struct db_image img;
	*kept = false;
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	ret = db_get_locked(db, patient, date, name, &img);
	if (ret == 0 && !strcmp(img.state, "uploaded") && img.s3_key[0]) {
		*kept = true; /* the store holds the last whole content */
		ret = db_path_stmt(db, SQL_WRITING_DEL, patient, date, name);
	} else if (ret == 0 || ret == -ENOENT) {
		ret = db_removed_locked(db, patient, date, name, NULL);
		ret = ret == -ENOENT ? 0 : ret;
	}
	return db_tx_end(db, ret);
}

int db_image_get(struct db *db, const char *patient, const char *date,
		 const char *name, struct db_image *out)
{
	db_lock(db);
	int ret = db_get_locked(db, patient, date, name, out);
	db_unlock(db);
	return ret;
}

int db_folder_used(struct db *db, const char *patient, const char *date)
{
	db_lock(db);
	int64_t v = db_int(db_use_path(
	    db, date ? SQL_DATE_USED : SQL_PATIENT_USED, patient, date, NULL));
	db_unlock(db);
	return v < 0 ? (int)v : v != 0;
}

int db_image_get_by_id(struct db *db, const char *id, struct db_image *out)
{
	db_lock(db);
	int ret = db_get_by_id_locked(db, id, out);
	db_unlock(db);
	return ret;
}

bool db_key_moved(struct db *db, const char *id, char *key, size_t n)
{
	struct db_image img;
	if (!id[0] || db_image_get_by_id(db, id, &img) || !img.s3_key[0] ||
	    !strcmp(img.s3_key, key))
		return false;
	snprintf(key, n, "%s", img.s3_key);
	return true;
}

int db_image_get_by_rowid(struct db *db, int64_t rowid, struct db_image *out)
{
	int ret;
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_GET_ROWID);
	sqlite3_bind_int64(s, sqlite3_bind_parameter_index(s, ":rowid"), rowid);
	ret = db_step_image(s, out);
	db_unlock(db);
	return ret;
}

int db_thumb_named(struct db *db, const char *patient, const char *date,
		   const char *name)
{
	db_lock(db);
	int64_t v =
	    db_int(db_use_path(db, SQL_THUMB_NAMED, patient, date, name));
	db_unlock(db);
	return v < 0 ? (int)v : v != 0;
}

int db_image_get_by_thumb(struct db *db, const char *patient, const char *date,
			  const char *thumb_name, struct db_image *out)
{
	if (!*thumb_name)
		return -ENOENT;
	db_lock(db);
	int ret = db_step_image(
	    db_use_path(db, SQL_GET_THUMB, patient, date, thumb_name), out);
	db_unlock(db);
	return ret;
}

int db_reconcile(struct db *db, const char *patient, const char *date,
		 const char *name, int64_t size, const char *uploaded_by)
{
	struct db_image img;
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	ret = db_get_locked(db, patient, date, name, &img);
	bool stale = ret == -ENOENT ||
		     (ret == 0 && (img.file_size != size ||
				   strcmp(img.state, "uploaded") != 0));
	/* spooled at its size: is a job still on its way? */
	if (ret == 0 && stale && img.file_size == size &&
	    id_int(db, SQL_JOB_HAS, img.id) == 1)
		stale = false;
	ret = ret == -ENOENT ? 0 : ret;
	if (ret == 0 && stale)
		ret =
		    written_locked(db, patient, date, name, size, uploaded_by);
	ret = db_tx_end(db, ret);
	return ret == 0 && stale ? 1 : ret;
}

int db_image_meta(struct db *db, const char *patient, const char *date,
		  const char *name, const char *category,
		  const char *filemaker_id)
{
	struct db_image img;
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	ret = db_get_locked(db, patient, date, name, &img);
	if (ret == 0) {
		snprintf(img.category, sizeof(img.category), "%s", category);
		snprintf(img.filemaker_id, sizeof(img.filemaker_id), "%s",
			 filemaker_id);
		db_now(img.updated_at);
		sqlite3_stmt *s = db_use(db, SQL_META);
		db_bind_image(s, &img);
		ret = db_run(s);
	}
	/* an upload on its way carries them anyway */
	if (ret == 0 && !strcmp(img.state, "uploaded"))
		ret = db_queue_sync(db, DB_JOB_PG_UPSERT, img.id, patient, date,
				    name);
	return db_tx_end(db, ret);
}

void db_names_free(struct db_name *v, int n)
{
	for (int i = 0; v && i < n; i++) {
		free(v[i].name);
		free(v[i].thumb);
	}
	free(v);
}

int db_list_batch(struct db *db, const char *patient, const char *date,
		  struct db_name **out)
{
	struct db_name *v = NULL;
	int n = 0, cap = 0, rc, ret = 0;
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_LIST);
	db_bind_text(s, ":patient_id", patient);
	db_bind_text(s, ":batch_date", date);
	while (ret == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			int c = cap ? 2 * cap : 64;
			struct db_name *nv = realloc(v, (size_t)c * sizeof(*v));
			if (!nv) {
				ret = -ENOMEM;
				break;
			}
			v = nv;
			cap = c;
		}
		v[n].name = strdup((const char *)sqlite3_column_text(s, 0));
		v[n].thumb = strdup((const char *)sqlite3_column_text(s, 1));
		v[n].uploaded = sqlite3_column_int(s, 2);
		v[n].thumb_stored = sqlite3_column_int(s, 3);
		v[n].size = sqlite3_column_int64(s, 4);
		v[n].thumb_size = sqlite3_column_int64(s, 5);
		snprintf(v[n].updated_at, sizeof(v[n].updated_at), "%s",
			 (const char *)sqlite3_column_text(s, 6));
		v[n].rowid = sqlite3_column_int64(s, 7);
		snprintf(v[n].id, sizeof(v[n].id), "%s",
			 (const char *)sqlite3_column_text(s, 8));
		n++;
		if (!v[n - 1].name || !v[n - 1].thumb)
			ret = -ENOMEM;
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = -EIO;
	db_unlock(db);
	if (ret) {
		db_names_free(v, n);
		return ret;
	}
	*out = v;
	return n;
}

int db_problems(struct db *db, int n,
		void (*fn)(void *arg, const char *path, const char *what),
		void *arg)
{
	int ret = 0, rc;
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_PROBLEMS);
	sqlite3_bind_int(s, sqlite3_bind_parameter_index(s, ":n"), n);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		fn(arg, (const char *)sqlite3_column_text(s, 0),
		   (const char *)sqlite3_column_text(s, 1));
	if (rc != SQLITE_DONE)
		ret = -EIO;
	db_unlock(db);
	return ret;
}

int db_counts(struct db *db, struct db_counts *out)
{
	int ret = 0;
	memset(out, 0, sizeof(*out));
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_COUNT_STATE);
	if (sqlite3_step(s) == SQLITE_ROW) {
		out->spooled = sqlite3_column_int64(s, 0);
		out->uploaded = sqlite3_column_int64(s, 1);
		out->uploaded_other = sqlite3_column_int64(s, 2);
		out->thumb_errors = sqlite3_column_int64(s, 3);
	} else {
		ret = -EIO;
	}
	s = db_use(db, SQL_COUNT_JOBS);
	if (sqlite3_step(s) == SQLITE_ROW) {
		out->jobs_ingest = sqlite3_column_int64(s, 0);
		out->jobs_delete = sqlite3_column_int64(s, 1);
		out->jobs_retrying = sqlite3_column_int64(s, 2);
		out->jobs_sync = sqlite3_column_int64(s, 3);
		out->jobs_backfill = sqlite3_column_int64(s, 4);
		out->jobs_move = sqlite3_column_int64(s, 5);
		out->jobs_parked = sqlite3_column_int64(s, 6);
		out->oldest_queued = sqlite3_column_int64(s, 7);
		out->oldest_sync = sqlite3_column_int64(s, 8);
	} else {
		ret = -EIO;
	}
	db_unlock(db);
	return ret;
}

DB_SQL(SQL_CLEAN, "SELECT clean FROM mount_state");
DB_SQL(SQL_CLEAN_SET,
       "INSERT OR REPLACE INTO mount_state (one, clean) VALUES (1, :clean)");

int db_ended_clean(struct db *db)
{
	db_lock(db);
	int64_t v = db_int(db_use(db, SQL_CLEAN));
	db_unlock(db);
	return v == -ENOENT ? 0 : v < 0 ? (int)v : v != 0;
}

int db_set_ended_clean(struct db *db, bool clean)
{
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_CLEAN_SET);
	db_bind_int64(s, ":clean", clean);
	int ret = db_run(s);
	db_unlock(db);
	return ret ? ret : db_sync(db);
}
