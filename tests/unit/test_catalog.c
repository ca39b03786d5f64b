/* test_catalog.c - rows, generations, jobs, claims across a reopen. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db/catalog.h"
#include "db/conn.h"
#include "db/evict.h"
#include "db/queue.h"
#include "db/remote.h"
#include "tests/unit/check.h"

static struct db_image uploaded(const struct db_image *img)
{
	struct db_image d = *img;
	snprintf(d.s3_key, sizeof(d.s3_key), "k/%s", img->name);
	snprintf(d.s3_thumbnail_key, sizeof(d.s3_thumbnail_key), "k/t_%s",
		 img->name);
	snprintf(d.thumbnail_name, sizeof(d.thumbnail_name), "a_thumb.jpg");
	d.width = 640;
	d.height = 480;
	return d;
}

int main(void)
{
	char dir[] = "/tmp/thumbfs-db-XXXXXX", err[512];
	struct db_image img, d;
	struct db_job job, job2;
	struct db_counts c;
	bool current;
	char cmd[600];
	CHECK(mkdtemp(dir) != NULL);
	struct db *db = db_open(dir, err, sizeof(err));
	CHECK(db != NULL);
	if (!db)
		return check_report("test_catalog");

	/* a write makes a spooled row and one job */
	CHECK_INT(db_image_written(db, "P1", "2025-11-10", "a.jpg", 10, "me"),
		  0);
	CHECK_INT(db_image_get(db, "P1", "2025-11-10", "a.jpg", &img), 0);
	CHECK(!strcmp(img.state, "spooled"));
	CHECK_INT(img.gen, 1);
	CHECK_INT(strlen(img.id), 36);
	/* a second write before the job ran reuses the job */
	CHECK_INT(db_image_written(db, "P1", "2025-11-10", "a.jpg", 20, "me"),
		  0);
	CHECK_INT(db_counts(db, &c), 0);
	CHECK_INT(c.jobs_ingest, 1);
	CHECK_INT(db_job_claim(db, &job), 0);
	CHECK_INT(job.gen, 2);
	CHECK_INT(db_job_claim(db, &job2), -ENOENT); /* claimed once */

	/* written again while the job runs: the job's result is stale */
	CHECK_INT(db_image_written(db, "P1", "2025-11-10", "a.jpg", 30, "me"),
		  0);
	/* and the new job waits for it: its upload must land last */
	CHECK_INT(db_job_claim(db, &job2), -ENOENT);
	CHECK_INT(db_image_get(db, "P1", "2025-11-10", "a.jpg", &img), 0);
	d = uploaded(&img);
	CHECK_INT(db_ingest_done(db, &job, &d, NULL, &current), 0);
	CHECK(!current);
	CHECK_INT(db_image_get(db, "P1", "2025-11-10", "a.jpg", &img), 0);
	CHECK(!strcmp(img.state, "spooled"));

	/* a crash: the claim is gone after reopening, the job is done again */
	CHECK_INT(db_job_claim(db, &job), 0);
	db_free(db);
	db = db_open(dir, err, sizeof(err));
	CHECK(db != NULL);
	CHECK_INT(db_job_claim(db, &job2), 0);
	CHECK_INT(job2.id, job.id);
	d = uploaded(&img);
	CHECK_INT(db_ingest_done(db, &job2, &d, NULL, &current), 0);
	CHECK(current);
	CHECK_INT(
	    db_image_get_by_thumb(db, "P1", "2025-11-10", "a_thumb.jpg", &img),
	    0);
	CHECK(!strcmp(img.state, "uploaded"));
	CHECK_INT(img.width, 640);
	CHECK(!strcmp(img.s3_key, "k/a.jpg"));

	/* reconcile: a known, uploaded file of the same size is left alone;
	 * an unknown one is queued */
	CHECK_INT(db_reconcile(db, "P1", "2025-11-10", "a.jpg", 30, "me"), 0);
	CHECK_INT(db_reconcile(db, "P1", "2025-11-10", "b.jpg", 5, "me"), 1);
	CHECK_INT(db_reconcile(db, "P1", "2025-11-10", "b.jpg", 5, "me"), 0);

	/* removal queues the deletion of both objects */
	CHECK_INT(db_image_removed(db, "P1", "2025-11-10", "a.jpg", NULL), 0);
	CHECK_INT(db_image_get(db, "P1", "2025-11-10", "a.jpg", &img), -ENOENT);
	CHECK_INT(db_image_removed(db, "P1", "2025-11-10", "a.jpg", NULL),
		  -ENOENT);
	int deletes = 0;
	while (db_job_claim(db, &job) == 0) {
		if (job.kind == DB_JOB_DELETE) {
			deletes++;
			CHECK(!strcmp(job.key, "k/a.jpg"));
			CHECK(!strcmp(job.key2, "k/t_a.jpg"));
		}
		CHECK_INT(db_job_retry(db, job.id, 100, "later"), 0);
	}
	CHECK_INT(deletes, 1);

	/* with sync on: done and removed queue PostgreSQL jobs, claimed in
	 * strict order, the head holding back what is behind it */
	db_set_pg_sync(db, true);
	CHECK_INT(db_image_written(db, "P2", "2025-01-02", "s.png", 1, "me"),
		  0);
	CHECK_INT(db_image_get(db, "P2", "2025-01-02", "s.png", &img), 0);
	job.id = 0;
	while (db_job_claim(db, &job) == 0 && job.kind != DB_JOB_INGEST)
		;
	CHECK(job.kind == DB_JOB_INGEST && !strcmp(job.image_id, img.id));
	d = uploaded(&img);
	CHECK_INT(db_ingest_done(db, &job, &d, NULL, &current), 0);
	CHECK(current);
	CHECK_INT(db_image_removed(db, "P2", "2025-01-02", "s.png", "nurse"),
		  0);
	/* its objects stay until the tombstone is in PostgreSQL */
	CHECK_INT(db_job_claim(db, &job), -ENOENT);
	/* which still has the row: a full read does not bring it back */
	struct db_image old;
	CHECK_INT(db_remote_apply(db, &d, &old), DB_REMOTE_KEPT);
	CHECK_INT(db_image_get(db, "P2", "2025-01-02", "s.png", &old), -ENOENT);
	CHECK_INT(db_counts(db, &c), 0);
	CHECK_INT(c.jobs_sync, 2);
	struct db_job two[4];
	CHECK_INT(db_sync_claim(db, two, 4), 2); /* both, in order */
	CHECK(two[0].kind == DB_JOB_PG_UPSERT &&
	      !strcmp(two[0].image_id, img.id));
	CHECK(two[1].kind == DB_JOB_PG_DELETE && !strcmp(two[1].key, "P2") &&
	      !strcmp(two[1].key2, "2025-01-02") &&
	      !strcmp(two[1].name, "s.png"));
	CHECK_INT(db_sync_claim(db, two + 2, 2), -ENOENT); /* all claimed */
	/* the first failed: it waits, and the second goes back behind it */
	CHECK_INT(db_job_retry(db, two[0].id, 100, "postgres away"), 0);
	CHECK_INT(db_job_release(db, two[1].id), 0);
	CHECK_INT(db_sync_claim(db, two + 2, 2), -EAGAIN);
	CHECK_INT(db_job_retry(db, two[0].id, 0, "back"), 0);
	CHECK_INT(db_sync_claim(db, two, 4), 2);
	CHECK_INT(two[1].attempts, 0); /* released, not counted as tried */
	CHECK_INT(db_sync_done(db, two, 2), 0);
	CHECK_INT(db_sync_claim(db, two, 4), -ENOENT);
	struct db_tombstone t;
	CHECK_INT(db_tombstone_get(db, two[1].image_id, &t), 0);
	CHECK(!strcmp(t.name, "s.png") && !strcmp(t.patient_id, "P2") &&
	      !strcmp(t.s3_key, "k/s.png") && !strcmp(t.image_id, img.id) &&
	      !strcmp(t.deleted_by, "nurse") && !t.objects_kept &&
	      t.deleted_at[0]);
	CHECK_INT(db_job_claim(db, &job), 0); /* now the store's delete */
	CHECK(job.kind == DB_JOB_DELETE && !strcmp(job.key, "k/s.png") &&
	      !strcmp(job.key2, "k/t_s.png"));
	CHECK_INT(db_job_done(db, job.id), 0);

	/* [store] delete = keep: a tombstone that says so, and no delete */
	db_set_keep_objects(db, true);
	CHECK_INT(db_image_written(db, "P2", "2025-01-02", "k.png", 1, "me"),
		  0);
	CHECK_INT(db_image_get(db, "P2", "2025-01-02", "k.png", &img), 0);
	CHECK_INT(db_job_claim(db, &job), 0);
	d = uploaded(&img);
	CHECK_INT(db_ingest_done(db, &job, &d, NULL, &current), 0);
	CHECK_INT(db_image_removed(db, "P2", "2025-01-02", "k.png", "nurse"),
		  0);
	CHECK_INT(db_sync_claim(db, two, 4), 2);
	CHECK_INT(db_sync_done(db, two, 2), 0);
	CHECK_INT(db_tombstone_get(db, two[1].image_id, &t), 0);
	CHECK(t.objects_kept && !strcmp(t.name, "k.png"));
	CHECK_INT(db_job_claim(db, &job), -ENOENT);
	db_set_keep_objects(db, false);
	/* the name in use again when the tombstone arrives: its key holds
	 * the new content, which is not deleted */
	CHECK_INT(db_image_written(db, "P2", "2025-01-02", "r.png", 1, "me"),
		  0);
	CHECK_INT(db_image_get(db, "P2", "2025-01-02", "r.png", &img), 0);
	CHECK_INT(db_job_claim(db, &job), 0);
	d = uploaded(&img);
	CHECK_INT(db_ingest_done(db, &job, &d, NULL, &current), 0);
	CHECK_INT(db_image_removed(db, "P2", "2025-01-02", "r.png", NULL), 0);
	CHECK_INT(db_image_written(db, "P2", "2025-01-02", "r.png", 2, "me"),
		  0);
	CHECK_INT(db_sync_claim(db, two, 4), 2);
	CHECK_INT(db_sync_done(db, two, 2), 0);
	CHECK_INT(db_job_claim(db, &job), 0);
	CHECK(job.kind == DB_JOB_INGEST); /* the new content's, no delete */
	CHECK_INT(db_job_retry(db, job.id, 100, "later"), 0);
	CHECK_INT(db_job_claim(db, &job), -ENOENT);
	CHECK_INT(db_counts(db, &c), 0);
	CHECK_INT(c.jobs_retrying, 3); /* and r.png's ingest */

	/* writes the writer was never told are saved, left by a daemon that
	 * died: an uploaded row keeps its content, anything else goes */
	db_set_pg_sync(db, false);
	CHECK_INT(db_image_written(db, "P3", "2025-01-03", "up.jpg", 9, "me"),
		  0);
	CHECK_INT(db_image_get(db, "P3", "2025-01-03", "up.jpg", &img), 0);
	while (db_job_claim(db, &job) == 0 && strcmp(job.image_id, img.id))
		;
	CHECK(!strcmp(job.image_id, img.id));
	d = uploaded(&img);
	CHECK_INT(db_ingest_done(db, &job, &d, NULL, &current), 0);
	CHECK_INT(db_image_writing(db, "P3", "2025-01-03", "up.jpg"), 0);
	CHECK_INT(db_image_writing(db, "P3", "2025-01-03", "new.jpg"), 0);
	CHECK_INT(db_image_writing(db, "P3", "2025-01-03", "done.jpg"), 0);
	CHECK_INT(db_image_written(db, "P3", "2025-01-03", "done.jpg", 4, "me"),
		  0);
	/* an ingest that read the file before this write is not current */
	CHECK_INT(db_image_get(db, "P3", "2025-01-03", "up.jpg", &d), 0);
	CHECK_INT(d.gen, img.gen + 1);
	db_free(db);
	db = db_open(dir, err, sizeof(err)); /* the daemon died */
	CHECK(db != NULL);
	struct db_image w;
	int seen = 0;
	while (db_writing_first(db, &w) == 0 && seen < 5) {
		bool kept;
		seen++;
		CHECK_INT(db_writing_abort(db, w.patient_id, w.batch_date,
					   w.name, &kept),
			  0);
		CHECK(kept == !strcmp(w.name, "up.jpg"));
		CHECK(!strcmp(w.name, "up.jpg") || !strcmp(w.name, "new.jpg"));
	}
	CHECK_INT(seen, 2); /* done.jpg was saved */
	CHECK_INT(db_image_get(db, "P3", "2025-01-03", "up.jpg", &img), 0);
	CHECK(!strcmp(img.state, "uploaded"));
	CHECK_INT(db_image_get(db, "P3", "2025-01-03", "new.jpg", &img),
		  -ENOENT);
	CHECK_INT(db_image_get(db, "P3", "2025-01-03", "done.jpg", &img), 0);

	/* the cache: only a settled image may be evicted; a write clears it */
	db_set_pg_sync(db, false);
	CHECK_INT(db_image_evict(db, "P3", "2025-01-03", "done.jpg"), -EBUSY);
	while (db_job_claim(db, &job) == 0 && job.kind != DB_JOB_INGEST)
		db_job_done(db, job.id);
	CHECK(job.kind == DB_JOB_INGEST && !strcmp(job.image_id, img.id));
	d = uploaded(&img);
	snprintf(d.thumbnail_name, sizeof(d.thumbnail_name), "done_thumb.jpg");
	CHECK_INT(db_thumb_settled(db, "P3", "2025-01-03", "done_thumb.jpg"),
		  0);
	CHECK_INT(db_ingest_done(db, &job, &d, NULL, &current), 0);
	CHECK_INT(db_thumb_settled(db, "P3", "2025-01-03", "done_thumb.jpg"),
		  1);
	CHECK_INT(db_image_evicted(db, "P3", "2025-01-03", "done.jpg"), 0);
	CHECK_INT(db_image_evict(db, "P3", "2025-01-03", "done.jpg"), 0);
	CHECK_INT(db_image_evicted(db, "P3", "2025-01-03", "done.jpg"), 1);
	CHECK_INT(db_image_evict(db, "P3", "2025-01-03", "done.jpg"), -EBUSY);
	CHECK_INT(db_image_restored(db, "P3", "2025-01-03", "done.jpg"), 0);
	CHECK_INT(db_image_evicted(db, "P3", "2025-01-03", "done.jpg"), 0);
	CHECK_INT(db_image_evict(db, "P3", "2025-01-03", "done.jpg"), 0);
	CHECK_INT(db_image_writing(db, "P3", "2025-01-03", "done.jpg"), 0);
	CHECK_INT(db_image_evicted(db, "P3", "2025-01-03", "done.jpg"), 0);
	CHECK_INT(db_image_evict(db, "P3", "2025-01-03", "done.jpg"), -EBUSY);
	CHECK_INT(db_image_evicted(db, "P3", "2025-01-03", "nope.jpg"),
		  -ENOENT);

	/* backfill: a stored row with no thumbnail gets one job, once */
	struct db_image seed;
	memset(&seed, 0, sizeof(seed));
	db_uuid(seed.id);
	snprintf(seed.patient_id, sizeof(seed.patient_id), "P4");
	snprintf(seed.batch_date, sizeof(seed.batch_date), "2019-05-06");
	snprintf(seed.name, sizeof(seed.name), "old.jpg");
	snprintf(seed.s3_key, sizeof(seed.s3_key), "fm/P4/old.jpg");
	snprintf(seed.updated_at, sizeof(seed.updated_at),
		 "2019-05-06T10:00:00Z");
	snprintf(seed.created_at, sizeof(seed.created_at),
		 "2019-05-06T10:00:00Z");
	CHECK_INT(db_remote_apply(db, &seed, &old), DB_REMOTE_NEW);
	CHECK_INT(db_backfill_queue(db, "P9", NULL), 0);
	CHECK_INT(db_backfill_queue(db, "P4", "2019-05-06"), 1);
	CHECK_INT(db_backfill_queue(db, NULL, NULL), 0); /* one waits */
	CHECK_INT(db_counts(db, &c), 0);
	CHECK_INT(c.jobs_backfill, 1);
	while (db_job_claim(db, &job) == 0 && job.kind != DB_JOB_BACKFILL)
		db_job_done(db, job.id);
	CHECK(job.kind == DB_JOB_BACKFILL && !strcmp(job.image_id, seed.id));
	CHECK_INT(db_backfill_failed(db, &job, "not an image"), 0);
	CHECK_INT(db_backfill_queue(db, NULL, NULL), 0); /* the error stays */
	CHECK_INT(db_image_get(db, "P4", "2019-05-06", "old.jpg", &d), 0);
	CHECK(!strcmp(d.error, "not an image") && !strcmp(d.state, "uploaded"));

	/* the write-ahead log, in a new catalog: db_checkpoint() keeps it
	 * near DB_WAL_PAGES, and a commit never checkpoints on its own */
	db_free(db);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK_INT(system(cmd), 0);
	CHECK(mkdtemp(strcpy(dir, "/tmp/thumbfs-db-XXXXXX")) != NULL);
	db = db_open(dir, err, sizeof(err));
	if (!db)
		return check_report("test_catalog");
	char wal[600], name[32];
	struct stat st;
	snprintf(wal, sizeof(wal), "%s/catalog.db-wal", dir);
	CHECK_INT(db_checkpoint(db), 0); /* not due yet */
	off_t most = 0;
	int copied = 0;
	for (int i = 0; i < 6000; i++) {
		snprintf(name, sizeof(name), "w%03d.jpg", i % 600);
		CHECK_INT(
		    db_image_written(db, "P5", "2025-11-10", name, i, "me"), 0);
		if (i < 3000) {
			int r = db_checkpoint(db);
			CHECK(r >= 0);
			copied += r;
			if (stat(wal, &st) == 0 && st.st_size > most)
				most = st.st_size;
		}
	}
	CHECK(copied > 0);
	CHECK(most < (off_t)(DB_WAL_PAGES + 100) * (4096 + 24));
	CHECK(stat(wal, &st) == 0 &&
	      st.st_size > (off_t)2 * DB_WAL_PAGES * (4096 + 24));
	CHECK_INT(db_checkpoint(db), 1);
	CHECK_INT(db_image_get(db, "P5", "2025-11-10", "w123.jpg", &d), 0);
	CHECK_INT(d.file_size, 5523);
	/* a rowid is never given twice, not even after the newest row is
	 * deleted and the catalog reopened: the kernel's node id of an
	 * image is its rowid (fs/rowino.h), and one it still holds must
	 * never name another patient's image */
	CHECK_INT(db_image_written(db, "P6", "2025-11-10", "new.jpg", 1, "me"),
		  0);
	CHECK_INT(db_image_get(db, "P6", "2025-11-10", "new.jpg", &img), 0);
	CHECK(img.rowid > 0);
	CHECK_INT(db_image_get_by_rowid(db, img.rowid, &d), 0);
	CHECK(!strcmp(d.id, img.id));
	CHECK_INT(db_image_removed(db, "P6", "2025-11-10", "new.jpg", "me"), 0);
	CHECK_INT(db_image_get_by_rowid(db, img.rowid, &d), -ENOENT);
	db_free(db);
	db = db_open(dir, err, sizeof(err));
	CHECK(db != NULL);
	CHECK_INT(
	    db_image_written(db, "P7", "2025-11-10", "other.jpg", 1, "me"), 0);
	CHECK_INT(db_image_get(db, "P7", "2025-11-10", "other.jpg", &d), 0);
	CHECK(d.rowid > img.rowid);
	CHECK_INT(db_image_get_by_rowid(db, img.rowid, &d), -ENOENT);
	db_free(db);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK_INT(system(cmd), 0);
	return check_report("test_catalog");
}
