/* status.c - .thumbfs/status and .thumbfs/status.json: one set of numbers
 * gathered once, as text for people and as JSON for scripts. */
#include <dirent.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/catalog.h"
#include "db/held.h"
#include "fs/cache.h"
#include "fs/json.h"
#include "fs/log.h"
#include "fs/lowlevel.h"
#include "fs/spool.h"
#include "fs/status.h"
#include "fs/thumbfs.h"
#include "s3/s3.h"

#define PROBLEMS_SHOWN 10 /* of each kind the catalog keeps */

/* What both forms say. */
struct status {
	struct fs_figures f;
	int problems_ret;
	int n_problems;
	long long held; /* folders held for their names, or -errno */
	char problems[PROBLEMS_SHOWN * 2][2][420]; /* path, what */
	char errors[LOG_KEEP * 520];
	char bucket[256], cache[160];
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

/* How many files are below dir (at most cap). */
static long count_files(const char *dir, long cap)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	long n = 0;
	while (d && n < cap && (e = readdir(d))) {
		char p[PATH_MAX];
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (e->d_type == DT_DIR) {
			if (snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) <
			    (int)sizeof(p))
				n += count_files(p, cap - n);
		} else {
			n++;
		}
	}
	if (d)
		closedir(d);
	return n;
}

/* A folder held for its name (db/held.h), as a problem. */
static void add_held(struct status *st, const char *path, long files)
{
	char what[160];
	snprintf(what, sizeof(what),
		 "held for its name: %ld file(s) in it not uploaded until it "
		 "is renamed to a patient id or a date",
		 files);
	add_problem(st, path + strlen("/patients/"), what);
}

/* The held folders, the first PROBLEMS_SHOWN as problems: how many in
 * all, or -errno. */
static int list_held(struct thumbfs *fs, struct status *st)
{
	char *v[PROBLEMS_SHOWN], sp[PATH_MAX];
	int n = db_held_list(fs->db, v, PROBLEMS_SHOWN);
	for (int i = 0; i < n && i < PROBLEMS_SHOWN; i++) {
		if (!fs_spool_path(fs, v[i], sp, sizeof(sp)))
			add_held(st, v[i], count_files(sp, 100000));
		free(v[i]);
	}
	return n;
}

static long long age(int64_t since, time_t now)
{
	return since > 0 && now > since ? (long long)(now - since) : 0;
}

void fs_figures_read(struct thumbfs *fs, struct fs_figures *f)
{
	memset(f, 0, sizeof(*f));
	f->counts_ret = db_counts(fs->db, &f->c);
	f->cache_measured =
	    fs_cache_figures(fs->cache, &f->cache_used, &f->cache_max);
	f->inodes = fs_ll_inodes(fs);
	f->forgets = fs_ll_forgets(fs);
	pthread_mutex_lock(&fs->lock);
	snprintf(f->refused, sizeof(f->refused), "%s", fs->store_refused);
	f->pg_on = fs->pg != NULL;
	/* "" until the sync runner's first look */
	f->pg_up = f->pg_on && strncmp(fs->pg_state, "waiting", 7) != 0;
	snprintf(f->pg, sizeof(f->pg), "%s",
		 !fs->pg	   ? "off (no dsn)"
		 : fs->pg_state[0] ? fs->pg_state
				   : "ok");
	snprintf(f->held, sizeof(f->held), "%s",
		 fs->pg_held[0] ? fs->pg_held : "no");
	f->held_s = fs->pg_held_s;
	pthread_mutex_unlock(&fs->lock);
	f->store_up = !f->refused[0] && !atomic_load(&fs->store_failing);
	time_t now = time(NULL);
	f->oldest_s = age(f->c.oldest_queued, now);
	f->sync_s = age(f->c.oldest_sync, now);
}

static struct status *gather(struct thumbfs *fs)
{
	struct status *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	fs_figures_read(fs, &st->f);
	st->held = list_held(fs, st);
	st->problems_ret = db_problems(fs->db, PROBLEMS_SHOWN, add_problem, st);
	if (st->held < 0)
		st->problems_ret = (int)st->held;
	log_last_errors(st->errors, sizeof(st->errors));
	fs_cache_describe(fs->cache, st->cache, sizeof(st->cache));
	snprintf(st->bucket, sizeof(st->bucket), "%s", s3_bucket(fs->store));
	return st;
}

/* The counts, in the order both forms give them: (text label, JSON
 * name, value). */
#define COUNTS(st)                                                             \
	{"images spooled", "images_spooled", (st)->f.c.spooled},               \
	    {"images uploaded", "images_uploaded", (st)->f.c.uploaded},        \
	    {"other files uploaded", "other_files_uploaded",                   \
	     (st)->f.c.uploaded_other},                                        \
	    {"thumbnail errors", "thumbnail_errors", (st)->f.c.thumb_errors},  \
	    {"folders held (for their names)", "folders_held", (st)->held},    \
	    {"queue ingest", "queue_ingest", (st)->f.c.jobs_ingest},           \
	    {"queue delete", "queue_delete", (st)->f.c.jobs_delete},           \
	    {"queue postgres", "queue_postgres", (st)->f.c.jobs_sync},         \
	    {"queue backfill", "queue_backfill", (st)->f.c.jobs_backfill},     \
	    {"queue move", "queue_move", (st)->f.c.jobs_move},                 \
	    {"failed for good (thumbfs retry)", "failed_for_good",             \
	     (st)->f.c.jobs_parked},                                           \
	    {"queue retrying", "queue_retrying", (st)->f.c.jobs_retrying},     \
	    {"oldest job waiting (seconds)", "oldest_job_waiting_seconds",     \
	     (st)->f.oldest_s},                                                \
	    {"postgres waiting (seconds)", "postgres_waiting_seconds",         \
	     (st)->f.sync_s},                                                  \
	{                                                                      \
		"postgres held back (seconds)", "postgres_held_back_seconds",  \
		    (st)->f.held_s                                             \
	}

struct count {
	const char *label, *name;
	long long value;
};

static void text_to(FILE *f, const struct status *st)
{
	fprintf(f, "catalog: %s\nstore: %s%s%s\npostgres: %s\n",
		st->f.counts_ret ? "unreadable" : "ok", st->bucket,
		st->f.refused[0] ? " refused: " : " ok", st->f.refused,
		st->f.pg);
	fprintf(f, "postgres held back: %s\n", st->f.held);
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
		st->f.counts_ret ? "unreadable" : "ok");
	fs_json_str(f, st->bucket);
	fprintf(f, ", \"state\": \"%s\", \"refused\": ",
		st->f.refused[0] ? "refused" : "ok");
	fs_json_str(f, st->f.refused);
	fputs("}, \"postgres\": {\"state\": ", f);
	fs_json_str(f, st->f.pg);
	fputs(", \"held_back\": ", f);
	fs_json_str(f, st->f.held);
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
