/* worker.c - the job runner: thumbnail, upload, record; and the reconcile
 * of the spool at mount. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "fs/log.h"
#include "fs/thumbfs.h"

/* PostgreSQL jobs applied in one transaction, at most. */
#define SYNC_BATCH 200

static void read_xattr(const char *path, const char *name, char *out, size_t n)
{
	ssize_t got = lgetxattr(path, name, out, n - 1);
	out[got > 0 ? got : 0] = '\0';
}

void fs_read_meta(const char *path, struct db_image *img)
{
	read_xattr(path, "user.category", img->category, sizeof(img->category));
	read_xattr(path, "user.filemaker_id", img->filemaker_id,
		   sizeof(img->filemaker_id));
}

int fs_thumb_path(const struct thumbfs *fs, const char *patient,
		  const char *date, const char *thumb_name, char *out, size_t n)
{
	if (snprintf(out, n, "%s/%s/%s/%s", fs->thumbs, patient, date,
		     thumb_name) >= (int)n)
		return -ENAMETOOLONG;
	return 0;
}

/* The delay before try number attempts+2: exponential up to max_s, with
 * full jitter. */
static int backoff(int attempts, int max_s)
{
	unsigned r = 0;
	int cap = attempts >= 20 ? max_s : 1 << (attempts + 1);
	if (cap > max_s)
		cap = max_s;
	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (unsigned)time(NULL);
	return 1 + (int)(r % (unsigned)cap);
}

static int read_whole(const char *path, unsigned char **out, size_t *len)
{
	struct stat sb;
	int ret = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb)) {
		ret = -errno;
		goto out_close;
	}
	*len = (size_t)sb.st_size;
	*out = malloc(*len ? *len : 1);
	if (!*out) {
		ret = -ENOMEM;
		goto out_close;
	}
	size_t off = 0;
	while (off < *len) {
		ssize_t n = read(fd, *out + off, *len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : 0;
			*len = off; /* it shrank while we read: take what is */
			break;
		}
		off += (size_t)n;
	}
	if (ret) {
		free(*out);
		*out = NULL;
	}
out_close:
	close(fd);
	return ret;
}

/* Write buf to dest whole or not at all, through fs->tmp. */
static int write_cache(struct thumbfs *fs, const char *dest, const void *buf,
		       size_t len)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	int ret = 0;
	snprintf(tmp, sizeof(tmp), "%s/thumb.XXXXXX", fs->tmp);
	int fd = mkstemp(tmp);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, len) != (ssize_t)len)
		ret = errno ? -errno : -EIO;
	if (close(fd) && !ret)
		ret = -errno;
	snprintf(dir, sizeof(dir), "%s", dest);
	char *slash = strrchr(dir, '/');
	if (!ret && slash) {
		*slash = '\0';
		char *mid = strrchr(dir, '/');
		if (mid) { /* thumbs/<id>/<date>: two levels at most */
			*mid = '\0';
			mkdir(dir, 0700);
			*mid = '/';
		}
		if (mkdir(dir, 0700) && errno != EEXIST)
			ret = -errno;
	}
	if (!ret && rename(tmp, dest))
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

static void retry(struct thumbfs *fs, const struct db_job *job,
		  const char *what, const char *err)
{
	int delay = backoff(job->attempts, fs->cfg.retry_max_s);
	log_error("%s failed: %s, retry in %d s", what, err, delay);
	db_job_retry(fs->db, job->id, delay, err);
}

volatile sig_atomic_t fs_reload_pending;

/* The store refused a request (403: bad or revoked credentials, a bucket
 * policy): trying again cannot help until someone fixes the config. Say so
 * once, show it in the status file, and give the job back untried. */
static void store_refused(struct thumbfs *fs, const struct db_job *job,
			  const char *err)
{
	pthread_mutex_lock(&fs->lock);
	bool first = !fs->store_refused[0];
	snprintf(fs->store_refused, sizeof(fs->store_refused), "%s", err);
	pthread_mutex_unlock(&fs->lock);
	if (first)
		log_error("the store refused: %s; uploads wait until the "
			  "credentials are fixed (edit %s and send SIGHUP, or "
			  "remount)",
			  err,
			  fs->config_path ? fs->config_path : "the config");
	db_job_release(fs->db, job->id);
}

static bool store_held(struct thumbfs *fs)
{
	pthread_mutex_lock(&fs->lock);
	bool held = fs->store_refused[0] != '\0';
	pthread_mutex_unlock(&fs->lock);
	return held;
}

/* SIGHUP: the config's [store] credentials again, and held jobs go. */
static void reload(struct thumbfs *fs)
{
	struct cfg *cfg = malloc(sizeof(*cfg));
	char err[1024];
	if (!cfg)
		return;
	cfg_init(cfg);
	int ret = cfg_load(cfg, fs->config_path, err, sizeof(err));
	if (ret == 0) {
		ret = s3_set_credentials(fs->store, cfg->access_key_id,
					 cfg->secret_access_key, NULL);
		snprintf(err, sizeof(err), "%s",
			 ret == -EINVAL ? "no credentials" : strerror(-ret));
	}
	OPENSSL_cleanse(cfg, sizeof(*cfg));
	free(cfg);
	if (ret) {
		log_error("reload of %s failed: %s; the old settings stay",
			  fs->config_path, err);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	fs->store_refused[0] = '\0';
	pthread_cond_broadcast(&fs->cond);
	pthread_mutex_unlock(&fs->lock);
	log_info("reloaded the store's credentials from %s", fs->config_path);
}

static void run_ingest(struct thumbfs *fs, const struct db_job *job)
{
	struct db_image img, done;
	struct thumb_result res = {0};
	unsigned char *buf = NULL;
	size_t len = 0;
	char path[PATH_MAX], what[PATH_MAX], thumb_path[PATH_MAX], err[512];
	char sha[65] = "";
	bool current;
	int ret;

	if (db_image_get_by_id(fs->db, job->image_id, &img)) {
		db_job_done(fs->db, job->id); /* removed meanwhile */
		return;
	}
	snprintf(what, sizeof(what), "patients/%s/%s/%s", img.patient_id,
		 img.batch_date, img.name);
	snprintf(path, sizeof(path), "%s/%s", fs->spool, what);
	/* A file over max_bytes is kept and uploaded as it streams, without
	 * being read into memory; it gets no thumbnail. */
	struct stat st;
	bool large =
	    stat(path, &st) == 0 && (uint64_t)st.st_size > fs->thumb.max_bytes;
	if (large) {
		len = (size_t)st.st_size;
		ret = s3_sha256_file(path, sha);
	} else {
		ret = read_whole(path, &buf, &len);
	}
	if (ret == -ENOENT) {
		db_job_done(fs->db, job->id); /* renamed or removed */
		return;
	}
	if (ret) {
		snprintf(err, sizeof(err), "%s", strerror(-ret));
		retry(fs, job, "reading the spool file", err);
		return;
	}

	done = img;
	done.file_size = (int64_t)len;
	fs_read_meta(path, &done);
	if (large)
		snprintf(done.sha256, sizeof(done.sha256), "%s", sha);
	else
		s3_sha256_hex(buf, len, done.sha256);
	snprintf(done.s3_bucket, sizeof(done.s3_bucket), "%s",
		 s3_bucket(fs->store));
	err[0] = '\0';
	int terr;
	if (large) {
		unsigned char head[64];
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, head, sizeof(head)) : 0;
		if (fd >= 0)
			close(fd);
		res.format = thumb_detect(head, n > 0 ? (size_t)n : 0);
		res.mime_type = thumb_mime_type(res.format);
		snprintf(
		    err, sizeof(err),
		    "file is %zu bytes, over the limit of %llu (max_bytes)",
		    len, (unsigned long long)fs->thumb.max_bytes);
		terr = -EFBIG;
	} else {
		terr = thumb_make(buf, len, &fs->thumb, &res, err, sizeof(err));
	}
	snprintf(done.mime_type, sizeof(done.mime_type), "%s", res.mime_type);
	done.width = res.width;
	done.height = res.height;
	done.thumbnail_name[0] = '\0';
	done.s3_thumbnail_key[0] = '\0';
	done.thumbnail_size = 0;
	snprintf(done.error, sizeof(done.error), "%s", terr ? err : "");
	if (!terr) {
		fs_thumb_name(img.name, res.thumb_ext, done.thumbnail_name,
			      sizeof(done.thumbnail_name));
		done.thumbnail_size = (int64_t)res.size;
	}

	ret = cfg_key(&fs->cfg, img.patient_id, img.batch_date, img.name,
		      done.s3_key, sizeof(done.s3_key));
	if (!ret && !terr)
		ret = cfg_key(&fs->cfg, img.patient_id, img.batch_date,
			      done.thumbnail_name, done.s3_thumbnail_key,
			      sizeof(done.s3_thumbnail_key));
	if (ret) {
		log_error("key of '%s' is longer than %d bytes; not uploaded",
			  what, DB_KEY_MAX);
		db_job_done(fs->db, job->id);
		goto out_free;
	}
	if (large)
		ret = s3_put_file(fs->store, done.s3_key, path, done.mime_type,
				  err, sizeof(err));
	else
		ret = s3_put_buf(fs->store, done.s3_key, buf, len,
				 done.mime_type, err, sizeof(err));
	if (!ret && !terr)
		ret = s3_put_buf(fs->store, done.s3_thumbnail_key, res.data,
				 res.size, thumb_mime_type(res.thumb_format),
				 err, sizeof(err));
	if (ret == -EACCES) {
		store_refused(fs, job, err);
		goto out_free;
	}
	if (ret) {
		char w[PATH_MAX + 16];
		snprintf(w, sizeof(w), "upload of '%s'", what);
		retry(fs, job, w, err);
		goto out_free;
	}
	if (!terr) {
		fs_thumb_path(fs, img.patient_id, img.batch_date,
			      done.thumbnail_name, thumb_path,
			      sizeof(thumb_path));
		ret = write_cache(fs, thumb_path, res.data, res.size);
		if (ret)
			log_warn("cannot cache thumbnail '%s': %s", thumb_path,
				 strerror(-ret));
	}
	/* A thumbnail under another name (the format changed) is stale. */
	if (img.thumbnail_name[0] &&
	    strcmp(img.thumbnail_name, done.thumbnail_name) &&
	    !fs_thumb_path(fs, img.patient_id, img.batch_date,
			   img.thumbnail_name, thumb_path, sizeof(thumb_path)))
		unlink(thumb_path);

	ret = db_ingest_done(fs->db, job, &done, &current);
	if (ret == 0 && current && fs->pg)
		fs_worker_kick(fs); /* the sync runner has a row to send */
	if (ret) {
		log_error("catalog update of '%s' failed: %s", what,
			  strerror(-ret));
		goto out_free;
	}
	if (!current)
		goto out_free;
	fs_cache_added(fs->cache, (uint64_t)len + res.size);
	if (terr)
		log_error("thumbnail of '%s' failed: %s; the original is kept "
			  "and uploaded",
			  what, done.error);
	else
		log_info("imported %s (%dx%d, thumb %dx%d, %.1f MB)", what,
			 res.width, res.height, res.thumb_width,
			 res.thumb_height, (double)len / 1e6);
	if (fs->audit) { /* what the store now has, by its hash */
		char shown[PATH_MAX + 1];
		snprintf(shown, sizeof(shown), "/%s", what);
		struct audit_event e = {.op = "stored",
					.path = shown,
					.sha256 = done.sha256,
					.size = done.file_size,
					.uid = getuid(),
					.pid = getpid()};
		audit_log(fs->audit, &e);
	}
out_free:
	free(buf);
	thumb_result_release(&res);
}

/* The content of stored image img into *buf: from its spool file when that
 * holds it, else from the store (through tmp/). */
static int read_stored(struct thumbfs *fs, const struct db_image *img,
		       unsigned char **buf, size_t *len, char *err,
		       size_t errlen)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/patients/%s/%s/%s", fs->spool,
		 img->patient_id, img->batch_date, img->name);
	if (db_image_evicted(fs->db, img->patient_id, img->batch_date,
			     img->name) == 0 &&
	    read_whole(path, buf, len) == 0)
		return 0;
	snprintf(path, sizeof(path), "%s/backfill.%s", fs->tmp, img->id);
	int ret = s3_get_file(fs->store, img->s3_key, path, err, errlen);
	if (ret == 0 && (ret = read_whole(path, buf, len)))
		snprintf(err, errlen, "%s", strerror(-ret));
	unlink(path);
	return ret;
}

/* A stored row with no thumbnail (imported before thumbnails): make it
 * from the stored original, store it beside it, record it. */
static void run_backfill(struct thumbfs *fs, const struct db_job *job)
{
	struct db_image img, done;
	struct thumb_result res = {0};
	unsigned char *buf = NULL;
	size_t len = 0;
	char what[PATH_MAX], err[512], path[PATH_MAX];
	bool current;

	if (db_image_get_by_id(fs->db, job->image_id, &img) ||
	    img.gen != job->gen || img.s3_thumbnail_key[0] || img.error[0]) {
		db_job_done(fs->db, job->id); /* changed or made meanwhile */
		return;
	}
	snprintf(what, sizeof(what), "patients/%s/%s/%s", img.patient_id,
		 img.batch_date, img.name);
	int ret = 0;
	if ((uint64_t)img.file_size > fs->thumb.max_bytes) {
		snprintf(err, sizeof(err),
			 "file is %lld bytes, over the limit of %llu "
			 "(max_bytes)",
			 (long long)img.file_size,
			 (unsigned long long)fs->thumb.max_bytes);
		ret = -EFBIG;
	} else if ((ret =
			read_stored(fs, &img, &buf, &len, err, sizeof(err)))) {
		if (ret == -EACCES)
			store_refused(fs, job, err);
		else
			retry(fs, job, "reading the original to backfill", err);
		return;
	}
	if (ret == 0)
		ret = thumb_make(buf, len, &fs->thumb, &res, err, sizeof(err));
	if (ret) {
		/* the row stays as the app has it; the reason is kept so
		 * that it is not tried at every listing */
		log_error("thumbnail of '%s' cannot be made: %s", what, err);
		db_backfill_failed(fs->db, job, err);
		goto out_free;
	}
	done = img;
	fs_thumb_name(img.name, res.thumb_ext, done.thumbnail_name,
		      sizeof(done.thumbnail_name));
	/* beside the original, as the app names it: {stem}_thumb{ext} */
	const char *slash = strrchr(img.s3_key, '/');
	int dir = slash ? (int)(slash - img.s3_key + 1) : 0;
	if (snprintf(done.s3_thumbnail_key, sizeof(done.s3_thumbnail_key),
		     "%.*s%s", dir, img.s3_key, done.thumbnail_name) >=
	    (int)sizeof(done.s3_thumbnail_key)) {
		db_backfill_failed(fs->db, job, "thumbnail key too long");
		goto out_free;
	}
	done.thumbnail_size = (int64_t)res.size;
	done.width = res.width;
	done.height = res.height;
	if (!done.mime_type[0])
		snprintf(done.mime_type, sizeof(done.mime_type), "%s",
			 res.mime_type);
	if (!done.sha256[0])
		s3_sha256_hex(buf, len, done.sha256);
	if (!done.s3_bucket[0])
		snprintf(done.s3_bucket, sizeof(done.s3_bucket), "%s",
			 s3_bucket(fs->store));
	ret = s3_put_buf(fs->store, done.s3_thumbnail_key, res.data, res.size,
			 thumb_mime_type(res.thumb_format), err, sizeof(err));
	if (ret == -EACCES) {
		store_refused(fs, job, err);
		goto out_free;
	}
	if (ret) {
		retry(fs, job, "upload of a backfilled thumbnail", err);
		goto out_free;
	}
	if (!fs_thumb_path(fs, img.patient_id, img.batch_date,
			   done.thumbnail_name, path, sizeof(path)) &&
	    write_cache(fs, path, res.data, res.size) == 0)
		fs_cache_added(fs->cache, res.size);
	ret = db_ingest_done(fs->db, job, &done, &current);
	if (ret)
		log_error("catalog update of '%s' failed: %s", what,
			  strerror(-ret));
	else if (current)
		log_info("backfilled the thumbnail of %s (%dx%d, thumb %dx%d)",
			 what, res.width, res.height, res.thumb_width,
			 res.thumb_height);
	if (ret == 0 && current && fs->pg)
		fs_worker_kick(fs);
out_free:
	free(buf);
	thumb_result_release(&res);
}

static void run_delete(struct thumbfs *fs, const struct db_job *job)
{
	char err[512];
	int ret = 0;
	if (job->key[0])
		ret = s3_delete(fs->store, job->key, err, sizeof(err));
	if (!ret && job->key2[0])
		ret = s3_delete(fs->store, job->key2, err, sizeof(err));
	if (ret == -EACCES)
		store_refused(fs, job, err);
	else if (ret)
		retry(fs, job, "delete", err);
	else
		db_job_done(fs->db, job->id);
}

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
		snprintf(what, wn, "patients/%s/%s/%s", job->key, job->key2,
			 job->name);
		int ret = db_pg_delete(fs->pg, job->key, job->key2, job->name,
				       err, errlen);
		if (ret == 0 &&
		    db_tombstone_get(fs->db, job->image_id, &t) == 0)
			ret = db_pg_tombstone(fs->pg, &t, err, errlen);
		return ret;
	}
	if (db_image_get_by_id(fs->db, job->image_id, &img))
		return 0; /* removed since: its delete follows */
	snprintf(what, wn, "patients/%s/%s/%s", img.patient_id, img.batch_date,
		 img.name);
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
		ret = db_sync_done(fs->db, jobs, n);
		if (ret)
			log_error("catalog update after sync failed: %s",
				  strerror(-ret));
		return;
	}
	/* The job that failed (the first, if it was the connection) waits;
	 * the others go back to the queue behind it, untried. */
	int bad = i > 0 ? i - 1 : 0;
	for (int k = 0; k < n; k++)
		if (k != bad)
			db_job_release(fs->db, jobs[k].id);
	snprintf(w, sizeof(w), "sync of '%s' to PostgreSQL",
		 what[0] ? what : "a row");
	snprintf(state, sizeof(state), "waiting: %s", err);
	set_pg_state(fs, state);
	retry(fs, &jobs[bad], w, err);
}

/* Sleep until kicked, stopped, or a second has passed. */
static void nap(struct thumbfs *fs)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	pthread_mutex_lock(&fs->lock);
	if (!fs->stop)
		pthread_cond_timedwait(&fs->cond, &fs->lock, &until);
	pthread_mutex_unlock(&fs->lock);
}

static bool stopping(struct thumbfs *fs)
{
	pthread_mutex_lock(&fs->lock);
	bool stop = fs->stop;
	pthread_mutex_unlock(&fs->lock);
	return stop;
}

/* The sync runner: one thread, so rows reach PostgreSQL in queue order. */
/* Drop the local copies of img (its spool file and cached thumbnail): the
 * store has other content under its name now, or none. */
static void drop_local(struct thumbfs *fs, const struct db_image *img)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/patients/%s/%s/%s", fs->spool,
		 img->patient_id, img->batch_date, img->name);
	unlink(path);
	if (img->thumbnail_name[0] &&
	    !fs_thumb_path(fs, img->patient_id, img->batch_date,
			   img->thumbnail_name, path, sizeof(path)))
		unlink(path);
}

/* A row from PostgreSQL (another mount, the web app): shown if its path
 * is one the mount could have made. */
static int apply_remote(const struct db_image *row, void *arg)
{
	struct thumbfs *fs = arg;
	struct db_image r = *row, old;
	struct fs_path p;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "/patients/%s/%s/%s", r.patient_id,
		 r.batch_date, r.name);
	fs_path_parse(&fs->rules, path, &p);
	if (p.kind != FS_FILE || p.local || p.thumb || !r.s3_key[0])
		return 0; /* nothing the tree can show */
	if (r.s3_thumbnail_key[0]) {
		const char *base = strrchr(r.s3_thumbnail_key, '/');
		const char *ext =
		    strrchr(base ? base : r.s3_thumbnail_key, '.');
		fs_thumb_name(r.name, ext ? ext : "", r.thumbnail_name,
			      sizeof(r.thumbnail_name));
	}
	int ret = db_remote_apply(fs->db, &r, &old);
	if (ret == DB_REMOTE_NEW) {
		snprintf(path, sizeof(path), "%s/patients/%s", fs->spool,
			 r.patient_id);
		mkdir(path, 0755);
		snprintf(path, sizeof(path), "%s/patients/%s/%s", fs->spool,
			 r.patient_id, r.batch_date);
		mkdir(path, 0755);
	} else if (ret == DB_REMOTE_REPLACED) {
		drop_local(fs, &old);
	}
	return ret < 0 ? ret : 0;
}

static void gone_remote(const struct db_image *img, void *arg)
{
	drop_local(arg, img);
}

/* Read all of PostgreSQL into the catalog: what others added or changed
 * appears, what they removed goes. */
static int full_read(struct thumbfs *fs, char *err, size_t errlen)
{
	int ret = db_remote_scan_begin(fs->db);
	if (ret == 0)
		ret = db_pg_scan(fs->pg, apply_remote, fs, err, errlen);
	if (ret >= 0)
		ret = db_remote_scan_end(fs->db, gone_remote, fs);
	return ret < 0 ? ret : 0;
}

int fs_read_postgres(struct thumbfs *fs, char *err, size_t errlen)
{
	int ret = db_pg_listen(fs->pg, err, errlen);
	return ret ? ret : full_read(fs, err, errlen);
}

/* Changes announced since the last look; -EAGAIN when a full read is due
 * (a delete was announced, or the connection was lost). */
static int read_announced(struct thumbfs *fs, char *err, size_t errlen)
{
	char ids[64][37];
	struct db_image r;
	bool rescan = false;
	int n = db_pg_notified(fs->pg, ids, 64, &rescan);
	for (int i = 0; i < n; i++) {
		int ret = db_pg_fetch(fs->pg, ids[i], &r, err, errlen);
		if (ret == 0)
			ret = apply_remote(&r, fs);
		if (ret == -ENOENT)
			rescan = true; /* gone again already */
		else if (ret)
			return ret;
	}
	return n < 0 ? n : rescan ? -EAGAIN : 0;
}

/* The sync runner: one thread, so rows reach PostgreSQL in queue order,
 * and what others write reaches the catalog. */
static void *sync_main(void *arg)
{
	struct thumbfs *fs = arg;
	static struct db_job jobs[SYNC_BATCH]; /* one sync thread */
	char err[1024], state[1100];
	bool need_read = true;
	while (!stopping(fs)) {
		int ret = db_pg_listen(fs->pg, err, sizeof(err));
		if (ret == 0 && need_read)
			ret = full_read(fs, err, sizeof(err));
		if (ret == 0) {
			need_read = false;
			ret = read_announced(fs, err, sizeof(err));
			if (ret == -EAGAIN) {
				need_read = true;
				continue;
			}
		}
		if (ret) {
			need_read = true;
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
			nap(fs);
			continue;
		}
		set_pg_state(fs, "ok");
		ret = db_sync_claim(fs->db, jobs, SYNC_BATCH);
		if (ret > 0) {
			run_sync(fs, jobs, ret);
			continue;
		}
		if (ret != -ENOENT && ret != -EAGAIN)
			log_error("cannot read the job queue: %s",
				  strerror(-ret));
		nap(fs);
	}
	return NULL;
}

#define WORKER_NICE 10

/* The catalog's log into the catalog, here rather than in a commit that
 * a close() waits for. Said once per run of failures. */
static void checkpoint(struct thumbfs *fs)
{
	static _Atomic bool failing;
	int ret = db_checkpoint(fs->db);
	if (ret < 0 && !failing)
		log_warn("cannot checkpoint the catalog's write-ahead log; "
			 "it grows until a later try succeeds");
	if (ret != 0)
		failing = ret < 0;
}

static void *worker_main(void *arg)
{
	struct thumbfs *fs = arg;
	struct db_job job;
	/* Thumbnails are background work: the requests of the people and
	 * programs using the mount (a close() waiting for its catalog row)
	 * take the CPU first, and the runners take the rest. */
	pthread_setname_np(pthread_self(), "thumbfs-job");
	setpriority(PRIO_PROCESS, (id_t)gettid(), WORKER_NICE);
	while (!stopping(fs)) {
		pthread_mutex_lock(&fs->lock);
		bool hup = fs_reload_pending;
		fs_reload_pending = 0;
		pthread_mutex_unlock(&fs->lock);
		if (hup)
			reload(fs);
		if (store_held(fs)) {
			nap(fs); /* until SIGHUP, or the unmount */
			continue;
		}
		int ret = db_job_claim(fs->db, &job);
		if (ret == 0) {
			if (job.kind == DB_JOB_INGEST)
				run_ingest(fs, &job);
			else if (job.kind == DB_JOB_BACKFILL)
				run_backfill(fs, &job);
			else
				run_delete(fs, &job);
			fs_cache_trim(fs);
			checkpoint(fs);
			continue;
		}
		if (ret != -ENOENT)
			log_error("cannot read the job queue: %s",
				  strerror(-ret));
		fs_cache_trim(fs);
		checkpoint(fs);
		nap(fs); /* nothing due */
	}
	return NULL;
}

void fs_worker_kick(struct thumbfs *fs)
{
	pthread_mutex_lock(&fs->lock);
	pthread_cond_broadcast(&fs->cond);
	pthread_mutex_unlock(&fs->lock);
}

int fs_worker_start(struct thumbfs *fs)
{
	fs->threads = calloc((size_t)fs->cfg.workers, sizeof(pthread_t));
	if (!fs->threads)
		return -ENOMEM;
	for (int i = 0; i < fs->cfg.workers; i++) {
		int e = pthread_create(&fs->threads[i], NULL, worker_main, fs);
		if (e) {
			fs_worker_stop(fs);
			return -e;
		}
		fs->n_threads++;
	}
	if (fs->pg) {
		int e = pthread_create(&fs->sync_thread, NULL, sync_main, fs);
		if (e) {
			fs_worker_stop(fs);
			return -e;
		}
		fs->sync_running = true;
	}
	return 0;
}

static int64_t pending(struct thumbfs *fs)
{
	struct db_counts c;
	if (db_counts(fs->db, &c))
		return -1;
	return c.jobs_ingest + c.jobs_delete + c.jobs_backfill +
	       (fs->pg ? c.jobs_sync : 0);
}

void fs_worker_drain(struct thumbfs *fs, int seconds)
{
	struct timespec t0, now;
	int64_t left = pending(fs);
	if (left <= 0)
		return;
	log_info("%lld job(s) still queued; working on for up to %d s",
		 (long long)left, seconds);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		left = pending(fs);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (left <= 0 || now.tv_sec - t0.tv_sec >= seconds)
			break;
		fs_worker_kick(fs);
		struct timespec nap = {0, 100 * 1000 * 1000};
		nanosleep(&nap, NULL);
	}
	if (left > 0)
		log_warn("%lld job(s) left in the catalog for the next mount",
			 (long long)left);
	else
		log_info("every queued job is done");
}

void fs_worker_stop(struct thumbfs *fs)
{
	pthread_mutex_lock(&fs->lock);
	fs->stop = true;
	pthread_cond_broadcast(&fs->cond);
	pthread_mutex_unlock(&fs->lock);
	for (int i = 0; i < fs->n_threads; i++)
		pthread_join(fs->threads[i], NULL);
	if (fs->sync_running)
		pthread_join(fs->sync_thread, NULL);
	fs->sync_running = false;
	free(fs->threads);
	fs->threads = NULL;
	fs->n_threads = 0;
}

/* Call fn for each entry of dir that is not "." or ".." (a missing dir
 * has none); a non-zero return stops the walk and is returned. */
static int each_entry(const char *dir,
		      int (*fn)(const char *dir, const char *name, void *arg),
		      void *arg)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int ret = 0;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while (!ret && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		ret = fn(dir, e->d_name, arg);
	}
	closedir(d);
	return ret;
}

struct tree_walk {
	int (*fn)(const char *path, const char *patient, const char *date,
		  const char *name, void *arg);
	void *arg;
	char patient[256];
	char date[256];
};

static int walk_file(const char *dir, const char *name, void *arg)
{
	struct tree_walk *t = arg;
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    (int)sizeof(path))
		return 0;
	return t->fn(path, t->patient, t->date, name, t->arg);
}

static int walk_batch(const char *dir, const char *name, void *arg)
{
	struct tree_walk *t = arg;
	char path[PATH_MAX];
	snprintf(t->date, sizeof(t->date), "%s", name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return each_entry(path, walk_file, t);
}

static int walk_patient(const char *dir, const char *name, void *arg)
{
	struct tree_walk *t = arg;
	char path[PATH_MAX];
	snprintf(t->patient, sizeof(t->patient), "%s", name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return each_entry(path, walk_batch, t);
}

int fs_each_file(const char *top,
		 int (*fn)(const char *path, const char *patient,
			   const char *date, const char *name, void *arg),
		 void *arg)
{
	struct tree_walk t = {.fn = fn, .arg = arg};
	return each_entry(top, walk_patient, &t);
}

struct walk {
	struct thumbfs *fs;
	int queued;
};

static int reconcile_file(const char *path, const char *patient,
			  const char *date, const char *name, void *arg)
{
	struct walk *w = arg;
	char fpath[PATH_MAX];
	struct fs_path p;
	struct stat sb;
	snprintf(fpath, sizeof(fpath), "/patients/%s/%s/%s", patient, date,
		 name);
	fs_path_parse(&w->fs->rules, fpath, &p);
	if (p.kind != FS_FILE || p.local || p.thumb || lstat(path, &sb) ||
	    !S_ISREG(sb.st_mode))
		return 0;
	char who[256]; /* the writer is gone: the file's owner wrote it */
	cfg_uploaded_by(&w->fs->cfg, sb.st_uid, who, sizeof(who));
	int ret = db_reconcile(w->fs->db, p.patient, p.date, p.name,
			       (int64_t)sb.st_size, who);
	if (ret < 0)
		return ret;
	w->queued += ret;
	return 0;
}

/* Images a daemon that died was writing, whose writer was never told they
 * were saved: the partial spool file goes; the row keeps the store's whole
 * copy if there is one, or goes too. */
static int abort_writes(struct thumbfs *fs)
{
	struct db_image img;
	char path[PATH_MAX];
	int ret;
	bool kept;
	while ((ret = db_writing_first(fs->db, &img)) == 0) {
		snprintf(path, sizeof(path), "%s/patients/%s/%s/%s", fs->spool,
			 img.patient_id, img.batch_date, img.name);
		if (unlink(path) && errno != ENOENT)
			return -errno;
		ret = db_writing_abort(fs->db, img.patient_id, img.batch_date,
				       img.name, &kept);
		if (ret)
			return ret;
		log_warn("patients/%s/%s/%s was being written when thumbfs "
			 "stopped, and its writer was not told it was saved: "
			 "%s",
			 img.patient_id, img.batch_date, img.name,
			 kept ? "its last uploaded content is kept"
			      : "it is removed");
	}
	return ret == -ENOENT ? 0 : ret;
}

int fs_reconcile(struct thumbfs *fs)
{
	char path[PATH_MAX];
	struct walk w = {.fs = fs};
	int aborted = abort_writes(fs);
	if (aborted)
		return aborted;
	snprintf(path, sizeof(path), "%s/patients", fs->spool);
	int ret = fs_each_file(path, reconcile_file, &w);
	return ret ? ret : w.queued;
}

char *fs_status_text(struct thumbfs *fs)
{
	struct db_counts c;
	char errors[LOG_KEEP * 520];
	char *out = NULL, pg[600], store[600], cache[128];
	int ret = db_counts(fs->db, &c);
	log_last_errors(errors, sizeof(errors));
	fs_cache_describe(fs->cache, cache, sizeof(cache));
	pthread_mutex_lock(&fs->lock);
	snprintf(store, sizeof(store), "%s%s%s", s3_bucket(fs->store),
		 fs->store_refused[0] ? " refused: " : " ok",
		 fs->store_refused);
	snprintf(pg, sizeof(pg), "%s",
		 !fs->pg	   ? "off (no dsn)"
		 : fs->pg_state[0] ? fs->pg_state
				   : "ok");
	pthread_mutex_unlock(&fs->lock);
	if (asprintf(&out,
		     "catalog: %s\n"
		     "store: %s\n"
		     "postgres: %s\n"
		     "images spooled: %lld\n"
		     "images uploaded: %lld\n"
		     "thumbnail errors: %lld\n"
		     "queue ingest: %lld\n"
		     "queue delete: %lld\n"
		     "queue postgres: %lld\n"
		     "queue backfill: %lld\n"
		     "queue retrying: %lld\n"
		     "cache: %s\n"
		     "last errors:\n%s",
		     ret ? "unreadable" : "ok", store, pg, (long long)c.spooled,
		     (long long)c.uploaded, (long long)c.thumb_errors,
		     (long long)c.jobs_ingest, (long long)c.jobs_delete,
		     (long long)c.jobs_sync, (long long)c.jobs_backfill,
		     (long long)c.jobs_retrying, cache, errors) < 0)
		out = NULL;
	return out;
}
