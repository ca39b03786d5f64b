/* repair.c - what thumbfs verify --repair asks of the catalog: a row's
 * upload, thumbnail, sync or move queued again; a tombstone for an object
 * no row named (see repair.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "db/internal.h"
#include "db/repair.h"

DB_SQL(SQL_BACKFILL_ONE,
       "INSERT INTO jobs (kind, image_id, gen) VALUES (5, :id, :gen)");
DB_SQL(SQL_MOVE_ONE,
       "INSERT INTO jobs (kind, image_id, gen, key, key2, name) VALUES (6,"
       " :id, :gen, :s3_key, :s3_thumbnail_key, :patient_id || '/' ||"
       " :batch_date || '/' || :name)");
DB_SQL(SQL_THUMB_FORGET,
       "UPDATE images SET s3_thumbnail_key = '', thumbnail_name = '',"
       " thumbnail_size = 0, width = 0, height = 0, error = '' WHERE id = :id");

int db_repair(struct db *db, const char *id, enum db_repair what)
{
	struct db_image img;
	sqlite3_stmt *s;
	int ret = db_tx_begin(db);
	if (ret)
		return ret;
	ret = db_get_by_id_locked(db, id, &img);
	if (ret == 0 && what == DB_REPAIR_UPLOAD) {
		ret = db_queue_ingest_locked(db, img.id, img.gen);
	} else if (ret == 0 && what == DB_REPAIR_THUMBNAIL) {
		s = db_use(db, SQL_THUMB_FORGET);
		db_bind_text(s, ":id", img.id);
		ret = db_run(s);
		if (ret == 0) {
			s = db_use(db, SQL_BACKFILL_ONE);
			db_bind_text(s, ":id", img.id);
			db_bind_int64(s, ":gen", img.gen);
			ret = db_run(s);
		}
	} else if (ret == 0 && what == DB_REPAIR_MOVE) {
		s = db_use(db, SQL_MOVE_ONE);
		db_bind_image(s, &img);
		ret = db_run(s);
	} else if (ret == 0) {
		ret = db_queue_sync(db, DB_JOB_PG_UPSERT, img.id,
				    img.patient_id, img.batch_date, img.name);
	}
	return db_tx_end(db, ret);
}

int db_tombstone_orphan(struct db *db, const char *bucket, const char *key,
			int64_t size, const char *who)
{
	struct db_tombstone t;
	memset(&t, 0, sizeof(t));
	db_uuid(t.id);
	snprintf(t.s3_bucket, sizeof(t.s3_bucket), "%s", bucket);
	snprintf(t.s3_key, sizeof(t.s3_key), "%s", key);
	const char *base = strrchr(key, '/');
	snprintf(t.name, sizeof(t.name), "%s", base ? base + 1 : key);
	t.file_size = size;
	snprintf(t.deleted_by, sizeof(t.deleted_by), "%s", who);
	db_now(t.deleted_at);
	db_lock(db);
	int ret = db_tomb_insert_locked(db, &t);
	db_unlock(db);
	return ret;
}
