/* status.c - .thumbfs/status and .thumbfs/status.json: one set of numbers
 * gathered once, as text for people and as JSON for scripts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/catalog.h"
#include "fs/cache.h"
#include "fs/json.h"
#include "fs/log.h"
#include "fs/status.h"
#include "fs/thumbfs.h"
#include "s3/s3.h"

#define PROBLEMS_SHOWN 10 /* of each kind the catalog keeps */

/* What both forms say. */
struct status {
	int counts_ret;
	struct db_counts c;
	int problems_ret;
	int n_problems;
	char problems[PROBLEMS_SHOWN * 2][2][420]; /* path, what */
	char errors[LOG_KEEP * 520];
	char bucket[256], refused[512], pg[600], held[600], cache[160];
	long long held_s, oldest_s; /* the sync held back; the oldest job */
};

static void add_problem(void *arg, const char *path, const char *what)
{
	struct status *st = arg;
	if (st->n_problems >= PROBLEMS_SHOWN * 2)
		return;
	snprintf(st->problems[st->n_problems][0], 420, "patients/%.400s", path);
	snprintf(st->problems[st->n_problems][1], 420, "%.400s", what);
	st->n_problems++;
}

static struct status *gather(struct thumbfs *fs)
{
	struct status *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->counts_ret = db_counts(fs->db, &st->c);
	st->problems_ret = db_problems(fs->db, PROBLEMS_SHOWN, add_problem, st);
	log_last_errors(st->errors, sizeof(st->errors));
	fs_cache_describe(fs->cache, st->cache, sizeof(st->cache));
	snprintf(st->bucket, sizeof(st->bucket), "%s", s3_bucket(fs->store));
	pthread_mutex_lock(&fs->lock);
	snprintf(st->refused, sizeof(st->refused), "%s", fs->store_refused);
	snprintf(st->pg, sizeof(st->pg), "%s",
		 !fs->pg	   ? "off (no dsn)"
		 : fs->pg_state[0] ? fs->pg_state
				   : "ok");
	snprintf(st->held, sizeof(st->held), "%s",
		 fs->pg_held[0] ? fs->pg_held : "no");
	st->held_s = fs->pg_held_s;
	pthread_mutex_unlock(&fs->lock);
	time_t now = time(NULL);
	st->oldest_s = st->c.oldest_queued > 0 && now > st->c.oldest_queued
			   ? (long long)(now - st->c.oldest_queued)
			   : 0;
	return st;
}

/* The counts, in the order both forms give them: (text label, JSON
 * name, value). */
#define COUNTS(st)                                                             \
	{"images spooled", "images_spooled", (st)->c.spooled},                 \
	    {"images uploaded", "images_uploaded", (st)->c.uploaded},          \
	    {"other files uploaded", "other_files_uploaded",                   \
	     (st)->c.uploaded_other},                                          \
	    {"thumbnail errors", "thumbnail_errors", (st)->c.thumb_errors},    \
	    {"queue ingest", "queue_ingest", (st)->c.jobs_ingest},             \
	    {"queue delete", "queue_delete", (st)->c.jobs_delete},             \
	    {"queue postgres", "queue_postgres", (st)->c.jobs_sync},           \
	    {"queue backfill", "queue_backfill", (st)->c.jobs_backfill},       \
	    {"queue move", "queue_move", (st)->c.jobs_move},                   \
	    {"failed for good (thumbfs retry)", "failed_for_good",             \
	     (st)->c.jobs_parked},                                             \
	    {"queue retrying", "queue_retrying", (st)->c.jobs_retrying},       \
	    {"oldest job waiting (seconds)", "oldest_job_waiting_seconds",     \
	     (st)->oldest_s},                                                  \
	{                                                                      \
		"postgres held back (seconds)", "postgres_held_back_seconds",  \
		    (st)->held_s                                               \
	}

struct count {
	const char *label, *name;
	long long value;
};

static void text_to(FILE *f, const struct status *st)
{
	fprintf(f, "catalog: %s\nstore: %s%s%s\npostgres: %s\n",
		st->counts_ret ? "unreadable" : "ok", st->bucket,
		st->refused[0] ? " refused: " : " ok", st->refused, st->pg);
	fprintf(f, "postgres held back: %s\n", st->held);
	const struct count counts[] = {COUNTS(st)};
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
		fprintf(f, "%s: %lld\n", counts[i].label, counts[i].value);
	fprintf(f,
		"cache: %s\nproblems (kept in the catalog until the file "
		"is fixed or gone):\n",
		st->cache);
	if (st->problems_ret)
		fputs("  (the catalog cannot be read)\n", f);
	else if (!st->n_problems)
		fputs("  none\n", f);
	for (int i = 0; !st->problems_ret && i < st->n_problems; i++)
		fprintf(f, "  %s: %s\n", st->problems[i][0],
			st->problems[i][1]);
	fprintf(f, "errors logged since this mount:\n%s", st->errors);
}

static void json_to(FILE *f, const struct status *st)
{
	fprintf(f, "{\"catalog\": \"%s\", \"store\": {\"bucket\": ",
		st->counts_ret ? "unreadable" : "ok");
	fs_json_str(f, st->bucket);
	fprintf(f, ", \"state\": \"%s\", \"refused\": ",
		st->refused[0] ? "refused" : "ok");
	fs_json_str(f, st->refused);
	fputs("}, \"postgres\": {\"state\": ", f);
	fs_json_str(f, st->pg);
	fputs(", \"held_back\": ", f);
	fs_json_str(f, st->held);
	fputs("}", f);
	const struct count counts[] = {COUNTS(st)};
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
		fprintf(f, ", \"%s\": %lld", counts[i].name, counts[i].value);
	fputs(", \"cache\": ", f);
	fs_json_str(f, st->cache);
	fputs(", \"problems\": [", f);
	for (int i = 0; !st->problems_ret && i < st->n_problems; i++) {
		fputs(i ? ", {\"path\": " : "{\"path\": ", f);
		fs_json_str(f, st->problems[i][0]);
		fputs(", \"what\": ", f);
		fs_json_str(f, st->problems[i][1]);
		fputc('}', f);
	}
	fprintf(f, "], \"problems_readable\": %s, \"errors\": [",
		st->problems_ret ? "false" : "true");
	const char *e = st->errors;
	for (int i = 0; *e; i++) {
		const char *nl = strchr(e, '\n');
		size_t n = nl ? (size_t)(nl - e) : strlen(e);
		char line[520];
		snprintf(line, sizeof(line), "%.*s", (int)n, e);
		if (i)
			fputs(", ", f);
		fs_json_str(f, line);
		e += n + (nl != NULL);
	}
	fputs("]}\n", f);
}

char *fs_status_render(struct thumbfs *fs, bool json)
{
	struct status *st = gather(fs);
	char *out = NULL;
	size_t len = 0;
	FILE *f = st ? open_memstream(&out, &len) : NULL;
	if (f) {
		(json ? json_to : text_to)(f, st);
		if (fclose(f)) {
			free(out);
			out = NULL;
		}
	}
	free(st);
	return out;
}
