/*
 * job.h - what a job's end records (job.c): retried after a backoff, held
 * while the store refuses, parked for good, or waited on; the catalog's
 * record of it settled whatever it takes; and the runners woken.
 */
#ifndef FS_JOB_H
#define FS_JOB_H

#include <stdbool.h>

struct thumbfs;
struct db_job;

/* Wake the runners: a job was queued. */
void fs_jobs_kick(struct thumbfs *fs);

/* A job failed with err: logged as "WHAT failed: ERR, retry in N s", and
 * given back to be tried again after an exponential backoff with full
 * jitter, capped at [fs] retry_max_s. */
void fs_job_retry(struct thumbfs *fs, const struct db_job *job,
		  const char *what, const char *err);

/* The store refused a request (403): said once, shown in the status
 * file, and the job given back untried; every store job waits until
 * SIGHUP or the next mount. */
void fs_job_refused(struct thumbfs *fs, const struct db_job *job,
		    const char *err);

/* A store job failed with ret (s3.h's mapping) and err: a refusal (403)
 * holds every store job (fs_job_refused); what no retry can fix (a 4xx,
 * the store not encrypting as asked, content stored wrong FS_TRIES_MAX
 * times) parks the job with the reason, and the others go on; anything
 * else is retried (fs_job_retry). */
#define FS_TRIES_MAX 5
void fs_job_failed(struct thumbfs *fs, const struct db_job *job, int ret,
		   const char *what, const char *err);

/* Another image holds a key job is to write: parked with err, the
 * others go on. */
void fs_job_key_held(struct thumbfs *fs, const struct db_job *job,
		     const char *what, const char *err);

/* The gate (db/gate.h) before job writes key and key2 ("": none): true
 * if it may go on; false when it may not now (the job waits a second,
 * untried), or must not (another image holds the key: parked with the
 * reason), or the catalog failed (retried). what names the job's work. */
bool fs_gate_put(struct thumbfs *fs, const struct db_job *job, const char *key,
		 const char *key2, const char *what);

/* A store job succeeded: if the store had been failing, the jobs waiting
 * out their backoff go now. */
void fs_job_succeeded(struct thumbfs *fs);

/* The store answered a probe (a HEAD of the bucket) while failing: what
 * waits out a backoff goes at once, but the store is up again only when
 * a write succeeds (fs_job_succeeded): one that answers HEADs may still
 * refuse every PUT with 503s, and its store_up must stay 0. */
void fs_store_answers(struct thumbfs *fs);

/* A job's bookkeeping in the catalog (done, retried, released, parked,
 * its result recorded): call is tried again, waiting longer each time (to
 * 2 s), until the catalog takes it (after a full disk or an I/O error
 * passes) or the mount stops, so that no job stays claimed, its image
 * stuck, while the mount runs. The first failure is logged. */
#define FS_SETTLE(fs, what, call)                                              \
	do {                                                                   \
		int settle_tries_ = 0, settle_ret_;                            \
		while ((settle_ret_ = (call)) < 0 &&                           \
		       fs_settle_wait((fs), (what), settle_ret_,               \
				      settle_tries_++))                        \
			;                                                      \
	} while (0)

/* FS_SETTLE's wait: false once the mount stops. */
bool fs_settle_wait(struct thumbfs *fs, const char *what, int err, int tries);

/* Sleep until kicked, stopped, or a second has passed. */
void fs_jobs_nap(struct thumbfs *fs);

/* The runners are being stopped. */
bool fs_jobs_stopping(struct thumbfs *fs);

/* A store request failed in a way that may pass, and none has succeeded
 * since: the runners probe the store when nothing is due. */
bool fs_store_failing(struct thumbfs *fs);

#endif
