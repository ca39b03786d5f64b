/*
 * ingest.h - the store jobs a job runner does: an ingest (thumbnail,
 * upload of both objects, the catalog row), a backfill (the thumbnail of
 * a stored row that has none), a delete (the objects of a removed image),
 * a move (an image's objects to the keys of its renamed directory).
 */
#ifndef FS_INGEST_H
#define FS_INGEST_H

struct thumbfs;
struct db_job;

/* Do the claimed store job: it ends done, retried, or held (jobs.h). */
void fs_ingest_run(struct thumbfs *fs, const struct db_job *job);

#endif
