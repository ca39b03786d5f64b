/*
 * pgread.h - what the mounts read of PostgreSQL (pgread.c), on a
 * connection of pg.h's. Returns as pg.h says.
 */
#ifndef DB_PGREAD_H
#define DB_PGREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/catalog.h"
#include "db/pg.h"

/*
 * Rows written by others. The schema's triggers record each change of an
 * image in thumbfs_change, with the transaction (xid) that made it, and
 * wake the mounts with NOTIFY thumbfs_images.
 */

/* Connect if needed and LISTEN (again after a reconnect). */
int db_pg_listen(struct db_pg *pg, char *err, size_t errlen);

/* How many wake-ups came since the last call (without waiting), or
 * -EAGAIN when the connection is gone. */
int db_pg_woken(struct db_pg *pg);

/* *bound: every transaction below it has ended, so the changes below it
 * are all there to read and no more will come. *horizon: the last
 * transaction whose changes were pruned, -1 if none ever were. */
int db_pg_bound(struct db_pg *pg, int64_t *bound, int64_t *horizon, char *err,
		size_t errlen);

/* Whether committed changes wait at or past bound, held back by a
 * transaction still open somewhere on the server: 1, 0, or -errno. */
int db_pg_held(struct db_pg *pg, int64_t bound, char *err, size_t errlen);

/* Who holds the bound back: the server's oldest open transaction other
 * than this connection's (its pid, user, application, client, database,
 * state and age), as one line into out. 0, or -errno with err. */
int db_pg_holder(struct db_pg *pg, char *out, size_t n, char *err,
		 size_t errlen);

/* A change of an image: its id, the path it had before the change (empty
 * for an insert, or when its batch went first), and, when PostgreSQL
 * still has the image, the row as it is now. */
struct db_pg_change {
	int64_t xid, seq; /* its transaction, and its place in the record */
	char id[37];
	char old_patient[65];
	char old_date[11];
	char old_name[256];
	bool present;
	struct db_image now;
};

/* Call fn for each change of the transactions from..to-1, in their order,
 * a page of them in memory at a time (fn may use pg meanwhile); a non-zero
 * return from fn stops the read and is returned. Returns how many, or
 * -errno. */
int db_pg_changes(struct db_pg *pg, int64_t from, int64_t to,
		  int (*fn)(const struct db_pg_change *c, void *arg), void *arg,
		  char *err, size_t errlen);

/* Delete the changes older than days, moving the horizon past them.
 * Returns how many went, or -errno. */
int db_pg_prune(struct db_pg *pg, int days, char *err, size_t errlen);

/* The image at (patient, date, name) as PostgreSQL has it now (state
 * "uploaded"; thumbnail_name left empty for the caller to derive);
 * -ENOENT if there is none. */
int db_pg_fetch_path(struct db_pg *pg, const char *patient, const char *date,
		     const char *name, struct db_image *out, char *err,
		     size_t errlen);

/* Call fn for every image in PostgreSQL, in one snapshot, one row in
 * memory at a time; a non-zero return from fn stops the scan at once (the
 * query is cancelled on the server) and is returned. *bound is the
 * snapshot's: every transaction below it is in what was read. Returns how
 * many, or -errno. */
int db_pg_scan(struct db_pg *pg,
	       int (*fn)(const struct db_image *img, void *arg), void *arg,
	       int64_t *bound, char *err, size_t errlen);

/* Whether PostgreSQL has the image id: 1, 0, or -errno. */
int db_pg_has_image(struct db_pg *pg, const char *id, char *err, size_t errlen);

#endif
