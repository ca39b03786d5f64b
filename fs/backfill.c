/* backfill.c - thumbfs backfill CONFIG: a thumbnail for every row the store
 * has without one (the FileMaker import's rows, from before thumbnails),
 * made by the job runners through the catalog's queue, so that it is safe
 * to interrupt and to run again. Beside a mount, which owns the catalog,
 * the mount's runners make them: this process queues and follows. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "db/catalog.h"
#include "db/queue.h"
#include "fs/backfill.h"
#include "fs/jobs.h"
#include "fs/log.h"
#include "fs/sync.h"
#include "fs/thumbfs.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void progress(FILE *out, int64_t total, int64_t left, int64_t failed)
{
	fprintf(out, "backfill: %lld of %lld made, %lld failed, %lld left\n",
		(long long)(total - left - failed), (long long)total,
		(long long)failed, (long long)left);
	fflush(out);
}

int fs_backfill(struct thumbfs *fs, bool beside)
{
	struct db_counts c0, c;
	char err[1024];
	int ret;

	if (!beside && fs->pg &&
	    (ret = fs_read_postgres(fs, err, sizeof(err)))) {
		fprintf(stderr, "thumbfs: cannot read PostgreSQL: %s\n", err);
		return 1;
	}
	ret = db_backfill_queue(fs->db, NULL, NULL);
	if (ret < 0 || db_counts(fs->db, &c0)) {
		fprintf(stderr, "thumbfs: cannot read the catalog: %s\n",
			strerror(ret < 0 ? -ret : EIO));
		return 1;
	}
	int64_t total = c0.jobs_backfill;
	printf("backfill: %lld stored image(s) without a thumbnail\n",
	       (long long)total);
	if (total == 0 && (!fs->pg || c0.jobs_sync == 0))
		return 0;

	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (!beside && fs_jobs_start(fs)) {
		fprintf(stderr, "thumbfs: cannot start the workers\n");
		return 1;
	}
	int64_t shown = -1;
	time_t last = 0;
	bool refused = false;
	for (;;) {
		if (db_counts(fs->db, &c))
			break;
		int64_t failed = c.thumb_errors - c0.thumb_errors;
		if (failed < 0)
			failed = 0;
		if (c.jobs_backfill != shown && time(NULL) != last) {
			progress(stdout, total, c.jobs_backfill, failed);
			shown = c.jobs_backfill;
			last = time(NULL);
		}
		pthread_mutex_lock(&fs->lock);
		refused = fs->store_refused[0] != '\0';
		pthread_mutex_unlock(&fs->lock);
		if (interrupted || refused ||
		    (c.jobs_backfill == 0 && (!fs->pg || c.jobs_sync == 0)))
			break;
		struct timespec nap = {0, 200 * 1000 * 1000};
		nanosleep(&nap, NULL);
	}
	if (!beside)
		fs_jobs_stop(fs); /* the jobs under way finish */
	db_counts(fs->db, &c);
	int64_t failed = c.thumb_errors - c0.thumb_errors;
	progress(stdout, total, c.jobs_backfill, failed < 0 ? 0 : failed);
	if (refused) {
		fprintf(stderr, "thumbfs: the store refused: %s\n",
			fs->store_refused);
		return 1;
	}
	if (c.jobs_backfill || (fs->pg && c.jobs_sync)) {
		printf("backfill: stopped; %lld left (and %lld row(s) for "
		       "PostgreSQL): run it again, or a mount finishes them\n",
		       (long long)c.jobs_backfill,
		       (long long)(fs->pg ? c.jobs_sync : 0));
		return interrupted ? 130 : 1;
	}
	if (failed > 0)
		printf("backfill: %lld image(s) could not be thumbnailed; the "
		       "log says why, and .thumbfs/status lists them\n",
		       (long long)failed);
	return 0;
}
