/* sync.c - the sync runner: one thread, so that rows reach PostgreSQL in
 * queue order (up to SYNC_BATCH in a transaction), and what others write
 * there (another mount, the web app) reaches the catalog. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db/catalog.h"
#include "db/queue.h"
#include "db/remote.h"
#include "db/pg.h"
#include "db/pgread.h"
#include "fs/deferred.h"
#include "fs/handle.h"
#include "fs/job.h"
#include "fs/log.h"
#include "fs/metrics.h"
#include "fs/spool.h"
#include "fs/sync.h"
#include "fs/template.h"
#include "fs/thumbfs.h"

/* PostgreSQL jobs applied in one transaction, at most. */
#define SYNC_BATCH 200

static void set_pg_state(struct thumbfs *fs, const char *state)
{
	pthread_mutex_lock(&fs->lock);
	snprintf(fs->pg_state, sizeof(fs->pg_state), "%s", state);
	pthread_mutex_unlock(&fs->lock);
}

/* Apply one PostgreSQL job inside the open transaction. Only a row with a
 * thumbnail, a width and a height is shown to the app; a row without one
 * (an undecodable file) is taken out of PostgreSQL, and stays in the
 * catalog and the status file. */
static int apply_sync(struct thumbfs *fs, const struct db_job *job, char *what,
		      size_t wn, char *err, size_t errlen)
{
	struct db_image img;
	char batch[256];
	if (job->kind == DB_JOB_PG_DELETE) {
		struct db_tombstone t;
		fs_tree_path(what, wn, NULL, job->key, job->key2, job->name);
		int ret = db_pg_delete(fs->pg, job->key, job->key2, job->name,
				       err, errlen);
		int got =
		    ret ? ret : db_tombstone_get(fs->db, job->image_id, &t);
		if (ret == 0 && got == 0)
			ret = db_pg_tombstone(fs->pg, &t, err, errlen);
		else if (ret == 0 && got != -ENOENT) {
			/* not without its tombstone: the store's objects go
			 * once it is in PostgreSQL (db_sync_done) */
			snprintf(err, errlen,
				 "cannot read its tombstone from "
				 "the catalog: %s",
				 strerror(-got));
			ret = got;
		}
		return ret;
	}
	if (db_image_get_by_id(fs->db, job->image_id, &img))
		return 0; /* removed since: its delete follows */
	fs_tree_path(what, wn, NULL, img.patient_id, img.batch_date, img.name);
	if (!img.thumbnail_name[0] || img.width <= 0 || img.height <= 0)
		return db_pg_delete(fs->pg, img.patient_id, img.batch_date,
				    img.name, err, errlen);
	cfg_expand(fs->cfg.batch_name, img.patient_id, img.batch_date, "",
		   batch, sizeof(batch));
	return db_pg_upsert(fs->pg, &img, batch, err, errlen);
}

/* Up to SYNC_BATCH jobs in one PostgreSQL transaction: all or none. */
static void run_sync(struct thumbfs *fs, struct db_job *jobs, int n)
{
	char err[1024], what[PATH_MAX] = "", w[PATH_MAX + 32], state[1100];
	int ret = db_pg_begin(fs->pg, err, sizeof(err)), i = 0;
	for (; ret == 0 && i < n; i++)
		ret = apply_sync(fs, &jobs[i], what, sizeof(what), err,
				 sizeof(err));
	if (ret == 0)
		ret = db_pg_commit(fs->pg, err, sizeof(err));
	else
		db_pg_rollback(fs->pg);
	if (ret == 0) {
		set_pg_state(fs, "ok");
		fs_metrics_pg_ok();
		FS_SETTLE(fs, "a sync done", db_sync_done(fs->db, jobs, n));
		for (i = 0; i < n; i++)
			if (jobs[i].kind == DB_JOB_PG_UPSERT)
				fs_metrics_synced(jobs[i].image_id);
		return;
	}
	fs_metrics_failed(FS_FAIL_POSTGRES);
	/* The job that failed (the first, if it was the connection) waits;
	 * the others go back to the queue behind it, untried. */
	int bad = i > 0 ? i - 1 : 0;
	for (int k = 0; k < n; k++)
		if (k != bad)
			FS_SETTLE(fs, "a sync job",
				  db_job_release(fs->db, jobs[k].id));
	snprintf(w, sizeof(w), "sync of '%s' to PostgreSQL",
		 what[0] ? what : "a row");
	if (ret == -EPROTO) {
		/* this row only, and no retry can fix it: it waits with its
		 * reason, the others go on */
		log_error("%s refused for good: %s; it waits (thumbfs retry, "
			  "SIGHUP or the next mount try it again), the others "
			  "go on",
			  w, err);
		FS_SETTLE(fs, w, db_job_park(fs->db, jobs[bad].id, err));
		fs_jobs_kick(fs);
		return;
	}
	snprintf(state, sizeof(state), "waiting: %s", err);
	set_pg_state(fs, state);
	fs_job_retry(fs, &jobs[bad], w, err);
}

/* Whether a writer here has (patient, date, name) open: then a row from
 * elsewhere for it waits (deferred.h), and true is returned. */
static bool defer(const char *patient, const char *date, const char *name)
{
	if (!fs_handle_writer_open(patient, date, name))
		return false;
	if (fs_deferred_add(patient, date, name))
		return true;
	/* the catalog's writing mark still guards most of it */
	log_warn("%d names open for writing wait for rows from PostgreSQL: "
		 "'%s/%s/%s' does not",
		 FS_DEFERRED_MAX, patient, date, name);
	return false;
}

/* A row from PostgreSQL (another mount, the web app) made ready for the
 * catalog: false if its path is not one the mount could have made. */
static bool prepare_remote(struct thumbfs *fs, struct db_image *r)
{
	struct fs_path p;
	char path[PATH_MAX];
	if (fs_tree_path(path, sizeof(path), "", r->patient_id, r->batch_date,
			 r->name))
		return false;
	fs_path_parse(&fs->rules, path, &p);
	/* (an image's name is no thumbnail's, whatever its shape) */
	if (p.kind != FS_FILE || p.local || !r->s3_key[0])
		return false; /* nothing the tree can show */
	if (defer(r->patient_id, r->batch_date, r->name))
		return false; /* a writer here has it open */
	if (r->s3_thumbnail_key[0]) {
		/* the name its key has, when that is a thumbnail's (another
		 * mount's, or the app's {stem}_thumb{ext}); else the app's
		 * name for it */
		const char *base = strrchr(r->s3_thumbnail_key, '/');
		base = base ? base + 1 : r->s3_thumbnail_key;
		const char *ext = strrchr(base, '.');
		if (fs_is_thumb_name(base) && strlen(base) <= 255)
			snprintf(r->thumbnail_name, sizeof(r->thumbnail_name),
				 "%s", base);
		else
			fs_thumb_name(r->name, ext ? ext : "",
				      r->thumbnail_name,
				      sizeof(r->thumbnail_name));
	}
	return true;
}

/* Rows applied: the local side of each result. */
struct batch {
	struct thumbfs *fs;
	int n;
	long long read;	   /* rows a full read has applied, for the status */
	long long changes; /* changes a catch-up has applied */
	struct db_image rows[256], olds[256];
	int results[256];
	/* the last patient's and date's folders made (rows of one date
	 * mostly come together): a mkdir each, not two per row */
	char made[2][PATH_MAX];
	char err[1024]; /* why a change could not be applied */
};

static void make_dir_once(struct batch *b, int level, const char *path)
{
	if (!strcmp(b->made[level], path))
		return;
	mkdir(path, 0755);
	snprintf(b->made[level], sizeof(b->made[level]), "%s", path);
}

static int flush(struct batch *b)
{
	struct thumbfs *fs = b->fs;
	char path[PATH_MAX];
	if (!b->n)
		return 0;
	int ret =
	    db_remote_apply_many(fs->db, b->rows, b->n, b->olds, b->results);
	/* a folder made by an earlier flush may have gone since with its
	 * last row (fs_spool_drop) */
	b->made[0][0] = b->made[1][0] = '\0';
	for (int i = 0; ret == 0 && i < b->n; i++) {
		const struct db_image *r = &b->rows[i];
		if (b->results[i] == DB_REMOTE_KEPT)
			continue;
		if (b->results[i] == DB_REMOTE_REPLACED)
			fs_spool_drop(fs, &b->olds[i]);
		if (!fs_spool_file(fs, r->patient_id, NULL, NULL, path,
				   sizeof(path)))
			make_dir_once(b, 0, path);
		if (!fs_spool_file(fs, r->patient_id, r->batch_date, NULL, path,
				   sizeof(path)))
			make_dir_once(b, 1, path);
	}
	b->n = 0;
	return ret;
}

static int add_remote(const struct db_image *row, void *arg)
{
	struct batch *b = arg;
	if (fs_jobs_stopping(b->fs))
		return -EINTR; /* the unmount does not wait for the rest */
	b->rows[b->n] = *row;
	if (!prepare_remote(b->fs, &b->rows[b->n]))
		return 0;
	if (++b->n < (int)(sizeof(b->rows) / sizeof(b->rows[0])))
		return 0;
	return flush(b);
}

/* A full read's rows, counted in the status file as they come. */
static int add_read(const struct db_image *row, void *arg)
{
	struct batch *b = arg;
	if (++b->read % 10000 == 0) {
		char state[128];
		snprintf(state, sizeof(state),
			 "reading every row of PostgreSQL: %lld so far",
			 b->read);
		set_pg_state(b->fs, state);
	}
	return add_remote(row, arg);
}

/* Read all of PostgreSQL into the catalog: what others added or changed
 * appears, what they removed goes. *bound: the changes of every
 * transaction below it are in what was read. */
static int full_read(struct thumbfs *fs, int64_t *bound, char *err,
		     size_t errlen)
{
	static struct batch b; /* one full read at a time */
	struct db_image gone;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	memset(&b, 0, sizeof(b));
	b.fs = fs;
	set_pg_state(fs, "reading every row of PostgreSQL");
	int ret = db_remote_scan_begin(fs->db);
	if (ret == 0)
		ret = db_pg_scan(fs->pg, add_read, &b, bound, err, errlen);
	if (ret >= 0)
		ret = flush(&b);
	if (ret < 0)
		return ret;
	while ((ret = db_remote_gone_next(fs->db, &gone)) == 0)
		fs_spool_drop(fs, &gone);
	if (ret != -ENOENT)
		return ret;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	log_info("read every row of PostgreSQL: %lld in %.1f s", b.read,
		 (double)(t1.tv_sec - t0.tv_sec) +
		     (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}

/* The catalog's row at a path PostgreSQL may have left: it goes, unless
 * PostgreSQL has a row there now (another image took the name), which is
 * applied. always: looked up in PostgreSQL even with no row here (a name
 * whose row from elsewhere waited for a writer). */
static int vacate(struct batch *b, const char *patient, const char *date,
		  const char *name, bool always, char *err, size_t errlen)
{
	struct thumbfs *fs = b->fs;
	struct db_image here, there;
	bool had =
	    patient[0] && db_image_get(fs->db, patient, date, name, &here) == 0;
	if (!had && !always)
		return 0;
	if (defer(patient, date, name))
		return 0;
	int ret =
	    db_pg_fetch_path(fs->pg, patient, date, name, &there, err, errlen);
	if (ret == 0)
		return add_remote(&there, b);
	if (ret != -ENOENT)
		return ret;
	if (had &&
	    db_remote_forget_path(fs->db, patient, date, name, &here) == 0)
		fs_spool_drop(fs, &here);
	return 0;
}

/* The names whose writers have closed since their rows from elsewhere
 * waited: looked at again. */
static int recheck(struct thumbfs *fs, char *err, size_t errlen)
{
	static struct batch rb; /* the sync runner's */
	struct fs_deferred d;
	int ret = 0;
	memset(&rb, 0, sizeof(rb));
	rb.fs = fs;
	while (ret == 0 && fs_deferred_next(&d)) {
		if (fs_handle_writer_open(d.patient, d.date, d.name))
			fs_deferred_add(d.patient, d.date,
					d.name); /* another */
		else
			ret = vacate(&rb, d.patient, d.date, d.name, true, err,
				     errlen);
		if (ret)
			fs_deferred_again(&d);
	}
	return ret ? ret : flush(&rb);
}

/* One change of an image: the row as it is now, and the path it left. */
static int apply_change(const struct db_pg_change *c, void *arg)
{
	struct batch *b = arg;
	struct thumbfs *fs = b->fs;
	struct db_image gone;
	const struct db_image *now = c->present ? &c->now : NULL;
	if (fs_jobs_stopping(fs))
		return -EINTR; /* the unmount does not wait for the rest */
	b->changes++;
	bool left = !now || (c->old_name[0] &&
			     (strcmp(c->old_patient, now->patient_id) ||
			      strcmp(c->old_date, now->batch_date) ||
			      strcmp(c->old_name, now->name)));
	if (left) {
		/* in order: what was batched before it lands first */
		int ret = flush(b);
		if (ret)
			return ret;
		/* the image left where the catalog has it: unless a writer
		 * here has that name open */
		struct db_image here;
		bool held = db_image_get_by_id(fs->db, c->id, &here) == 0 &&
			    defer(here.patient_id, here.batch_date, here.name);
		if (!held &&
		    db_remote_forget(fs->db, c->id, now ? now->patient_id : "",
				     now ? now->batch_date : "",
				     now ? now->name : "", &gone) == 0)
			fs_spool_drop(fs, &gone);
		ret = vacate(b, c->old_patient, c->old_date, c->old_name, false,
			     b->err, sizeof(b->err));
		if (ret)
			return ret;
	}
	return now ? add_remote(now, b) : 0;
}

/* Whether another mount's prune moved the horizon to or past cursor while
 * the changes after it were read, page by page in statements of their
 * own: the changes it deleted may not have been read. 1 if so (the bound
 * stays where it was, behind the horizon, and every row is read), 0 if
 * not, or -errno. */
static int pruned_meanwhile(struct thumbfs *fs, int64_t cursor, char *err,
			    size_t errlen)
{
	int64_t bound, horizon;
	int ret = db_pg_bound(fs->pg, &bound, &horizon, err, errlen);
	if (ret == 0 && cursor <= horizon) {
		log_warn("PostgreSQL's changes up to transaction %lld were "
			 "pruned while this mount read those after %lld",
			 (long long)horizon, (long long)cursor);
		ret = 1;
	}
	return ret;
}

/* Committed changes wait past the bound (held) while a transaction stays
 * open somewhere on the server: past [postgres] held_back_warn_s, the log
 * says so once, and the status file for as long as it lasts, with the
 * session that holds it. */
static void watch_bound(struct thumbfs *fs, bool held)
{
	static time_t since; /* the sync runner's */
	static bool said;
	char line[512] = "", who[400], err[256];
	time_t now = time(NULL);
	if (!held) {
		if (said)
			log_info("the sync from PostgreSQL is no longer held "
				 "back");
		since = 0;
		said = false;
	} else if (!since) {
		since = now;
	} else if (now - since >= fs->cfg.held_back_warn_s) {
		if (db_pg_holder(fs->pg, who, sizeof(who), err, sizeof(err)))
			snprintf(who, sizeof(who), "? (%s)", err);
		snprintf(line, sizeof(line), "for %lld s, by %s",
			 (long long)(now - since), who);
		if (!said)
			log_warn("the sync from PostgreSQL is held back %s: "
				 "what the web app and other mounts change "
				 "reaches this mount once that transaction "
				 "ends",
				 line);
		said = true;
	}
	pthread_mutex_lock(&fs->lock);
	snprintf(fs->pg_held, sizeof(fs->pg_held), "%s", line);
	fs->pg_held_s = held && since ? (long long)(now - since) : 0;
	pthread_mutex_unlock(&fs->lock);
}

/* Bring the catalog up to PostgreSQL: the changes since the bound it was
 * last brought to, or, when it never was (or was away longer than the
 * changes are kept), every row. */
static int catch_up(struct thumbfs *fs, char *err, size_t errlen)
{
	static struct batch b; /* the sync runner is one thread */
	int64_t bound, horizon, cursor;
	const char *dsn = fs->cfg.pg_dsn;
	int ret = db_pg_bound(fs->pg, &bound, &horizon, err, errlen);
	if (ret)
		return ret;
	ret = db_sync_cursor(fs->db, dsn, &cursor);
	if (ret && ret != -ENOENT) {
		snprintf(err, errlen, "cannot read the catalog: %s",
			 strerror(-ret));
		return ret;
	}
	bool behind = ret == 0 && cursor <= horizon;
	/* transactions go forward: a server behind the bound is another
	 * one under the same dsn (a database restored from a dump) */
	bool other = ret == 0 && cursor > bound;
	if (behind)
		log_warn("this catalog last applied PostgreSQL's changes up to "
			 "transaction %lld; those up to %lld are pruned "
			 "([postgres] changes_kept_days): every row is read",
			 (long long)cursor, (long long)horizon);
	if (other)
		log_warn("PostgreSQL's transactions (%lld) are behind those "
			 "this catalog applied (%lld): another or a restored "
			 "database; every row is read",
			 (long long)bound, (long long)cursor);
	if (ret == -ENOENT || behind || other) {
		if ((ret = full_read(fs, &cursor, err, errlen)) ||
		    (ret = db_sync_cursor_set(fs->db, dsn, cursor)))
			return ret;
	}
	memset(&b, 0, sizeof(b));
	b.fs = fs;
	if (cursor < bound) {
		ret = db_pg_changes(fs->pg, cursor, bound, apply_change, &b,
				    err, errlen);
		if (ret < 0 && b.err[0])
			snprintf(err, errlen, "%s", b.err);
		if (ret >= 0)
			ret = flush(&b);
		if (ret == 0 &&
		    (ret = pruned_meanwhile(fs, cursor, err, errlen)) == 1)
			return catch_up(fs, err, errlen); /* reads every row */
		if (ret == 0)
			ret = db_sync_cursor_set(fs->db, dsn, bound);
	}
	if (ret == 0 && !fs->pg_caught_up)
		log_info("caught up with %lld change(s) of PostgreSQL",
			 b.changes);
	if (ret)
		return ret;
	fs->pg_caught_up = true;
	/* what waits past the bound the catalog reached (a full read's
	 * may be past the one read first) */
	int held =
	    db_pg_held(fs->pg, cursor < bound ? bound : cursor, err, errlen);
	if (held >= 0)
		watch_bound(fs, held == 1);
	return held < 0 ? held : 0;
}

int fs_read_postgres(struct thumbfs *fs, char *err, size_t errlen)
{
	int ret = db_pg_listen(fs->pg, err, errlen);
	return ret ? ret : catch_up(fs, err, errlen);
}

/* Changes older than [postgres] changes_kept_days go, once an hour. */
static void prune_changes(struct thumbfs *fs, time_t *last)
{
	char err[1024];
	time_t now = time(NULL);
	if (now - *last < 3600)
		return;
	*last = now;
	int ret =
	    db_pg_prune(fs->pg, fs->cfg.changes_kept_days, err, sizeof(err));
	if (ret > 0)
		log_info("pruned %d change(s) of PostgreSQL older than %d "
			 "day(s)",
			 ret, fs->cfg.changes_kept_days);
	else if (ret < 0)
		log_warn("cannot prune PostgreSQL's changes: %s", err);
}

void *fs_sync_main(void *arg)
{
	struct thumbfs *fs = arg;
	static struct db_job jobs[SYNC_BATCH]; /* one sync thread */
	char err[1024], state[1100];
	time_t pruned = 0;
	while (!fs_jobs_stopping(fs)) {
		/* a wake-up (NOTIFY) or not, a look costs two small queries:
		 * a change whose transaction ended after its NOTIFY is seen
		 * at the next look */
		int ret = db_pg_listen(fs->pg, err, sizeof(err));
		if (ret == 0 && db_pg_woken(fs->pg) < 0)
			ret = db_pg_listen(fs->pg, err, sizeof(err));
		if (ret == 0)
			ret = recheck(fs, err, sizeof(err));
		if (ret == 0)
			ret = catch_up(fs, err, sizeof(err));
		if (ret == -EINTR)
			break; /* the unmount came during a read */
		if (ret) {
			fs_metrics_failed(FS_FAIL_POSTGRES);
			snprintf(state, sizeof(state), "waiting: %s", err);
			pthread_mutex_lock(&fs->lock);
			bool changed = strcmp(fs->pg_state, state) != 0;
			pthread_mutex_unlock(&fs->lock);
			if (changed) {
				log_error("sync to PostgreSQL failed: %s; rows "
					  "wait in the catalog",
					  err);
				set_pg_state(fs, state);
			}
			fs_jobs_nap(fs);
			continue;
		}
		set_pg_state(fs, "ok");
		fs_metrics_pg_ok();
		prune_changes(fs, &pruned);
		ret = db_sync_claim(fs->db, jobs, SYNC_BATCH);
		if (ret > 0) {
			run_sync(fs, jobs, ret);
			continue;
		}
		if (ret != -ENOENT && ret != -EAGAIN)
			log_error("cannot read the job queue: %s",
				  strerror(-ret));
		fs_jobs_nap(fs);
	}
	return NULL;
}
