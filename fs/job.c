/* job.c - what a job's end records: retried after a backoff, held while
 * the store refuses, parked for good, waited on; the catalog's record
 * settled whatever it takes; the runners woken and put to sleep. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "db/gate.h"
#include "db/queue.h"
#include "fs/job.h"
#include "fs/log.h"
#include "fs/metrics.h"
#include "fs/reload.h"
#include "fs/thumbfs.h"

/* The delay before try number attempts+2: exponential up to max_s, with
 * full jitter. */
static int backoff(int attempts, int max_s)
{
	unsigned r = 0;
	int cap = attempts >= 20 ? max_s : 1 << (attempts + 1);
	if (cap > max_s)
		cap = max_s;
	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (unsigned)time(NULL);
	return 1 + (int)(r % (unsigned)cap);
}

void fs_job_retry(struct thumbfs *fs, const struct db_job *job,
		  const char *what, const char *err)
{
	int delay = backoff(job->attempts, fs_live(fs).retry_max_s);
	log_error("%s failed: %s, retry in %d s", what, err, delay);
	FS_SETTLE(fs, what, db_job_retry(fs->db, job->id, delay, err));
}

bool fs_settle_wait(struct thumbfs *fs, const char *what, int err, int tries)
{
	if (tries == 0)
		log_error("catalog: cannot record %s: %s; trying again", what,
			  strerror(-err));
	int ms = tries < 6 ? 50 << tries : 2000;
	struct timespec nap = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&nap, NULL);
	return !fs_jobs_stopping(fs);
}

void fs_job_refused(struct thumbfs *fs, const struct db_job *job,
		    const char *err)
{
	pthread_mutex_lock(&fs->lock);
	bool first = !fs->store_refused[0];
	snprintf(fs->store_refused, sizeof(fs->store_refused), "%s", err);
	pthread_mutex_unlock(&fs->lock);
	if (first)
		log_error("the store refused: %s; uploads wait until the "
			  "credentials are fixed (edit %s and send SIGHUP, or "
			  "remount)",
			  err,
			  fs->config_path ? fs->config_path : "the config");
	FS_SETTLE(fs, "a held job", db_job_release(fs->db, job->id));
}

/* The store failed a request in a way that may pass (-EAGAIN): the next
 * success lets the jobs waiting out their backoff go at once. */
bool fs_store_failing(struct thumbfs *fs)
{
	return atomic_load(&fs->store_failing);
}

static void job_failed(struct thumbfs *fs, const struct db_job *job, int ret,
		       const char *what, const char *err);

void fs_job_failed(struct thumbfs *fs, const struct db_job *job, int ret,
		   const char *what, const char *err)
{
	fs_metrics_failed(FS_FAIL_STORE);
	job_failed(fs, job, ret, what, err);
}

void fs_job_key_held(struct thumbfs *fs, const struct db_job *job,
		     const char *what, const char *err)
{
	fs_metrics_failed(FS_FAIL_KEY_HELD);
	job_failed(fs, job, -EPROTO, what, err);
}

static void job_failed(struct thumbfs *fs, const struct db_job *job, int ret,
		       const char *what, const char *err)
{
	bool for_good = ret == -EINVAL || ret == -EPROTO || ret == -ENOENT ||
			ret == -EFBIG || ret == -ENAMETOOLONG ||
			(ret == -EBADMSG && job->wrong + 1 >= FS_TRIES_MAX);
	if (ret == -EACCES) {
		fs_job_refused(fs, job, err);
	} else if (for_good) {
		log_error("%s failed for good: %s; it waits (SIGHUP, the next "
			  "mount or thumbfs retry try it again), the others "
			  "go on",
			  what, err);
		FS_SETTLE(fs, what, db_job_park(fs->db, job->id, err));
	} else if (ret == -EBADMSG) {
		int delay = backoff(job->attempts, fs_live(fs).retry_max_s);
		log_error("%s failed: %s, sent again in %d s", what, err,
			  delay);
		FS_SETTLE(fs, what, db_job_wrong(fs->db, job->id, delay, err));
	} else {
		if (ret == -EAGAIN)
			atomic_store(&fs->store_failing, true);
		fs_job_retry(fs, job, what, err);
	}
}

bool fs_gate_put(struct thumbfs *fs, const struct db_job *job, const char *key,
		 const char *key2, const char *what)
{
	char who[400], err[sizeof(who) + 64];
	int ret = db_gate_put(fs->db, job, key, key2, who, sizeof(who));
	if (ret == 0)
		return true;
	if (ret == -EBUSY) {
		FS_SETTLE(fs, what, db_job_wait(fs->db, job->id, 1));
	} else if (ret == -EEXIST) {
		snprintf(err, sizeof(err),
			 "its store key is held by another image, '%s'", who);
		fs_job_key_held(fs, job, what, err);
	} else {
		fs_job_retry(fs, job, what, strerror(-ret));
	}
	return false;
}

/* The jobs waiting out their backoff, let go now. */
static void let_waiting_go(struct thumbfs *fs)
{
	int n = db_jobs_go(fs->db);
	if (n > 0) {
		log_info("the store answers again: %d waiting job(s) go now",
			 n);
		fs_jobs_kick(fs);
	}
}

void fs_job_succeeded(struct thumbfs *fs)
{
	fs_metrics_store_ok();
	if (atomic_load(&fs->store_failing) &&
	    atomic_exchange(&fs->store_failing, false))
		let_waiting_go(fs);
}

void fs_store_answers(struct thumbfs *fs)
{
	if (atomic_load(&fs->store_failing))
		let_waiting_go(fs);
}

void fs_jobs_nap(struct thumbfs *fs)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	pthread_mutex_lock(&fs->lock);
	if (!fs->stop)
		pthread_cond_timedwait(&fs->cond, &fs->lock, &until);
	pthread_mutex_unlock(&fs->lock);
}

bool fs_jobs_stopping(struct thumbfs *fs)
{
	pthread_mutex_lock(&fs->lock);
	bool stop = fs->stop;
	pthread_mutex_unlock(&fs->lock);
	return stop;
}

void fs_jobs_kick(struct thumbfs *fs)
{
	pthread_mutex_lock(&fs->lock);
	pthread_cond_broadcast(&fs->cond);
	pthread_mutex_unlock(&fs->lock);
}
