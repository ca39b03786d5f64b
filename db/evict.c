/* evict.c - the cache's state in the catalog: which images' spool files
 * gave their data back to the disk, and what is settled enough to. */
#include <errno.h>

#include "db/internal.h"

/* settled: uploaded, not being written, no thumbnail or upload on its way */
DB_SQL(SQL_EVICT,
       "UPDATE images SET evicted = 1 WHERE patient_id = :patient_id AND"
       " batch_date = :batch_date AND name = :name AND evicted = 0 AND"
       " state = 'uploaded' AND s3_key != '' AND NOT EXISTS (SELECT 1"
       " FROM jobs j WHERE j.image_id = images.id AND j.kind IN (1, 5, 6))"
       " AND NOT EXISTS (SELECT 1 FROM"
       " writing w WHERE w.patient_id = :patient_id AND"
       " w.batch_date = :batch_date AND w.name = :name)");
DB_SQL(SQL_EVICTED,
       "SELECT evicted FROM images WHERE patient_id = :patient_id AND"
       " batch_date = :batch_date AND name = :name");
DB_SQL(SQL_RESTORED,
       "UPDATE images SET evicted = 0 WHERE patient_id = :patient_id AND"
       " batch_date = :batch_date AND name = :name");
DB_SQL(SQL_THUMB_SETTLED,
       "SELECT 1 FROM images WHERE patient_id = :patient_id AND"
       " batch_date = :batch_date AND thumbnail_name = :name AND"
       " state = 'uploaded' AND s3_thumbnail_key != '' AND NOT EXISTS"
       " (SELECT 1 FROM jobs j WHERE j.image_id = images.id AND"
       " j.kind IN (1, 5, 6)) LIMIT 1");

int db_image_evict(struct db *db, const char *patient, const char *date,
		   const char *name)
{
	db_lock(db);
	int ret = db_path_stmt(db, SQL_EVICT, patient, date, name);
	if (ret == 0 && sqlite3_changes(db->conn) == 0)
		ret = -EBUSY;
	db_unlock(db);
	return ret;
}

/* The first column of the row sql returns for the path (db_int). */
static int path_int(struct db *db, const char *sql, const char *patient,
		    const char *date, const char *name)
{
	db_lock(db);
	int ret = (int)db_int(db_use_path(db, sql, patient, date, name));
	db_unlock(db);
	return ret;
}

int db_image_evicted(struct db *db, const char *patient, const char *date,
		     const char *name)
{
	int ret = path_int(db, SQL_EVICTED, patient, date, name);
	return ret > 0 ? 1 : ret;
}

int db_image_restored(struct db *db, const char *patient, const char *date,
		      const char *name)
{
	db_lock(db);
	int ret = db_path_stmt(db, SQL_RESTORED, patient, date, name);
	db_unlock(db);
	return ret;
}

int db_thumb_settled(struct db *db, const char *patient, const char *date,
		     const char *thumb_name)
{
	int ret = path_int(db, SQL_THUMB_SETTLED, patient, date, thumb_name);
	return ret == -ENOENT ? 0 : ret;
}
