/*
 * backfill.h - thumbfs backfill CONFIG: a thumbnail for every row the
 * store has without one, made by the job runners through the queue.
 */
#ifndef FS_BACKFILL_H
#define FS_BACKFILL_H

#include <stdbool.h>

struct thumbfs;

/* PostgreSQL read first, a thumbnail queued for every stored row that has
 * none, the job runners run until they are made and synced, printing
 * progress; SIGINT or SIGTERM stops it after the jobs under way, the rest
 * staying queued for the next run or mount. Returns the exit status. */
int fs_backfill(struct thumbfs *fs, bool beside);

#endif
