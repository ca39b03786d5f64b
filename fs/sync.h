/*
 * sync.h - the sync runner: the catalog's rows to the web app's PostgreSQL
 * tables in queue order, and the rows others wrote there into the catalog.
 */
#ifndef FS_SYNC_H
#define FS_SYNC_H

#include <stddef.h>

struct thumbfs;

/* The sync runner's thread (started by fs_jobs_start). */
void *fs_sync_main(void *arg);

/* Read all of PostgreSQL into the catalog (as the sync runner does
 * first): 0, or -errno with err set. */
int fs_read_postgres(struct thumbfs *fs, char *err, size_t errlen);

#endif
