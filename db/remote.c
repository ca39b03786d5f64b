/* remote.c - rows from PostgreSQL (other mounts, the web app) applied to
 * the catalog, and a full read's sweep of the rows gone there. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "db/gate.h"
#include "db/internal.h"

DB_SQL(SQL_PG_DELETE_OF,
       "SELECT 1 FROM jobs WHERE kind = 4 AND key = :patient_id AND"
       " key2 = :batch_date AND name = :name LIMIT 1");
DB_SQL(SQL_SEEN, "UPDATE images SET in_pg = 1, seen = 1 WHERE id = :id");
/* the mount's own write of the name is under way (open for writing, or
 * a job of it waiting): what it writes is newer than any row from
 * elsewhere, and goes to PostgreSQL in turn */
DB_SQL(SQL_BUSY_HERE,
       "SELECT 1 FROM writing WHERE patient_id = :patient_id AND"
       " batch_date = :batch_date AND name = :name UNION ALL SELECT 1 FROM"
       " jobs WHERE image_id = :id AND kind IN (1, 5, 6) LIMIT 1");
/* the mount's own version of the row waits to reach PostgreSQL */
DB_SQL(SQL_UPSERT_WAITS,
       "SELECT 1 FROM jobs WHERE image_id = :id AND kind = 3 LIMIT 1");
DB_SQL(SQL_UPDATE,
       "UPDATE images SET file_size = :file_size, s3_key = :s3_key,"
       " s3_thumbnail_key = :s3_thumbnail_key, s3_bucket = :s3_bucket,"
       " thumbnail_name = :thumbnail_name, thumbnail_size = :thumbnail_size,"
       " mime_type = :mime_type, width = :width, height = :height,"
       " sha256 = :sha256, error = '', uploaded_by = :uploaded_by,"
       " category = :category, filemaker_id = :filemaker_id,"
       " updated_at = :updated_at, evicted = 0 WHERE id = :id");
/* a row's thumbnail from elsewhere is its, unless an image of the mount
 * holds the name already */
DB_SQL(SQL_CLAIM, "UPDATE OR IGNORE images SET"
		  " thumb_claim = thumbnail_name WHERE id = :id");
DB_SQL_WHOLE(SQL_SCAN_BEGIN, "a full read of PostgreSQL marks every row",
	     "UPDATE images SET seen = 0 WHERE seen != 0");
/* no job of the row's own is waiting: a write, a sync, a thumbnail, a
 * move (a delete named by it is of keys it no longer holds, and does not
 * count) */
#define NO_OWN_JOB                                                             \
	" NOT EXISTS (SELECT 1 FROM jobs j WHERE j.image_id = images.id AND"   \
	" j.kind NOT IN (2, 4))"
DB_SQL_WHOLE(SQL_SCAN_GONE,
	     "after a full read of PostgreSQL, the rows it did not have",
	     "SELECT rowid" DB_IMAGE_SELECT " FROM images WHERE in_pg = 1 AND"
	     " seen = 0 AND state = 'uploaded' AND" NO_OWN_JOB " LIMIT 1");
DB_SQL(SQL_DELETE, "DELETE FROM images WHERE id = :id");
/* a row PostgreSQL no longer has goes, unless a write of the mount is
 * pending for it (it is synced again then), or under way */
#define NOT_WRITING                                                            \
	" AND NOT EXISTS (SELECT 1 FROM writing w WHERE"                       \
	" w.patient_id = images.patient_id AND w.batch_date ="                 \
	" images.batch_date AND w.name = images.name)"
DB_SQL(SQL_GONE_ID,
       "SELECT rowid" DB_IMAGE_SELECT " FROM images WHERE id = :id AND"
       " in_pg = 1 AND state = 'uploaded' AND" NO_OWN_JOB " AND NOT"
       " (patient_id = :patient_id AND batch_date = :batch_date AND name ="
       " :name)" NOT_WRITING);
DB_SQL(SQL_GONE_PATH,
       "SELECT rowid" DB_IMAGE_SELECT " FROM images WHERE patient_id ="
       " :patient_id AND batch_date = :batch_date AND name = :name AND"
       " in_pg = 1 AND state = 'uploaded' AND" NO_OWN_JOB NOT_WRITING);
DB_SQL(SQL_CURSOR, "SELECT pg_bound FROM sync_state WHERE dsn = :dsn");
DB_SQL(SQL_CURSOR_SET,
       "INSERT OR REPLACE INTO sync_state (one, dsn, pg_bound) VALUES (1,"
       " :dsn, :pg_bound)");

static int claim(struct db *db, const char *id)
{
	sqlite3_stmt *s = db_use(db, SQL_CLAIM);
	db_bind_text(s, ":id", id);
	return db_run(s);
}

/* The version old had of the image is replaced by r's, with another
 * thumbnail (written on another mount in another format, or at once with
 * this mount's): old's thumbnail is nobody's now, unless a row holds it,
 * as when the writer replaces its own (queue.c, thumb_replaced). A write
 * of it since, on any mount, keeps it (db/pgkey.h). */
static int old_thumb_goes(struct db *db, const struct db_image *old,
			  const struct db_image *r)
{
	const char *k = old->s3_thumbnail_key;
	if (!k[0] || !strcmp(k, r->s3_thumbnail_key) || !strcmp(k, r->s3_key))
		return 0;
	int held = db_key_held_locked(db, k);
	if (held)
		return held < 0 ? held : 0;
	return db_queue_delete(db, old->id, old->gen, k, "", old->updated_at,
			       NULL, NULL, NULL);
}

static int remote_locked(struct db *db, const struct db_image *r,
			 struct db_image *old)
{
	DB_ASSERT_LOCKED(db);
	struct db_image u = *r;
	sqlite3_stmt *s;
	int ret = db_get_locked(db, r->patient_id, r->batch_date, r->name, old);
	if (ret == -ENOENT) {
		s = db_use(db, SQL_PG_DELETE_OF);
		db_bind_image(s, r);
		int rc = sqlite3_step(s);
		sqlite3_reset(s);
		if (rc == SQLITE_ROW) /* removed here, and PostgreSQL has */
			return DB_REMOTE_KEPT; /* not heard yet */
		if (rc != SQLITE_DONE)
			return -EIO;
		snprintf(u.state, sizeof(u.state), "uploaded");
		u.gen = 0;
		u.error[0] = '\0';
		u.thumb_claim[0] = '\0';
		ret = db_insert_image_locked(db, &u, true);
		if (ret == 0)
			ret = claim(db, u.id);
		return ret ? ret : DB_REMOTE_NEW;
	}
	if (ret)
		return ret;
	s = db_use(db, SQL_SEEN);
	db_bind_text(s, ":id", old->id);
	if ((ret = db_run(s)))
		return ret;
	int newer = strcmp(r->updated_at, old->updated_at);
	if (strcmp(old->state, "uploaded") != 0 || newer < 0)
		return DB_REMOTE_KEPT; /* a local write is newer, or pending */
	if (newer == 0) {
		/* the same version: taken only when it moved to other keys
		 * (a folder renamed on another mount keeps updated_at), and
		 * unless this mount's own version waits to be sent */
		if (!strcmp(r->s3_key, old->s3_key) &&
		    !strcmp(r->s3_thumbnail_key, old->s3_thumbnail_key))
			return DB_REMOTE_KEPT;
		s = db_use(db, SQL_UPSERT_WAITS);
		db_bind_text(s, ":id", old->id);
		int64_t waits = db_int(s);
		if (waits != -ENOENT)
			return waits < 0 ? (int)waits : DB_REMOTE_KEPT;
	}
	s = db_use_path(db, SQL_BUSY_HERE, old->patient_id, old->batch_date,
			old->name);
	db_bind_text(s, ":id", old->id);
	int64_t busy = db_int(s);
	if (busy != -ENOENT)
		return busy < 0 ? (int)busy : DB_REMOTE_KEPT;
	snprintf(u.id, sizeof(u.id), "%s", old->id);
	s = db_use(db, SQL_UPDATE);
	db_bind_image(s, &u);
	if ((ret = db_run(s)) || (ret = claim(db, u.id)) ||
	    (ret = old_thumb_goes(db, old, r)))
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
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	int res = remote_locked(db, r, old);
	ret = db_tx_end(db, res < 0 ? res : 0);
	return ret ? ret : res;
}

int db_remote_apply_many(struct db *db, const struct db_image *rows, int n,
			 struct db_image *olds, int *results)
{
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	for (int i = 0; ret == 0 && i < n; i++) {
		results[i] = remote_locked(db, &rows[i], &olds[i]);
		if (results[i] < 0)
			ret = results[i];
	}
	return db_tx_end(db, ret);
}

int db_remote_scan_begin(struct db *db)
{
	db_lock(db);
	int ret = db_run(db_use(db, SQL_SCAN_BEGIN));
	db_unlock(db);
	return ret;
}

int db_remote_gone_next(struct db *db, struct db_image *out)
{
	db_lock(db);
	int ret = db_step_image(db_use(db, SQL_SCAN_GONE), out);
	if (ret == 0) {
		sqlite3_stmt *s = db_use(db, SQL_DELETE);
		db_bind_text(s, ":id", out->id);
		ret = db_run(s);
	}
	db_unlock(db);
	return ret;
}

/* Delete the row s finds (if it is one PostgreSQL had, uploaded, with no
 * job), into out. */
static int forget(struct db *db, sqlite3_stmt *s, struct db_image *out)
{
	int ret = db_step_image(s, out);
	if (ret == 0) {
		sqlite3_stmt *d = db_use(db, SQL_DELETE);
		db_bind_text(d, ":id", out->id);
		ret = db_run(d);
	}
	return ret;
}

int db_remote_forget(struct db *db, const char *id, const char *patient,
		     const char *date, const char *name, struct db_image *out)
{
	db_lock(db);
	sqlite3_stmt *s = db_use_path(db, SQL_GONE_ID, patient, date, name);
	db_bind_text(s, ":id", id);
	int ret = forget(db, s, out);
	db_unlock(db);
	return ret;
}

int db_remote_forget_path(struct db *db, const char *patient, const char *date,
			  const char *name, struct db_image *out)
{
	db_lock(db);
	int ret = forget(
	    db, db_use_path(db, SQL_GONE_PATH, patient, date, name), out);
	db_unlock(db);
	return ret;
}

int db_sync_cursor(struct db *db, const char *dsn, int64_t *bound)
{
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_CURSOR);
	db_bind_text(s, ":dsn", dsn);
	int64_t v = db_int(s);
	db_unlock(db);
	if (v < 0)
		return (int)v;
	*bound = v;
	return 0;
}

int db_sync_cursor_set(struct db *db, const char *dsn, int64_t bound)
{
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_CURSOR_SET);
	db_bind_text(s, ":dsn", dsn);
	db_bind_int64(s, ":pg_bound", bound);
	int ret = db_run(s);
	db_unlock(db);
	return ret;
}
