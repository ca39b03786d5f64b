/* metrics.c - the mount's counters and histograms for Prometheus, and the
 * text of a scrape (Prometheus's text format 0.0.4, names and units as
 * its naming guide says: thumbfs_ prefix, seconds and bytes, _total
 * counters, timestamps rather than ages of past events). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/metrics.h"
#include "fs/status.h"
#include "fs/thumbfs.h"

#ifndef THUMBFS_VERSION
#define THUMBFS_VERSION "0"
#endif

/* The upper bounds of the latency buckets, seconds: a photo is stored in
 * well under a second on a LAN; minutes and hours mean a store or
 * PostgreSQL away. */
static const double bounds[] = {0.05, 0.1, 0.25, 0.5, 1,   2.5,	 5,
				10,   30,  60,	 300, 900, 3600, 14400};
#define N_BOUNDS (sizeof(bounds) / sizeof(bounds[0]))

struct histogram {
	atomic_ullong count[N_BOUNDS + 1]; /* per bucket, not cumulative */
	atomic_ullong sum_us;
};

static atomic_ullong images_stored, others_stored, bytes_stored, thumbs_made,
    failures[FS_FAIL_N];
static struct histogram to_store, to_pg;
static _Atomic long long store_ok_ms, pg_ok_ms;

static const char *const failure_names[FS_FAIL_N] = {
    [FS_FAIL_STORE] = "store",
    [FS_FAIL_KEY_HELD] = "key_held",
    [FS_FAIL_THUMBNAIL] = "thumbnail",
    [FS_FAIL_POSTGRES] = "postgres",
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void observe(struct histogram *h, double s)
{
	if (s < 0)
		s = 0;
	size_t i = 0;
	while (i < N_BOUNDS && s > bounds[i])
		i++;
	atomic_fetch_add(&h->count[i], 1);
	atomic_fetch_add(&h->sum_us, (unsigned long long)(s * 1e6));
}

/* "2026-12-05T21:04:05.123456Z" as Unix seconds; 0 if it is not that. */
static double parse_time(const char *iso)
{
	struct tm tm = {0};
	const char *rest = strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!rest)
		return 0;
	double frac = *rest == '.' ? strtod(rest, NULL) : 0;
	return (double)timegm(&tm) + frac;
}

/* Images stored and waiting for their row to reach PostgreSQL, with when
 * their row last changed: a table by the id's hash; a slot taken by
 * another loses that one's sample (it is a measure, not a record). */
#define PENDING 4096
static struct {
	char id[37];
	double changed;
} pending[PENDING];
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t slot(const char *id)
{
	size_t h = 5381;
	for (const char *c = id; *c; c++)
		h = h * 33 + (unsigned char)*c;
	return h % PENDING;
}

void fs_metrics_failed(enum fs_failure kind)
{
	atomic_fetch_add(&failures[kind], 1);
}

void fs_metrics_stored(const char *id, const char *changed, uint64_t bytes,
		       bool thumbnail)
{
	atomic_fetch_add(thumbnail ? &images_stored : &others_stored, 1);
	atomic_fetch_add(&bytes_stored, bytes);
	if (!thumbnail)
		return;
	atomic_fetch_add(&thumbs_made, 1);
	double at = parse_time(changed);
	if (at <= 0)
		return;
	observe(&to_store, now_s() - at);
	size_t i = slot(id);
	pthread_mutex_lock(&pending_lock);
	snprintf(pending[i].id, sizeof(pending[i].id), "%s", id);
	pending[i].changed = at;
	pthread_mutex_unlock(&pending_lock);
}

void fs_metrics_thumbnail_made(uint64_t bytes)
{
	atomic_fetch_add(&thumbs_made, 1);
	atomic_fetch_add(&bytes_stored, bytes);
}

void fs_metrics_synced(const char *id)
{
	size_t i = slot(id);
	double at = 0;
	pthread_mutex_lock(&pending_lock);
	if (!strcmp(pending[i].id, id)) {
		at = pending[i].changed;
		pending[i].id[0] = '\0';
	}
	pthread_mutex_unlock(&pending_lock);
	if (at > 0)
		observe(&to_pg, now_s() - at);
}

static void mark(_Atomic long long *ms)
{
	atomic_store(ms, (long long)(now_s() * 1000));
}

void fs_metrics_store_ok(void)
{
	mark(&store_ok_ms);
}

void fs_metrics_pg_ok(void)
{
	mark(&pg_ok_ms);
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A metric of one sample. */
struct one {
	const char *name, *type, *help;
	double value;
};

static void ones(FILE *f, const struct one *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		head(f, m[i].name, m[i].type, m[i].help);
		fprintf(f, "%s %.17g\n", m[i].name, m[i].value);
	}
}

static void histogram_to(FILE *f, const char *name, const char *help,
			 struct histogram *h)
{
	unsigned long long cum = 0;
	head(f, name, "histogram", help);
	for (size_t i = 0; i <= N_BOUNDS; i++) {
		cum += atomic_load(&h->count[i]);
		if (i < N_BOUNDS)
			fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name,
				bounds[i], cum);
		else
			fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name, cum);
	}
	fprintf(f, "%s_sum %.6f\n%s_count %llu\n", name,
		(double)atomic_load(&h->sum_us) / 1e6, name, cum);
}

static void figures_to(FILE *f, const struct fs_figures *g)
{
	const struct db_counts *c = &g->c;
	head(f, "thumbfs_catalog_files", "gauge",
	     "Files in the catalog, by state: images waiting to be stored, "
	     "images stored, other files stored (no thumbnail).");
	fprintf(f,
		"thumbfs_catalog_files{state=\"spooled\"} %lld\n"
		"thumbfs_catalog_files{state=\"uploaded\"} %lld\n"
		"thumbfs_catalog_files{state=\"other\"} %lld\n",
		(long long)c->spooled, (long long)c->uploaded,
		(long long)c->uploaded_other);
	head(f, "thumbfs_queue_jobs", "gauge",
	     "Jobs waiting in the queue, by kind.");
	const struct {
		const char *kind;
		int64_t n;
	} q[] = {{"ingest", c->jobs_ingest},
		 {"delete", c->jobs_delete},
		 {"postgres", c->jobs_sync},
		 {"backfill", c->jobs_backfill},
		 {"move", c->jobs_move}};
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++)
		fprintf(f, "thumbfs_queue_jobs{kind=\"%s\"} %lld\n", q[i].kind,
			(long long)q[i].n);
	const struct one gauges[] = {
	    {"thumbfs_catalog_up", "gauge",
	     "Whether the catalog could be read at this scrape.",
	     g->counts_ret == 0},
	    {"thumbfs_catalog_thumbnail_errors", "gauge",
	     "Files the catalog holds without a thumbnail, for a reason.",
	     (double)c->thumb_errors},
	    {"thumbfs_queue_jobs_retrying", "gauge",
	     "Waiting jobs that failed at least once.",
	     (double)c->jobs_retrying},
	    {"thumbfs_queue_oldest_job_age_seconds", "gauge",
	     "How long the oldest waiting job has waited, 0 when none waits.",
	     (double)g->oldest_s},
	    {"thumbfs_jobs_failed_for_good", "gauge",
	     "Jobs failed for good, waiting for thumbfs retry, SIGHUP or the "
	     "next mount.",
	     (double)c->jobs_parked},
	    {"thumbfs_cache_bytes", "gauge",
	     "Bytes of originals and thumbnails kept on this machine's disk "
	     "(as last measured).",
	     (double)g->cache_used},
	    {"thumbfs_cache_limit_bytes", "gauge",
	     "The cache's bound ([cache] max_bytes), 0 when it has none.",
	     (double)g->cache_max},
	    {"thumbfs_kernel_inodes", "gauge",
	     "Node ids the daemon keeps for the kernel: folders and files "
	     "not in the catalog it has looked up and not forgotten, and "
	     "files open, the root too (an image's id is its row's).",
	     (double)g->inodes},
	    {"thumbfs_kernel_forgets_total", "counter",
	     "Node ids the kernel has dropped (its forgets), an image's or a "
	     "thumbnail's too, for which the daemon keeps nothing.",
	     (double)g->forgets},
	    {"thumbfs_store_up", "gauge",
	     "Whether the store takes requests: 0 while it refuses (403) or "
	     "its last request failed.",
	     g->store_up},
	    {"thumbfs_store_refused", "gauge",
	     "Whether uploads are held because the store refused (403) until "
	     "SIGHUP or a remount.",
	     g->refused[0] != '\0'},
	    {"thumbfs_store_last_success_timestamp_seconds", "gauge",
	     "When a store request last succeeded (Unix time), 0 if none has "
	     "since the mount.",
	     (double)atomic_load(&store_ok_ms) / 1000},
	};
	ones(f, gauges, sizeof(gauges) / sizeof(gauges[0]));
	if (!g->pg_on)
		return; /* no [postgres] dsn: nothing of it to watch */
	const struct one pg[] = {
	    {"thumbfs_postgres_up", "gauge",
	     "Whether PostgreSQL answered the sync runner's last look.",
	     g->pg_up},
	    {"thumbfs_postgres_last_success_timestamp_seconds", "gauge",
	     "When the sync runner last reached PostgreSQL (Unix time).",
	     (double)atomic_load(&pg_ok_ms) / 1000},
	    {"thumbfs_postgres_sync_lag_seconds", "gauge",
	     "How long the oldest row waiting to reach PostgreSQL has "
	     "waited, 0 when none waits.",
	     (double)g->sync_s},
	    {"thumbfs_postgres_held_back_seconds", "gauge",
	     "How long the sync from PostgreSQL has been held back by an "
	     "open transaction, 0 when it is not.",
	     (double)g->held_s},
	};
	ones(f, pg, sizeof(pg) / sizeof(pg[0]));
}

char *fs_metrics_render(struct thumbfs *fs)
{
	struct fs_figures g;
	char *out = NULL;
	size_t len = 0;
	fs_figures_read(fs, &g);
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	head(f, "thumbfs_build_info", "gauge", "The version running.");
	fprintf(f, "thumbfs_build_info{version=\"%s\"} 1\n", THUMBFS_VERSION);
	const struct one counters[] = {
	    {"thumbfs_images_stored_total", "counter",
	     "Images whose original and thumbnail were stored.",
	     (double)atomic_load(&images_stored)},
	    {"thumbfs_other_files_stored_total", "counter",
	     "Files stored without a thumbnail (not an image, empty, too "
	     "large).",
	     (double)atomic_load(&others_stored)},
	    {"thumbfs_stored_bytes_total", "counter",
	     "Bytes of originals and thumbnails stored.",
	     (double)atomic_load(&bytes_stored)},
	    {"thumbfs_thumbnails_made_total", "counter",
	     "Thumbnails made and stored (of new files and by backfill).",
	     (double)atomic_load(&thumbs_made)},
	};
	ones(f, counters, sizeof(counters) / sizeof(counters[0]));
	head(f, "thumbfs_failures_total", "counter",
	     "Failures, by kind: store requests, store keys held by another "
	     "image, files no thumbnail could be made of, PostgreSQL looks "
	     "and writes.");
	for (int k = 0; k < FS_FAIL_N; k++)
		fprintf(f, "thumbfs_failures_total{kind=\"%s\"} %llu\n",
			failure_names[k], atomic_load(&failures[k]));
	histogram_to(f, "thumbfs_ingest_stored_seconds",
		     "From the close() that wrote an image (its row's last "
		     "change) to its original and thumbnail stored.",
		     &to_store);
	if (fs->pg)
		histogram_to(f, "thumbfs_ingest_postgres_seconds",
			     "From the close() that wrote an image to its row "
			     "in PostgreSQL (images this mount stored).",
			     &to_pg);
	figures_to(f, &g);
	if (fclose(f)) {
		free(out);
		return NULL;
	}
	return out;
}
