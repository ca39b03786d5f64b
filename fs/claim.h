/*
 * claim.h - the keys a runner writes or deletes, claimed across mounts
 * (db/pgkey.h) on the runner's own PostgreSQL connection; with no
 * [postgres] dsn there is nobody to claim from, and every call passes.
 *
 * A write: fs_claim_write() before the store's request (the key's lock
 * taken and held), fs_claim_end() after it. A delete: fs_claim_delete()
 * before, fs_claim_end() after. A thumbnail name: fs_claim_name() when
 * the ingest picks it.
 */
#ifndef FS_CLAIM_H
#define FS_CLAIM_H

#include <stdbool.h>
#include <stddef.h>

#include "db/catalog.h"
#include "fs/thumbfs.h"

/* The owner name of an image: "patient/date/name", into out[400]. */
void fs_claim_owner(char out[400], const struct db_image *img);

/* owner claims key, a thumbnail's it picks: 0; -EEXIST when an image of
 * another mount holds it (err says which); -EAGAIN when PostgreSQL cannot
 * be asked (err says why: fs_claim_wait). */
int fs_claim_name(struct thumbfs *fs, const char *key, const char *owner,
		  char *err, size_t errlen);

/* job is about to write key and key2 ("" for none) for owner. true: go
 * on (the keys' locks are held until fs_claim_end; stamp, the row's
 * updated_at in, is now what the row must carry, and the job records
 * it). false: the job was put back (another mount writes a key now: it
 * waits a second; another image holds one: parked; PostgreSQL away:
 * retried later), what saying what. */
bool fs_claim_write(struct thumbfs *fs, const struct db_job *job,
		    const char *key, const char *key2, const char *owner,
		    char stamp[32], const char *what);

/* Delete job may remove key, meaning the versions up to job->stamp? 0:
 * yes (its lock is held until fs_claim_end); 1: no, another mount wrote
 * it since (the key stays); -EBUSY: another mount writes it now; -errno
 * with err. */
int fs_claim_delete(struct thumbfs *fs, const struct db_job *job,
		    const char *key, char *err, size_t errlen);

/* The job waits, untried, after ret from a claim: a second when another
 * mount writes a key now (-EBUSY), else (PostgreSQL cannot be asked, said
 * once until it can) a few seconds. */
void fs_claim_wait(struct thumbfs *fs, const struct db_job *job, int ret,
		   const char *what, const char *err);

/* The keys' locks go (after the store's request). */
void fs_claim_end(struct thumbfs *fs);

/* Whether PostgreSQL still has image id (asked on the runner's own
 * connection): 1, 0, -ENOSYS with no dsn, or -errno. */
int fs_claim_has_image(struct thumbfs *fs, const char *id);

/* The runner's connection closes (at its thread's end). */
void fs_claim_close(void);

#endif
