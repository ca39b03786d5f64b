/*
 * held.h - the folders a mount holds for their names: made where a
 * patient id or a date goes with a name that is neither (Explorer's "New
 * folder", "Müller Anna", "10.11.2025"), or below a date. Their files
 * stay in the spool, never uploaded, until the folder is renamed to a
 * valid name. The catalog keeps the topmost such folder of each chain, by
 * its path in the mount, for the status file.
 */
#ifndef DB_HELD_H
#define DB_HELD_H

#include "db/catalog.h"

/* Record path ("/patients/New folder") as held; 0 or -errno. */
int db_held_add(struct db *db, const char *path);
/* Forget path and every held folder below it; 0 or -errno. */
int db_held_drop(struct db *db, const char *path);
/* The held folders at or below from are at or below to now. */
int db_held_move(struct db *db, const char *from, const char *to);
/* The held folders in order of their paths, the first max of them into
 * v (each a strdup, freed by the caller): how many the catalog has in
 * all, or -errno. */
int db_held_list(struct db *db, char **v, int max);

#endif
