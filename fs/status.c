/* status.c - the text of .thumbfs/status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/catalog.h"
#include "fs/cache.h"
#include "fs/log.h"
#include "fs/status.h"
#include "fs/thumbfs.h"
#include "s3/s3.h"

#define PROBLEMS_SHOWN 10 /* of each kind the catalog keeps */

struct text {
	char buf[PROBLEMS_SHOWN * 2 * 600];
	size_t len;
};

static void add_problem(void *arg, const char *path, const char *what)
{
	struct text *t = arg;
	if (t->len + 1 >= sizeof(t->buf))
		return;
	int n = snprintf(t->buf + t->len, sizeof(t->buf) - t->len,
			 "  patients/%s: %.400s\n", path, what);
	if (n > 0)
		t->len += (size_t)n < sizeof(t->buf) - t->len
			      ? (size_t)n
			      : sizeof(t->buf) - t->len - 1;
}

char *fs_status_text(struct thumbfs *fs)
{
	struct db_counts c;
	struct text problems = {.len = 0};
	char errors[LOG_KEEP * 520];
	char *out = NULL, pg[600], held[600], store[600], cache[160];
	int ret = db_counts(fs->db, &c);
	problems.buf[0] = '\0';
	if (db_problems(fs->db, PROBLEMS_SHOWN, add_problem, &problems))
		snprintf(problems.buf, sizeof(problems.buf),
			 "  (the catalog cannot be read)\n");
	log_last_errors(errors, sizeof(errors));
	fs_cache_describe(fs->cache, cache, sizeof(cache));
	pthread_mutex_lock(&fs->lock);
	snprintf(store, sizeof(store), "%s%s%s", s3_bucket(fs->store),
		 fs->store_refused[0] ? " refused: " : " ok",
		 fs->store_refused);
	snprintf(pg, sizeof(pg), "%s",
		 !fs->pg	   ? "off (no dsn)"
		 : fs->pg_state[0] ? fs->pg_state
				   : "ok");
	snprintf(held, sizeof(held), "%s", fs->pg_held[0] ? fs->pg_held : "no");
	pthread_mutex_unlock(&fs->lock);
	if (asprintf(&out,
		     "catalog: %s\n"
		     "store: %s\n"
		     "postgres: %s\n"
		     "postgres held back: %s\n"
		     "images spooled: %lld\n"
		     "images uploaded: %lld\n"
		     "other files uploaded: %lld\n"
		     "thumbnail errors: %lld\n"
		     "queue ingest: %lld\n"
		     "queue delete: %lld\n"
		     "queue postgres: %lld\n"
		     "queue backfill: %lld\n"
		     "queue move: %lld\n"
		     "failed for good (thumbfs retry): %lld\n"
		     "queue retrying: %lld\n"
		     "cache: %s\n"
		     "problems (kept in the catalog until the file is fixed or "
		     "gone):\n%s"
		     "errors logged since this mount:\n%s",
		     ret ? "unreadable" : "ok", store, pg, held,
		     (long long)c.spooled, (long long)c.uploaded,
		     (long long)c.uploaded_other, (long long)c.thumb_errors,
		     (long long)c.jobs_ingest, (long long)c.jobs_delete,
		     (long long)c.jobs_sync, (long long)c.jobs_backfill,
		     (long long)c.jobs_move, (long long)c.jobs_parked,
		     (long long)c.jobs_retrying, cache,
		     problems.buf[0] ? problems.buf : "  none\n",
		     errors[0] ? errors : "") < 0)
		out = NULL;
	return out;
}
