/*
 * status.h - the text of .thumbfs/status: the catalog's, the store's and
 * PostgreSQL's state, the queues, the cache, and the last errors.
 */
#ifndef FS_STATUS_H
#define FS_STATUS_H

struct thumbfs;

/* A malloc'd string, or NULL on out of memory. */
char *fs_status_text(struct thumbfs *fs);

#endif
