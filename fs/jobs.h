/*
 * jobs.h - the job runners: [fs] workers threads that claim the catalog's
 * store jobs (ingest.c) one image at a time, and the sync runner (sync.c)
 * when PostgreSQL is configured. What a job's end records is job.h's.
 */
#ifndef FS_JOBS_H
#define FS_JOBS_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

struct thumbfs;
struct db_job;

/* Start cfg.workers job runners, and the sync runner when fs->pg is set:
 * 0 or -errno (then none runs). */
int fs_jobs_start(struct thumbfs *fs);

/* After the unmount: let the runners work on for up to seconds while jobs
 * are queued, logging what is left for the next mount. */
void fs_jobs_drain(struct thumbfs *fs, int seconds);

/* Stop the runners (each finishes its job under way) and join them. */
void fs_jobs_stop(struct thumbfs *fs);

/* SIGHUP: set from the signal handler; a job runner re-reads the config's
 * [store] credentials and lets held uploads go. */
extern atomic_int fs_reload_pending;
/* Set by a signal during the drain after an unmount: stop it. */
extern atomic_int fs_drain_stop;

#endif
