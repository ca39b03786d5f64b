/*
 * catalog.h - the local SQLite catalog of images and the job queue.
 *
 * Knows nothing of FUSE, of thumbnails or of the store. One connection, in
 * WAL mode, guarded by one mutex inside struct db: every function here may be
 * called from any thread, and none calls back into its caller (rows are
 * handed out as copies). An image's state change and the job that follows
 * it are written in one transaction. The files: conn.c (connection,
 * statements, transactions), schema.c, catalog.c (images), queue.c (jobs),
 * remote.c (rows from PostgreSQL), evict.c (the cache's state), pg.c.
 *
 * Each write of an image bumps its generation (gen). A job carries the gen it
 * was queued for; finishing it updates the row only if the gen is unchanged,
 * so a file rewritten while its job ran is simply done again by the next job.
 * Claims live in memory: db_open() releases every claim, so after a crash
 * every unfinished job is done again, never skipped.
 *
 * Actions return 0 or -errno (-ENOENT: no such row or job; -EIO: SQLite
 * failed, with the reason in err where there is one).
 */
#ifndef DB_CATALOG_H
#define DB_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DB_KEY_MAX 1024

struct db;

struct db_image {
	char id[37]; /* uuid */
	char patient_id[65];
	char batch_date[11];
	char name[256]; /* original_filename */
	char state[16]; /* "spooled", "uploaded" */
	int64_t gen;
	int64_t file_size;
	char s3_key[DB_KEY_MAX];
	char s3_thumbnail_key[DB_KEY_MAX];
	char s3_bucket[DB_KEY_MAX];
	char thumbnail_name[300]; /* "IMG_1_thumb.jpg", "" when none */
	int64_t thumbnail_size;
	char mime_type[64];
	int width;
	int height;
	char sha256[65];
	char error[256]; /* why there is no thumbnail, "" when there is */
	char uploaded_by[256];
	char category[51];	/* from the user.category xattr */
	char filemaker_id[101]; /* from the user.filemaker_id xattr */
	char created_at[32];	/* ISO 8601, UTC */
	char updated_at[32];
	/* the thumbnail name the image holds in its date ("": none yet),
	 * claimed before its thumbnail is stored (db_thumb_claim) */
	char thumb_claim[300];
};

enum db_job_kind {
	DB_JOB_INGEST = 1, /* thumbnail and upload image_id at gen */
	DB_JOB_DELETE = 2, /* remove key and key2 from the store */
	/* PostgreSQL sync, done by one thread in queue order: */
	DB_JOB_PG_UPSERT = 3, /* upsert image_id as the catalog has it now */
	DB_JOB_PG_DELETE = 4, /* delete (key = patient, key2 = date, name);
			       * image_id: its tombstone's id, or "" */
	DB_JOB_BACKFILL = 5,  /* make the missing thumbnail of image_id, a
			       * row the store has (an import from before
			       * thumbnails) */
	DB_JOB_MOVE = 6,      /* image_id's directory was renamed: copy its
			       * objects (key, key2) to its new keys */
};

struct db_job {
	int64_t id;
	enum db_job_kind kind;
	char image_id[37];
	int64_t gen;
	char key[DB_KEY_MAX];
	char key2[DB_KEY_MAX];
	char name[256];
	int attempts;
	int wrong;	    /* of them, tries the store got or kept wrong */
	int64_t not_before; /* not to be tried before (Unix time) */
};

/* An unlinked image that the store had: recorded before its objects are
 * deleted, and sent to PostgreSQL (thumbfs_tombstone). */
struct db_tombstone {
	char id[37];
	char image_id[37];
	char patient_id[65];
	char batch_date[11];
	char name[256];
	char s3_bucket[256];
	char s3_key[DB_KEY_MAX];
	char s3_thumbnail_key[DB_KEY_MAX];
	char sha256[65];
	int64_t file_size;
	char deleted_by[256];
	char deleted_at[32];
	bool objects_kept;
};

struct db_counts {
	int64_t spooled;
	int64_t uploaded;	/* images (image/ types) */
	int64_t uploaded_other; /* other files: PDFs, empty files */
	int64_t thumb_errors;
	int64_t jobs_ingest;
	int64_t jobs_delete;
	int64_t jobs_retrying; /* jobs that failed at least once */
	int64_t jobs_sync;     /* PostgreSQL upserts and deletes waiting */
	int64_t jobs_backfill; /* thumbnails to make for stored rows */
	int64_t jobs_move;     /* stored images to copy to their new keys */
	int64_t jobs_parked;   /* failed for good, until retried */
};

/* Open (creating if needed) DIR/catalog.db, migrate the schema forward and
 * release every claim and parked job (this process runs the jobs now).
 * NULL on failure, with err set. */
struct db *db_open(const char *dir, char *err, size_t errlen);

/* The same for a command beside a running mount: claims and parked jobs
 * are left as they are. */
struct db *db_open_beside(const char *dir, char *err, size_t errlen);

/* Every commit so far made durable. Commits are not synced one by one (WAL
 * with synchronous = NORMAL: a crash of the process loses none, a power
 * cut may lose the last ones); this syncs the log once for all of them,
 * where a promise needs it (fsync, and the mark before a write). */
int db_sync(struct db *db);

/* Whether the last mount of this catalog ended cleanly (its loop over,
 * its runners stopped): 1, 0 (it crashed, or never ran), or -errno. A
 * mount says it is running (false) before it answers, and ended (true)
 * last; each is synced. */
int db_ended_clean(struct db *db);
int db_set_ended_clean(struct db *db, bool clean);
void db_free(struct db *db);

/* SQLite's own log (which system call failed, with its errno, behind a
 * "disk I/O error") to fn(code, message); before any other db_ call. */
void db_set_logger(void (*fn)(int code, const char *msg));

/* Copy the write-ahead log into the database once it holds DB_WAL_PAGES or
 * more, on a connection of its own, without waiting for readers or writers
 * (SQLite's passive checkpoint). Commits never checkpoint themselves: one
 * that did would make the close() that caused it wait for two fsyncs. A
 * background thread calls this; returns 1 when it checkpointed, 0 when
 * there was nothing to do or another thread was at it, -errno on failure. */
#define DB_WAL_PAGES 1000
int db_checkpoint(struct db *db);

/* Wait until the log has DB_WAL_PAGES pages (a commit says so at once),
 * or ms milliseconds: the checkpointer's wait. */
void db_checkpoint_wait(struct db *db, int ms);

/* The image (patient, date, name) was written: create or update its row as
 * spooled, bump its gen, and queue its ingest, in one transaction. */
int db_image_written(struct db *db, const char *patient, const char *date,
		     const char *name, int64_t size, const char *uploaded_by);

/* The image is open for writing and its writer has not been told it is
 * saved: recorded, so that a daemon that dies now leaves it whole or
 * absent (db_writing_abort), and any ingest on its way is discarded.
 * db_image_written (close, fsync) ends it. */
int db_image_writing(struct db *db, const char *patient, const char *date,
		     const char *name);

/* The change db_image_writing announced did not happen (the truncate
 * after it failed): the mark goes, the content as it was stays due (its
 * ingest queued again if it was not uploaded), and evicted as it was. */
int db_writing_undo(struct db *db, const char *patient, const char *date,
		    const char *name, bool evicted);

/* The next row still spooled (written here, not uploaded yet) after the
 * one whose id is after ("" for the first), into out; after becomes its
 * id. -ENOENT when there is no more. */
int db_spooled_next(struct db *db, char *after, size_t after_len,
		    struct db_image *out);

/* What thumbfs verify --repair asks of a row: its content uploaded again
 * from the spool (an ingest job), its thumbnail made again from the
 * stored original (the thumbnail forgotten, a backfill job), its row
 * sent to PostgreSQL again (an upsert job, with sync on), or its objects
 * moved to the keys of its path (a move job). */
enum db_repair {
	DB_REPAIR_UPLOAD,
	DB_REPAIR_THUMBNAIL,
	DB_REPAIR_SYNC,
	DB_REPAIR_MOVE
};
int db_repair(struct db *db, const char *id, enum db_repair what);

/* A tombstone for an object no row named, deleted by who (verify
 * --delete-orphans): its bucket, key and size. */
int db_tombstone_orphan(struct db *db, const char *bucket, const char *key,
			int64_t size, const char *who);

/* At mount: the first image left open for writing by a daemon that died
 * (patient_id, batch_date and name set), or -ENOENT. */
int db_writing_first(struct db *db, struct db_image *out);

/* Forget that write, once its spool file is gone: a row whose content was
 * uploaded keeps it (*kept: the store has it whole); any other row is
 * removed as by db_image_removed. */
int db_writing_abort(struct db *db, const char *patient, const char *date,
		     const char *name, bool *kept);

/* The image was removed from the mount by who (NULL: thumbfs itself):
 * delete its row and, if it had objects in the store, record its tombstone
 * and queue their deletion - after the tombstone reaches PostgreSQL when
 * sync is on, never when objects are kept. -ENOENT if there was none. */
int db_image_removed(struct db *db, const char *patient, const char *date,
		     const char *name, const char *who);

/* The tombstone id (-ENOENT: none). */
int db_tombstone_get(struct db *db, const char *id, struct db_tombstone *out);

int db_image_get(struct db *db, const char *patient, const char *date,
		 const char *name, struct db_image *out);
int db_image_get_by_id(struct db *db, const char *id, struct db_image *out);
int db_image_get_by_thumb(struct db *db, const char *patient, const char *date,
			  const char *thumb_name, struct db_image *out);

/* At mount: queue an ingest for a spool file the catalog does not know,
 * whose size differs from its row, or that is spooled with no job.
 * Returns 1 if it queued one, 0 if not, or -errno. */
int db_reconcile(struct db *db, const char *patient, const char *date,
		 const char *name, int64_t size, const char *uploaded_by);

/* Claim the oldest store job (ingest, delete, backfill) that is due and
 * whose image has no other store job claimed (so that an older upload
 * never lands after a newer one). -ENOENT when there is none. */
int db_job_claim(struct db *db, struct db_job *job);

/* Claim up to max of the oldest PostgreSQL jobs, in strict queue order
 * (stopping at the first that is not due): returns how many were claimed
 * into jobs, -EAGAIN when the oldest is not due yet (nothing behind it is
 * claimed before it), -ENOENT when there is none. */
int db_sync_claim(struct db *db, struct db_job *jobs, int max);

/* n claimed PostgreSQL jobs are done: removed, and their images marked as
 * in PostgreSQL, in one transaction. */
int db_sync_done(struct db *db, const struct db_job *jobs, int n);

/* Give a claimed job back untried (no attempt counted). */
int db_job_release(struct db *db, int64_t job_id);

/* With sync on, an ingest that is done queues DB_JOB_PG_UPSERT and a
 * removal queues DB_JOB_PG_DELETE, in the same transaction. Off by
 * default. */
void db_set_pg_sync(struct db *db, bool on);

/* [store] delete = keep: removals leave the store's objects (for a bucket
 * with versioning or retention rules); their tombstones say so. */
void db_set_keep_objects(struct db *db, bool on);

/* An ingest finished: if the row is still at job->gen, record img's upload
 * fields (keys, sizes, mime, width, height, sha256, thumbnail, error) and
 * mark it uploaded; a thumbnail the row had under another key (the format
 * changed, or there is none now) has its removal queued, unless another
 * image holds it. The job is removed either way. *current is set false
 * when the row had moved on (or was gone; then, unless the name was written
 * again or another image holds them, the removal of img's keys is queued).
 * img's patient_id, batch_date and name must be set. */
int db_ingest_done(struct db *db, const struct db_job *job,
		   const struct db_image *img, bool *current);

/* Claim the thumbnail name for image id, to be stored under key: 0 when
 * it is the image's now, -EEXIST when another image of its date holds it
 * or an object under key waits to be deleted, -ENOENT when the image is
 * gone. A claim is the image's until it claims another or is removed. */
int db_thumb_claim(struct db *db, const char *id, const char *name,
		   const char *key);

/* A job failed for a reason no retry can fix (the store refuses the
 * request for good; content stored wrong too often): parked with why,
 * not claimed again until db_jobs_unpark(). */
int db_job_park(struct db *db, int64_t job_id, const char *why);

/* Parked jobs go again: all (patient NULL), or those of a patient, of a
 * date of it, or of one image. Returns how many, or -errno. */
int db_jobs_unpark(struct db *db, const char *patient, const char *date,
		   const char *name);

/* The store answers again: store jobs waiting out a backoff go now.
 * Returns how many, or -errno. */
int db_jobs_go(struct db *db);

/* 1 with why set if a job of image id is parked, 0 if none, -errno. */
int db_image_parked(struct db *db, const char *id, char *why, size_t n);

/* Remove a finished job. */
int db_job_done(struct db *db, int64_t job_id);

/* Release a claimed job to be tried again in delay_s seconds; wrong: the
 * store got or kept its content wrong (counted in job->wrong). */
int db_job_retry(struct db *db, int64_t job_id, int delay_s, const char *error);
int db_job_wrong(struct db *db, int64_t job_id, int delay_s, const char *error);

int db_counts(struct db *db, struct db_counts *out);

/* What the catalog keeps of what went wrong, whoever mounted it: images
 * without a thumbnail for a reason, and jobs failed for good; at most n of
 * each, newest first. A problem goes with its file (its row). fn(arg,
 * "ID/DATE/NAME" or the job's key, "no thumbnail: why" or "failed for
 * good: why"). 0 or -EIO. */
int db_problems(struct db *db, int n,
		void (*fn)(void *arg, const char *path, const char *what),
		void *arg);

/*
 * Rows from PostgreSQL: what other mounts and the web app wrote.
 */
enum db_remote_result {
	DB_REMOTE_KEPT = 0,	/* the local row stays as it is */
	DB_REMOTE_NEW = 1,	/* a row the catalog did not have */
	DB_REMOTE_REPLACED = 2, /* newer content: *old is what it replaced */
};

/* Apply r (matched by patient, date and name; r->id is used for a new row)
 * as uploaded content that lives in the store. A local row with a write
 * pending, or updated later than r, is kept. Returns an enum
 * db_remote_result or -errno. */
int db_remote_apply(struct db *db, const struct db_image *r,
		    struct db_image *old);

/* The same for n rows in one transaction (a full read applies hundreds at
 * a time): results[i] and olds[i] are each row's. 0 or -errno (and then
 * none is applied). */
int db_remote_apply_many(struct db *db, const struct db_image *rows, int n,
			 struct db_image *olds, int *results);

/* A full read of PostgreSQL begins with db_remote_scan_begin() and ends
 * by calling db_remote_gone_next() until it returns -ENOENT: rows that
 * were in PostgreSQL (synced by us or applied from it), are uploaded, have
 * no job, and were not applied since scan_begin are gone there; each call
 * deletes one of them and hands it out in out (0), for the caller to drop
 * its local copies. */
int db_remote_scan_begin(struct db *db);
int db_remote_gone_next(struct db *db, struct db_image *out);

/* A row PostgreSQL no longer has (by its id, unless it is at patient,
 * date, name already, where PostgreSQL has it now; or at a path): deleted
 * and handed out in out (0), for the caller to drop its local copies, when
 * PostgreSQL had it, it is uploaded and no job of the mount is pending
 * for it; -ENOENT when there is no such row. */
int db_remote_forget(struct db *db, const char *id, const char *patient,
		     const char *date, const char *name, struct db_image *out);
int db_remote_forget_path(struct db *db, const char *patient, const char *date,
			  const char *name, struct db_image *out);

/* How far the changes of the PostgreSQL dsn names are applied: the bound
 * of db_pg_bound() (all transactions below it). -ENOENT when this catalog
 * has never read that database. */
int db_sync_cursor(struct db *db, const char *dsn, int64_t *bound);
int db_sync_cursor_set(struct db *db, const char *dsn, int64_t bound);

/* An image's name and its thumbnail's ("" when none), malloc'd; and what
 * its row says of them: a listing gives these as the attributes of an
 * image that has no local file. */
struct db_name {
	char *name;
	char *thumb;
	bool uploaded;	   /* state 'uploaded' */
	bool thumb_stored; /* a thumbnail key, and the only row of its name */
	int64_t size, thumb_size;
	char updated_at[32];
};

/* The images of the batch, sorted by name as strcmp() sorts, into *out (a
 * malloc'd array; free with db_names_free()). Returns how many, or
 * -errno (then *out is untouched). */
int db_list_batch(struct db *db, const char *patient, const char *date,
		  struct db_name **out);
void db_names_free(struct db_name *v, int n);

/* Set the image's category and filemaker_id (from its user.* xattrs) and,
 * if it is uploaded, queue its PostgreSQL upsert. -ENOENT: no such row. */
int db_image_meta(struct db *db, const char *patient, const char *date,
		  const char *name, const char *category,
		  const char *filemaker_id);

/*
 * The cache. An image whose spool file's data was given back to the disk
 * ("evicted") keeps the file (name, size, mode, times, xattrs) and is read
 * from the store until it is restored. Any write of the image clears it.
 */

/* Mark the image evicted, if it is settled: uploaded, not being written,
 * with no ingest or backfill waiting. -EBUSY if it is not. */
int db_image_evict(struct db *db, const char *patient, const char *date,
		   const char *name);
/* 1 if the image is evicted, 0 if not, -ENOENT: no row. */
int db_image_evicted(struct db *db, const char *patient, const char *date,
		     const char *name);
/* Its spool file holds its content again. */
int db_image_restored(struct db *db, const char *patient, const char *date,
		      const char *name);
/* 1 if the thumbnail thumb_name of the batch is in the store and nothing
 * on its way will change it (the cached copy may go), 0 if not. */
int db_thumb_settled(struct db *db, const char *patient, const char *date,
		     const char *thumb_name);

/* Queue a DB_JOB_BACKFILL for each row the store has with no thumbnail
 * and no recorded error (NULL patient/date: of every batch), unless one
 * of its jobs waits. Returns how many were queued, or -errno.
 * db_ingest_done() finishes one; db_backfill_failed() records why the
 * thumbnail cannot be made (the row stays as it was otherwise). */
int db_backfill_queue(struct db *db, const char *patient, const char *date);
int db_backfill_failed(struct db *db, const struct db_job *job,
		       const char *error);

/*
 * A directory renamed: patient from_patient (its date from_date, or every
 * date when from_date is "") is now to_patient (to_date, "" likewise).
 */
struct db_move {
	char from_patient[65];
	char from_date[11];
	char to_patient[65];
	char to_date[11];
};

/* In one transaction: the images move to the new place (a new gen; out
 * of PostgreSQL, where their old rows' deletes are queued), a waiting
 * ingest follows them, each stored image gets a DB_JOB_MOVE, and the
 * move is recorded until db_move_settled() says the spool's directory
 * followed. Returns how many images moved, -ENOTEMPTY when the catalog
 * has images at the new place, or -errno. */
int db_dir_move(struct db *db, const struct db_move *m);

/* The oldest move recorded and not settled (-ENOENT: none), as a daemon
 * that died between the two leaves it; and its end. */
int db_move_first(struct db *db, struct db_move *out);
int db_move_settled(struct db *db, const struct db_move *m);

/* A DB_JOB_MOVE is done: the image's objects were copied from from_key
 * and from_thumb (its keys when the job ran) to key and thumb_key (NULL:
 * nothing copied: it was removed, or its new key is too long). If it
 * still has from_key, it takes the new keys and its PostgreSQL upsert is
 * queued; the removal of the keys it left (the job's, and from_*) is
 * queued once no image holds them, and the job removed. */
int db_move_done(struct db *db, const struct db_job *job, const char *from_key,
		 const char *from_thumb, const char *key,
		 const char *thumb_key);

/* A new random (version 4) uuid into out[37]. */
void db_uuid(char out[37]);

#endif
