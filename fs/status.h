/*
 * status.h - .thumbfs/status and .thumbfs/status.json: the catalog's, the
 * store's and PostgreSQL's state, the queues, the cache, the problems and
 * the last errors, as text for people or as one JSON object for scripts,
 * with the same numbers.
 */
#ifndef FS_STATUS_H
#define FS_STATUS_H

#include <stdbool.h>

struct thumbfs;

/* A malloc'd string, or NULL on out of memory. */
char *fs_status_render(struct thumbfs *fs, bool json);

#endif
