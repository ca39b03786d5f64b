/*
 * reconcile.h - the spool at mount: what a daemon that died left half
 * written goes, and what the catalog does not have uploaded is queued.
 */
#ifndef FS_RECONCILE_H
#define FS_RECONCILE_H

struct thumbfs;

/* Returns the number of files queued, or -errno. */
int fs_reconcile(struct thumbfs *fs);

#endif
