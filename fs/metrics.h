/*
 * metrics.h - what the mount counts for Prometheus (objects stored,
 * thumbnails made, failures by kind, the time from a close() to the store
 * and to PostgreSQL) and the text a scrape of [metrics] listen reads
 * (Prometheus's text format 0.0.4): these counters and histograms, this
 * process's since it started, beside the figures read at the scrape
 * (status.h). Served by metrics_http.h.
 */
#ifndef FS_METRICS_H
#define FS_METRICS_H

#include <stdbool.h>
#include <stdint.h>

struct thumbfs;

enum fs_failure {
	FS_FAIL_STORE,	   /* a store request of a job failed */
	FS_FAIL_KEY_HELD,  /* another image holds the key to write */
	FS_FAIL_THUMBNAIL, /* a file no thumbnail could be made of */
	FS_FAIL_POSTGRES,  /* a look at or a write to PostgreSQL failed */
	FS_FAIL_N
};

void fs_metrics_failed(enum fs_failure kind);

/* A file's objects are stored: bytes of the original and the thumbnail
 * (thumbnail: one was made), for image id whose row was last changed at
 * changed (ISO 8601 UTC, the catalog's: the close() that wrote it), which
 * then waits for its row to reach PostgreSQL (fs_metrics_synced). */
void fs_metrics_stored(const char *id, const char *changed, uint64_t bytes,
		       bool thumbnail);

/* A thumbnail was made of a file stored before (a backfill). */
void fs_metrics_thumbnail_made(uint64_t bytes);

/* The row of image id is in PostgreSQL. */
void fs_metrics_synced(const char *id);

/* A store request, or a look at PostgreSQL, succeeded now. */
void fs_metrics_store_ok(void);
void fs_metrics_pg_ok(void);

/* The scrape's text, malloc'd; NULL when out of memory. */
char *fs_metrics_render(struct thumbfs *fs);

#endif
