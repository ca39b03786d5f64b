/*
 * queue.h - the job queue: store jobs claimed one image at a time,
 * PostgreSQL jobs in strict order, retries, parking, and what a finished
 * job records.
 */
#ifndef DB_QUEUE_H
#define DB_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/catalog.h"

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

/* An ingest finished: if the row is still at job->gen, record img's upload
 * fields (keys, sizes, mime, width, height, sha256, thumbnail, error) and
 * mark it uploaded; a thumbnail the row had under another key (the format
 * changed, or there is none now) has its removal queued, unless another
 * image holds it. The job is removed either way. *current is set false
 * when the row had moved on (or was gone; then, unless the name was written
 * again or another image holds them, the removal of img's keys is queued).
 * img's patient_id, batch_date and name must be set. The row's
 * updated_at becomes stamp, what its objects were stamped across mounts
 * (db/pgkey.h), or now when stamp is NULL. */
int db_ingest_done(struct db *db, const struct db_job *job,
		   const struct db_image *img, const char *stamp,
		   bool *current);

/* Claim the thumbnail name for image id, to be stored under key: 0 when
 * it is the image's now, -EEXIST when another image of its date holds it
 * or an object under key waits to be deleted, -ENOENT when the image is
 * gone. A claim is the image's until it claims another or is removed.
 * held, held_key: the name the image held as the caller read it, and that
 * name's key (NULL: none); when it still holds it, what an ingest could
 * not record under held_key goes, unless a row holds it. -EBUSY: the image
 * holds another name than held now (claimed for it since): read it again. */
int db_thumb_claim(struct db *db, const char *id, const char *name,
		   const char *key, const char *held, const char *held_key);

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

/* Queue a DB_JOB_BACKFILL for each row the store has with no thumbnail
 * and no recorded error (NULL patient/date: of every batch), unless one
 * of its jobs waits. Returns how many were queued, or -errno.
 * db_ingest_done() finishes one; db_backfill_failed() records why the
 * thumbnail cannot be made (the row stays as it was otherwise). */
int db_backfill_queue(struct db *db, const char *patient, const char *date);
int db_backfill_failed(struct db *db, const struct db_job *job,
		       const char *error);

#endif
