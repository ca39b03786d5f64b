/*
 * pgkey.h - store keys claimed across mounts, in PostgreSQL (thumbfs_key).
 *
 * The catalog's gate (gate.h) sees one mount's rows and jobs; these calls
 * let every mount on one database see who writes a key. A key has an
 * owner (the image "patient/date/name" whose object it holds, "" when
 * free) and a stamp: that of the last version written there, which is
 * that version's updated_at. Writers hold the key's lock (a session
 * advisory lock, so that no transaction stays open across the store's
 * request) and take a stamp past every earlier one, so the last bytes
 * under a key are those of the row with the latest updated_at; a delete
 * goes only when no write later than the version it means stamped the
 * key, unless its last write was the deleting mount's own. Writers are
 * named "host:catalog directory". Returns as pg.h; one connection per
 * thread.
 */
#ifndef DB_PGKEY_H
#define DB_PGKEY_H

#include <stddef.h>

#include "db/pg.h"

/* Take the locks of keys[0..n-1] ("" skipped), in one order on every
 * mount, without waiting: 0 with all held; -EBUSY when another holds one
 * (none is kept); -errno. */
int db_pg_keys_lock(struct db_pg *pg, const char *const *keys, int n, char *err,
		    size_t errlen);

/* Let every key lock of this connection go. */
void db_pg_keys_unlock(struct db_pg *pg);

/* owner claims key before anything is written there (a thumbnail name it
 * picks): 0 when key is now owner's; -EEXIST when another owner holds it
 * (who gets it); -errno. */
int db_pg_key_claim(struct db_pg *pg, const char *key, const char *owner,
		    char *who, size_t n, char *err, size_t errlen);

/* Holding their locks, owner writes key and key2 ("" for none): both
 * become its, with one stamp, at least stamp and past every earlier
 * write of either (stamp is set to it: the row's updated_at). 0; -EEXIST
 * when another owner holds one (who gets it, nothing changes); -errno. */
int db_pg_key_write(struct db_pg *pg, const char *key, const char *key2,
		    const char *owner, const char *writer, char stamp[32],
		    char *who, size_t n, char *err, size_t errlen);

/* Holding its lock: may a delete by mount writer, meaning the versions of
 * key stamped up to stamp ("" when it cannot say), remove it? Yes when no
 * later write stamped it, or the last write was writer's own (what a
 * mount wrote and no row of it holds is its to delete: its gate checked
 * that). 0: yes, and the key is free for any owner; 1: no, another
 * mount's later write holds it; -errno. */
int db_pg_key_free(struct db_pg *pg, const char *key, const char *stamp,
		   const char *writer, char *err, size_t errlen);

#endif
