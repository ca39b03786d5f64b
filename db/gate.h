/*
 * gate.h - one owner per store key: every PUT, copy and delete of a key
 * passes here first, in the catalog's transaction, and is told whether
 * the key may change now.
 *
 * The rule (docs/design.md, "One owner per store key"): a job writes a
 * key only when no delete of it waits (the delete was decided first and
 * goes first), no other job is writing it, and no other image's row holds
 * it; a delete removes a key only when no job is writing it, and not at
 * all once a row holds it again. A job that passes records the keys it
 * writes (jobs.put_key, put_key2): they count as being written while it
 * is claimed, and are kept after, so that what a run could not record (a
 * crash after the PUT, a rewrite that changed the thumbnail's format) is
 * deleted when the job next writes other keys, or goes.
 */
#ifndef DB_GATE_H
#define DB_GATE_H

#include <stdint.h>

#include "db/catalog.h"

/* May job (claimed, of its image) write key and key2 ("" for none) now?
 * 0: yes, recorded on the job. -EBUSY: not yet (a delete of it waits, a
 * job writes it, or the image that holds it moves away from it): the job
 * waits (db_job_wait). -EEXIST: another image's row holds it, with no
 * move pending; who names that image's path. -errno otherwise. */
int db_gate_put(struct db *db, const struct db_job *job, const char *key,
		const char *key2, char *who, size_t n);

/* The image's waiting ingests go (it is removed): what they wrote
 * before and could not record (their put keys) goes too, if nobody holds
 * it. Under the catalog's lock. */
int db_gate_drop_puts_locked(struct db *db, const char *image_id);

/* May delete job remove key now? 0: yes. 1: no, ever: a row holds it
 * again (the key is in use; its delete is dropped). -EBUSY: not yet, a
 * job is writing it. -errno otherwise. */
int db_gate_delete(struct db *db, const struct db_job *job, const char *key);

/* Whether a row holds key, as its original's or its thumbnail's: 1, 0,
 * or -errno. Under the catalog's lock: every queued delete asks it first
 * (and the gate again when the delete runs). */
int db_key_held_locked(struct db *db, const char *key);

/* The job ends with nothing to record (its image removed, or written
 * again and its newer job queued): what it stored before and could not
 * record (its put keys) goes, if nobody holds it, and the job goes. */
int db_job_drop(struct db *db, const struct db_job *job);

/* The job stamped what it writes so (db/pgkey.h, db_pg_key_write): a
 * delete of what it could not record means that version. */
int db_job_stamp(struct db *db, int64_t job_id, const char *stamp);

/* The job lets its claim go and waits delay_s seconds, untried: not a
 * failure, and no attempt counted. */
int db_job_wait(struct db *db, int64_t job_id, int delay_s);

#endif
