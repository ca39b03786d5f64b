/* jobs.c - the job runners: threads that claim store jobs and do them,
 * hold the uploads while the store refuses, probe a store that failed,
 * re-read the credentials on SIGHUP; the catalog's checkpointer; the
 * drain after an unmount. What a job's end records is job.c's. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "db/catalog.h"
#include "db/conn.h"
#include "db/queue.h"
#include "db/gate.h"
#include "fs/cache.h"
#include "fs/ingest.h"
#include "fs/claim.h"
#include "fs/job.h"
#include "fs/jobs.h"
#include "fs/log.h"
#include "fs/reload.h"
#include "fs/sync.h"
#include "fs/thumbfs.h"
#include "s3/s3.h"

/* Thumbnails are background work: the requests of the people and
 * programs using the mount (a close() waiting for its catalog row) take
 * the CPU first, and the runners take the rest. */
#define WORKER_NICE 10

atomic_int fs_reload_pending;
atomic_int fs_drain_stop;

/* Ask the store whether it answers again, once a second at most (a HEAD
 * of the bucket): so what waits out a backoff goes as soon as it does. */
static void probe(struct thumbfs *fs)
{
	static _Atomic long last;
	char err[512];
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long was = last;
	if (now.tv_sec == was ||
	    !atomic_compare_exchange_strong(&last, &was, now.tv_sec))
		return;
	if (s3_ping(fs->store, err, sizeof(err)) == 0)
		fs_store_answers(fs);
}

static bool store_held(struct thumbfs *fs)
{
	pthread_mutex_lock(&fs->lock);
	bool held = fs->store_refused[0] != '\0';
	pthread_mutex_unlock(&fs->lock);
	return held;
}

/* The catalog's log into the catalog, here rather than in a commit that
 * a close() waits for. Said once per run of failures. */
static void checkpoint(struct thumbfs *fs)
{
	static _Atomic bool failing;
	int ret = db_checkpoint(fs->db);
	if (ret < 0 && !failing)
		log_warn("cannot checkpoint the catalog's write-ahead log; "
			 "it grows until a later try succeeds");
	if (ret != 0)
		failing = ret < 0;
}

static void *worker_main(void *arg)
{
	struct thumbfs *fs = arg;
	struct db_job job;
	pthread_setname_np(pthread_self(), "thumbfs-job");
	setpriority(PRIO_PROCESS, (id_t)gettid(), WORKER_NICE);
	while (!fs_jobs_stopping(fs)) {
		/* taken and cleared in one step: a SIGHUP that comes while
		 * a reload runs makes another */
		if (atomic_exchange(&fs_reload_pending, 0))
			fs_reload(fs);
		if (store_held(fs)) {
			fs_jobs_nap(fs); /* until SIGHUP, or the unmount */
			continue;
		}
		int ret = db_job_claim(fs->db, &job);
		if (ret == 0)
			fs_ingest_run(fs, &job);
		else if (ret != -ENOENT)
			log_error("cannot read the job queue: %s",
				  strerror(-ret));
		else if (fs_store_failing(fs))
			probe(fs); /* nothing due, as the store was failing */
		fs_cache_trim(fs);
		checkpoint(fs); /* the checkpointer may be behind */
		if (ret)
			fs_jobs_nap(fs); /* nothing due */
	}
	fs_claim_close();
	return NULL;
}

/* The catalog's checkpointer: its own thread at the daemon's priority
 * (not the runners' nice 10, nor behind a long thumbnail), woken by the
 * commit that brings the log to DB_WAL_PAGES, so that it stays near that
 * however fast commits come and however busy the runners are. */
static void *checkpointer_main(void *arg)
{
	struct thumbfs *fs = arg;
	pthread_setname_np(pthread_self(), "thumbfs-ckpt");
	while (!fs_jobs_stopping(fs)) {
		db_checkpoint_wait(fs->db, 200);
		checkpoint(fs);
	}
	return NULL;
}

int fs_jobs_start(struct thumbfs *fs)
{
	fs->threads = calloc((size_t)fs->cfg.workers, sizeof(pthread_t));
	if (!fs->threads)
		return -ENOMEM;
	for (int i = 0; i < fs->cfg.workers; i++) {
		int e = pthread_create(&fs->threads[i], NULL, worker_main, fs);
		if (e) {
			fs_jobs_stop(fs);
			return -e;
		}
		fs->n_threads++;
	}
	if (fs->pg) {
		int e =
		    pthread_create(&fs->sync_thread, NULL, fs_sync_main, fs);
		if (e) {
			fs_jobs_stop(fs);
			return -e;
		}
		fs->sync_running = true;
	}
	int e = pthread_create(&fs->ckpt_thread, NULL, checkpointer_main, fs);
	if (e) {
		fs_jobs_stop(fs);
		return -e;
	}
	fs->ckpt_running = true;
	return 0;
}

static int64_t pending(struct thumbfs *fs)
{
	struct db_counts c;
	if (db_counts(fs->db, &c))
		return -1;
	return c.jobs_ingest + c.jobs_delete + c.jobs_backfill + c.jobs_move +
	       (fs->pg ? c.jobs_sync : 0);
}

void fs_jobs_drain(struct thumbfs *fs, int seconds)
{
	struct timespec t0, now;
	int64_t left = pending(fs);
	if (left <= 0)
		return;
	log_info("%lld job(s) still queued; working on for up to %d s",
		 (long long)left, seconds);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	time_t said = t0.tv_sec;
	for (;;) {
		left = pending(fs);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (left <= 0 || now.tv_sec - t0.tv_sec >= seconds)
			break;
		if (fs_drain_stop) {
			log_info("stopped working on the queue, as asked");
			break;
		}
		if (now.tv_sec - said >= 10) {
			log_info("%lld job(s) still queued", (long long)left);
			said = now.tv_sec;
		}
		fs_jobs_kick(fs);
		struct timespec nap = {0, 100 * 1000 * 1000};
		nanosleep(&nap, NULL);
	}
	if (left > 0)
		log_warn("%lld job(s) left in the catalog for the next mount",
			 (long long)left);
	else
		log_info("every queued job is done");
}

void fs_jobs_stop(struct thumbfs *fs)
{
	pthread_mutex_lock(&fs->lock);
	fs->stop = true;
	pthread_cond_broadcast(&fs->cond);
	pthread_mutex_unlock(&fs->lock);
	for (int i = 0; i < fs->n_threads; i++)
		pthread_join(fs->threads[i], NULL);
	if (fs->sync_running)
		pthread_join(fs->sync_thread, NULL);
	fs->sync_running = false;
	if (fs->ckpt_running)
		pthread_join(fs->ckpt_thread, NULL);
	fs->ckpt_running = false;
	free(fs->threads);
	fs->threads = NULL;
	fs->n_threads = 0;
}
