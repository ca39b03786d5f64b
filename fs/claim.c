/* claim.c - a runner's side of the keys claimed across mounts: its own
 * PostgreSQL connection, and the claim, lock and release of each key it
 * writes or deletes (see claim.h, db/pgkey.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "db/gate.h"
#include "db/pgkey.h"
#include "db/pgread.h"
#include "fs/claim.h"
#include "fs/job.h"
#include "fs/log.h"
#include "s3/s3.h"

/* PostgreSQL cannot be asked: said once, until a claim passes again. */
static _Atomic bool pg_away;
#define AWAY_WAIT_S 5 /* what waits for it tries again after this */

static void back(void)
{
	if (atomic_load(&pg_away) && atomic_exchange(&pg_away, false))
		log_info("PostgreSQL answers again: uploads go on");
}

/* One connection per runner thread, opened at its first claim: claims
 * never wait behind the sync runner's long reads. */
static _Thread_local struct db_pg *runner_pg;

/* The runner's connection, or NULL when there is no dsn (or no memory:
 * -ENOMEM then in *ret). */
static struct db_pg *conn(struct thumbfs *fs, int *ret)
{
	*ret = 0;
	if (!fs->pg)
		return NULL;
	if (!runner_pg && !(runner_pg = db_pg_new(fs->cfg.pg_dsn)))
		*ret = -ENOMEM;
	return runner_pg;
}

/* This mount, as thumbfs_key.writer names it: host:catalog directory. */
static void writer(struct thumbfs *fs, char out[1100])
{
	char host[64] = "";
	gethostname(host, sizeof(host) - 1);
	snprintf(out, 1100, "%s:%s", host, fs->cfg.catalog_dir);
}

/* A store key as thumbfs_key names it: its bucket's, "bucket/key" ("" for
 * none), as two buckets may share one database. */
#define CLAIM_KEY_MAX (DB_KEY_MAX + 256)
static void claim_key(struct thumbfs *fs, const char *key,
		      char out[CLAIM_KEY_MAX])
{
	if (key[0])
		snprintf(out, CLAIM_KEY_MAX, "%s/%s", s3_bucket(fs->store),
			 key);
	else
		out[0] = '\0';
}

void fs_claim_owner(char out[400], const struct db_image *img)
{
	db_image_name(out, img->patient_id, img->batch_date, img->name);
}

int fs_claim_name(struct thumbfs *fs, const char *key, const char *owner,
		  char *err, size_t errlen)
{
	int ret;
	struct db_pg *pg = conn(fs, &ret);
	if (!pg)
		return ret;
	char who[400] = "", k[CLAIM_KEY_MAX];
	claim_key(fs, key, k);
	ret = db_pg_key_claim(pg, k, owner, who, sizeof(who), err, errlen);
	if (ret == -EEXIST)
		snprintf(err, errlen, "'%s' is held by '%s'", key, who);
	else if (ret == 0)
		back();
	return ret == 0 || ret == -EEXIST ? ret : -EAGAIN;
}

bool fs_claim_write(struct thumbfs *fs, const struct db_job *job,
		    const char *key, const char *key2, const char *owner,
		    char stamp[32], const char *what)
{
	char err[512] = "", who[400] = "";
	int ret;
	struct db_pg *pg = conn(fs, &ret);
	if (!pg && !ret)
		return true;
	char k1[CLAIM_KEY_MAX], k2[CLAIM_KEY_MAX];
	claim_key(fs, key, k1);
	claim_key(fs, key2, k2);
	const char *const keys[] = {k1, k2};
	if (ret == 0)
		ret = db_pg_keys_lock(pg, keys, 2, err, sizeof(err));
	if (ret == 0) {
		char me[1100];
		writer(fs, me);
		ret = db_pg_key_write(pg, k1, k2, owner, me, stamp, who,
				      sizeof(who), err, sizeof(err));
		if (ret)
			db_pg_keys_unlock(pg);
	}
	if (ret == 0) {
		back();
		FS_SETTLE(fs, what, ret = db_job_stamp(fs->db, job->id, stamp));
		if (ret == 0)
			return true;
		db_pg_keys_unlock(pg);
		return false;
	}
	if (ret == -EEXIST) {
		snprintf(err, sizeof(err),
			 "its store key is held by another image, '%s' (on "
			 "another mount)",
			 who);
		fs_job_key_held(fs, job, what, err);
	} else {
		fs_claim_wait(fs, job, ret, what, err);
	}
	return false;
}

void fs_claim_wait(struct thumbfs *fs, const struct db_job *job, int ret,
		   const char *what, const char *err)
{
	if (ret == -EBUSY) {
		FS_SETTLE(fs, what, db_job_wait(fs->db, job->id, 1));
		return;
	}
	if (!atomic_exchange(&pg_away, true))
		log_error("%s waits: its keys cannot be claimed in PostgreSQL "
			  "(%s); uploads and deletes wait for it, trying "
			  "every %d s",
			  what, err[0] ? err : strerror(-ret), AWAY_WAIT_S);
	FS_SETTLE(fs, what, db_job_wait(fs->db, job->id, AWAY_WAIT_S));
}

int fs_claim_delete(struct thumbfs *fs, const struct db_job *job,
		    const char *key, char *err, size_t errlen)
{
	int ret;
	struct db_pg *pg = conn(fs, &ret);
	if (!pg) {
		if (ret)
			snprintf(err, errlen, "%s", strerror(-ret));
		return ret;
	}
	char k[CLAIM_KEY_MAX];
	claim_key(fs, key, k);
	const char *const keys[] = {k};
	ret = db_pg_keys_lock(pg, keys, 1, err, errlen);
	if (ret == 0) {
		char me[1100];
		writer(fs, me);
		ret = db_pg_key_free(pg, k, job->stamp, me, err, errlen);
		if (ret)
			db_pg_keys_unlock(pg);
	}
	if (ret == 0)
		back();
	return ret;
}

void fs_claim_end(struct thumbfs *fs)
{
	int ret;
	struct db_pg *pg = conn(fs, &ret);
	if (pg)
		db_pg_keys_unlock(pg);
}

void fs_claim_close(void)
{
	db_pg_free(runner_pg);
	runner_pg = NULL;
}

int fs_claim_has_image(struct thumbfs *fs, const char *id)
{
	char err[512];
	int ret;
	struct db_pg *pg = conn(fs, &ret);
	if (!pg)
		return ret ? ret : -ENOSYS;
	return db_pg_has_image(pg, id, err, sizeof(err));
}
