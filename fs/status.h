/*
 * status.h - .thumbfs/status and .thumbfs/status.json: the catalog's, the
 * store's and PostgreSQL's state, the queues, the cache, the problems and
 * the last errors, as text for people or as one JSON object for scripts,
 * with the same numbers.
 */
#ifndef FS_STATUS_H
#define FS_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#include "db/catalog.h"

struct thumbfs;

/* The mount's figures, read at once: what the status file, status.json
 * and the metrics (metrics.h) give. */
struct fs_figures {
	int counts_ret; /* db_counts()'s: 0, or the catalog is unreadable */
	struct db_counts c;
	bool store_up;	    /* neither refused nor failing since a success */
	char refused[512];  /* "", or the store's refusal that holds uploads */
	bool pg_on, pg_up;  /* a [postgres] dsn; the last try reached it */
	char pg[600];	    /* "ok", "off (no dsn)", or why the sync waits */
	char held[600];	    /* "no", or how long and by what */
	long long held_s;   /* the sync bound held back for, 0 */
	long long oldest_s; /* the oldest waiting job's age, 0 */
	long long sync_s;   /* the oldest PostgreSQL job's age, 0 */
	uint64_t cache_used, cache_max;
	bool cache_measured;
	unsigned inodes;  /* node ids the daemon keeps (fs_ll_inodes) */
	uint64_t forgets; /* nodes the kernel forgot (fs_ll_forgets) */
};

void fs_figures_read(struct thumbfs *fs, struct fs_figures *f);

/* A malloc'd string, or NULL on out of memory. */
char *fs_status_render(struct thumbfs *fs, bool json);

#endif
