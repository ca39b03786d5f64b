/*
 * reconcile.h - the spool at mount: what a daemon that died left half
 * written goes, and what the catalog does not have uploaded is queued.
 */
#ifndef FS_RECONCILE_H
#define FS_RECONCILE_H

struct thumbfs;

#include <stdbool.h>

/* walk: look at every file of the spool (after a crash; a clean end left
 * nothing there the catalog does not know). Returns the number of files
 * queued, or -errno. */
int fs_reconcile(struct thumbfs *fs, bool walk);

#endif
