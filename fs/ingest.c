/* ingest.c - the store jobs: an ingest (read the spool file, thumbnail it,
 * upload both objects, record them), a backfill (a thumbnail for a stored
 * row that has none), and a delete (a removed image's objects). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/catalog.h"
#include "db/evict.h"
#include "db/move.h"
#include "db/queue.h"
#include "db/gate.h"
#include "fs/audit.h"
#include "fs/cache.h"
#include "fs/claim.h"
#include "fs/ingest.h"
#include "fs/job.h"
#include "fs/log.h"
#include "fs/metrics.h"
#include "fs/reload.h"
#include "fs/path.h"
#include "fs/spool.h"
#include "fs/thumbfs.h"
#include "s3/s3.h"
#include "thumb/worker.h"
#include "thumb/thumb.h"

/* The audit log's line for what the store now has, by its hash. */
static void audit_stored(struct thumbfs *fs, const struct db_image *img)
{
	char shown[PATH_MAX];
	if (!fs->audit ||
	    fs_tree_path(shown, sizeof(shown), "", img->patient_id,
			 img->batch_date, img->name))
		return;
	struct audit_event e = {.op = "stored",
				.path = shown,
				.sha256 = img->sha256,
				.size = img->file_size,
				.uid = getuid(),
				.pid = getpid()};
	audit_log(fs->audit, &e);
}

/* The thumbnail name and key of image img (stored under image_key), of
 * type ext: the name it holds if that has this type, else the first of
 * its candidates (fs_thumb_candidate) no other image of its date holds,
 * on this mount or another: claimed across mounts (fs_claim_name), then
 * in the catalog, before anything is stored under it. 0, or -errno with
 * err said. */
static int claim_thumb(struct thumbfs *fs, const struct db_image *img,
		       const char *image_key, const char *ext,
		       struct db_image *done, char *err, size_t errlen)
{
	size_t n = strlen(img->thumb_claim), e = strlen(ext);
	char owner[400], held_key[DB_KEY_MAX] = "";
	int ret = -EEXIST;
	fs_claim_owner(owner, img);
	if (img->thumb_claim[0] && fs_thumb_key(image_key, img->thumb_claim,
						held_key, sizeof(held_key)))
		held_key[0] = '\0';
	err[0] = '\0';
	if (n > e && !strcmp(img->thumb_claim + n - e, ext)) {
		snprintf(done->thumbnail_name, sizeof(done->thumbnail_name),
			 "%s", img->thumb_claim);
		ret = fs_thumb_key(image_key, done->thumbnail_name,
				   done->s3_thumbnail_key,
				   sizeof(done->s3_thumbnail_key));
		if (ret == 0)
			ret = fs_claim_name(fs, done->s3_thumbnail_key, owner,
					    err, errlen);
	}
	for (int k = 0; ret == -EEXIST && k < FS_THUMB_CANDIDATES; k++) {
		ret =
		    fs_thumb_candidate(img->name, ext, k, done->thumbnail_name,
				       sizeof(done->thumbnail_name));
		if (ret == 0)
			ret = fs_thumb_key(image_key, done->thumbnail_name,
					   done->s3_thumbnail_key,
					   sizeof(done->s3_thumbnail_key));
		if (ret == 0)
			ret = fs_claim_name(fs, done->s3_thumbnail_key, owner,
					    err, errlen);
		if (ret == 0)
			ret = db_thumb_claim(
			    fs->db, img->id, done->thumbnail_name,
			    done->s3_thumbnail_key,
			    held_key[0] ? img->thumb_claim : NULL, held_key);
	}
	if (ret == -EEXIST)
		snprintf(err, errlen,
			 "every thumbnail name for it is held by another "
			 "image of its date");
	else if (ret == -ENAMETOOLONG)
		snprintf(err, errlen,
			 "its thumbnail's name or key is too long");
	else if (ret && err[0])
		; /* PostgreSQL's reason, said */
	else if (ret)
		snprintf(err, errlen, "the catalog: %s", strerror(-ret));
	return ret;
}

static void run_ingest(struct thumbfs *fs, const struct db_job *job)
{
	struct db_image img, done;
	struct thumb_result res = {0};
	struct s3_digest dg = {0};
	char path[PATH_MAX], what[PATH_MAX], thumb_path[PATH_MAX], err[512],
	    size[32];
	bool current;
	int ret, fd = -1;

	/* Removed meanwhile, or written again while this job ran before
	 * (it was made stale, and the write queued a job of its own, which
	 * may have stored the newer content already: nothing to store, and
	 * a stamp past that one's would outlive its row's). */
	if (db_image_get_by_id(fs->db, job->image_id, &img) ||
	    img.gen > job->gen) {
		FS_SETTLE(fs, "a finished job", db_job_drop(fs->db, job));
		return;
	}
	fs_tree_path(what, sizeof(what), NULL, img.patient_id, img.batch_date,
		     img.name);
	fs_spool_file(fs, img.patient_id, img.batch_date, img.name, path,
		      sizeof(path));
	done = img;
	/* The spool file is read once to hash it (what the catalog and the
	 * store's requests need, s3_digest_fd), once as it is decoded
	 * (thumb_make_fd), and once as it is sent: never whole in memory. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ret = fd < 0 ? -errno : s3_digest_fd(fs->store, fd, &dg);
	if (ret == -ENOENT) {
		FS_SETTLE(fs, "a finished job",
			  db_job_drop(fs->db, job)); /* renamed or removed */
		goto out_free;
	}
	if (ret) {
		char w[PATH_MAX + 32];
		snprintf(w, sizeof(w), "reading the spool file of '%s'", what);
		snprintf(err, sizeof(err), "%s", strerror(-ret));
		fs_job_retry(fs, job, w, err);
		goto out_free;
	}

	done.file_size = (int64_t)dg.size;
	fs_read_meta(path, &done);
	snprintf(done.sha256, sizeof(done.sha256), "%s", dg.sha256);
	snprintf(done.s3_bucket, sizeof(done.s3_bucket), "%s",
		 s3_bucket(fs->store));
	err[0] = '\0';
	/* (a file over [thumbnail] max_bytes gets no thumbnail) */
	struct fs_live live = fs_live(fs);
	/* an empty file (a touch, a copy not written yet) is stored, and
	 * is no image: no thumbnail, and no error either */
	bool empty = dg.size == 0;
	int terr =
	    empty ? -ENODATA
		  : thumb_worker_make(fd, &live.thumb, &res, err, sizeof(err));
	if (terr == -ECHILD) { /* no worker: not the file's doing */
		fs_job_retry(fs, job, what, err);
		goto out_free;
	}
	if (empty)
		res.mime_type = "application/octet-stream";
	snprintf(done.mime_type, sizeof(done.mime_type), "%s", res.mime_type);
	done.width = res.width;
	done.height = res.height;
	done.thumbnail_name[0] = '\0';
	done.s3_thumbnail_key[0] = '\0';
	done.thumbnail_size = 0;
	snprintf(done.error, sizeof(done.error), "%s",
		 terr && !empty ? err : "");
	if (!terr)
		done.thumbnail_size = (int64_t)res.size;

	ret = fs_image_key(fs, img.patient_id, img.batch_date, img.name,
			   done.s3_key, sizeof(done.s3_key));
	if (ret) {
		log_error("key of '%s' is longer than %d bytes; not uploaded",
			  what, DB_KEY_MAX);
		FS_SETTLE(fs, "a finished job", db_job_done(fs->db, job->id));
		goto out_free;
	}
	if (!terr && (ret = claim_thumb(fs, &img, done.s3_key, res.thumb_ext,
					&done, err, sizeof(err)))) {
		char w[PATH_MAX + 32];
		if (ret == -ENOENT) { /* renamed over another, or removed */
			FS_SETTLE(fs, "a finished job",
				  db_job_drop(fs->db, job));
			goto out_free;
		}
		snprintf(w, sizeof(w), "thumbnail name of '%s'", what);
		if (ret == -EAGAIN || ret == -EBUSY)
			fs_claim_wait(fs, job, ret, w, err);
		else
			fs_job_retry(fs, job, w, err);
		goto out_free;
	}
	char w[PATH_MAX + 16], owner[400], stamp[32];
	snprintf(w, sizeof(w), "upload of '%s'", what);
	fs_claim_owner(owner, &img);
	db_now(stamp);
	if (!fs_gate_put(fs, job, done.s3_key,
			 terr ? "" : done.s3_thumbnail_key, w) ||
	    !fs_claim_write(fs, job, done.s3_key,
			    terr ? "" : done.s3_thumbnail_key, owner, stamp, w))
		goto out_free;
	ret = s3_put_fd(fs->store, done.s3_key, fd, &dg, done.mime_type, err,
			sizeof(err));
	if (!ret && !terr)
		ret = s3_put_buf(fs->store, done.s3_thumbnail_key, res.data,
				 res.size, thumb_mime_type(res.thumb_format),
				 err, sizeof(err));
	fs_claim_end(fs);
	if (ret) {
		fs_job_failed(fs, job, ret, w, err);
		goto out_free;
	}
	fs_job_succeeded(fs);
	/* (before its sync job is queued: that one takes the sample) */
	fs_metrics_stored(img.id, img.updated_at, dg.size + res.size, !terr);
	if (!terr &&
	    !fs_thumb_path(fs, img.patient_id, img.batch_date,
			   done.thumbnail_name, thumb_path,
			   sizeof(thumb_path)) &&
	    (ret = fs_write_whole(fs, thumb_path, res.data, res.size)))
		log_warn("cannot cache thumbnail '%s': %s", thumb_path,
			 strerror(-ret));
	/* A thumbnail under another name (the format changed) is stale. */
	if (img.thumbnail_name[0] &&
	    strcmp(img.thumbnail_name, done.thumbnail_name) &&
	    !fs_thumb_path(fs, img.patient_id, img.batch_date,
			   img.thumbnail_name, thumb_path, sizeof(thumb_path)))
		unlink(thumb_path);

	FS_SETTLE(fs, what,
		  ret = db_ingest_done(fs->db, job, &done,
				       fs->pg ? stamp : NULL, &current));
	if (ret) {
		log_error("catalog update of '%s' failed: %s", what,
			  strerror(-ret));
		goto out_free;
	}
	if (!current)
		goto out_free;
	if (fs->pg)
		fs_jobs_kick(fs); /* the sync runner has a row to send */
	fs_cache_added(fs->cache, dg.size + res.size);
	if (terr && !empty)
		fs_metrics_failed(FS_FAIL_THUMBNAIL);
	if (empty)
		log_info("stored %s (an empty file: no thumbnail)", what);
	else if (terr)
		log_error("thumbnail of '%s' failed: %s; the original is kept "
			  "and uploaded",
			  what, done.error);
	else
		log_info("imported %s (%dx%d, thumb %dx%d, %s)", what,
			 res.width, res.height, res.thumb_width,
			 res.thumb_height,
			 log_size(dg.size, size, sizeof(size)));
	audit_stored(fs, &done);
out_free:
	if (fd >= 0)
		close(fd);
	s3_digest_release(&dg);
	thumb_result_release(&res);
}

/* The content of stored image img, opened to read: its spool file when
 * that holds it, else a copy fetched from the store into tmp/ (gone once
 * closed). A descriptor, or -errno with err said. */
static int open_original(struct thumbfs *fs, const struct db_image *img,
			 char *err, size_t errlen)
{
	char path[PATH_MAX];
	int fd = -1;
	if (db_image_evicted(fs->db, img->patient_id, img->batch_date,
			     img->name) == 0 &&
	    !fs_spool_file(fs, img->patient_id, img->batch_date, img->name,
			   path, sizeof(path)) &&
	    (fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0)
		return fd;
	snprintf(path, sizeof(path), "%s/backfill.%s", fs->tmp, img->id);
	int ret = s3_get_file(fs->store, img->s3_key, path, err, errlen);
	if (ret == 0 && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s", strerror(errno));
	}
	unlink(path);
	return ret ? ret : fd;
}

/* A stored row with no thumbnail (imported before thumbnails): make it
 * from the stored original, store it beside it, record it. */
static void run_backfill(struct thumbfs *fs, const struct db_job *job)
{
	struct db_image img, done;
	struct thumb_result res = {0};
	struct s3_digest dg = {0};
	char what[PATH_MAX], err[512], path[PATH_MAX];
	bool current;
	int fd = -1;

	if (db_image_get_by_id(fs->db, job->image_id, &img) ||
	    img.gen != job->gen || img.s3_thumbnail_key[0] || img.error[0]) {
		FS_SETTLE(fs, "a finished job",
			  db_job_done(fs->db,
				      job->id)); /* changed or made meanwhile */
		return;
	}
	fs_tree_path(what, sizeof(what), NULL, img.patient_id, img.batch_date,
		     img.name);
	int ret = 0;
	struct fs_live live = fs_live(fs);
	/* (a video's poster frame is read from its start: any size) */
	if ((uint64_t)img.file_size > live.thumb.max_bytes &&
	    strncmp(img.mime_type, "video/", 6)) {
		snprintf(err, sizeof(err),
			 "file is %lld bytes, over the limit of %llu "
			 "(max_bytes)",
			 (long long)img.file_size,
			 (unsigned long long)live.thumb.max_bytes);
		ret = -EFBIG;
	} else if ((fd = open_original(fs, &img, err, sizeof(err))) ==
		   -ENOENT) {
		/* nothing to make it from: failed, and counted so */
		snprintf(err, sizeof(err),
			 "the original '%s' is not in the "
			 "store",
			 img.s3_key);
		log_error("thumbnail of '%s' cannot be made: %s", what, err);
		FS_SETTLE(fs, "a failed backfill",
			  db_backfill_failed(fs->db, job, err));
		return;
	} else if (fd < 0) {
		fs_job_failed(fs, job, fd, "reading the original to backfill",
			      err);
		return;
	}
	if (ret == 0)
		ret =
		    thumb_worker_make(fd, &live.thumb, &res, err, sizeof(err));
	if (ret == -ECHILD) { /* no worker: not the file's doing */
		fs_job_retry(fs, job, what, err);
		goto out_free;
	}
	if (ret) {
		/* the row stays as the app has it; the reason is kept so
		 * that it is not tried at every listing */
		fs_metrics_failed(FS_FAIL_THUMBNAIL);
		log_error("thumbnail of '%s' cannot be made: %s", what, err);
		FS_SETTLE(fs, "a failed backfill",
			  db_backfill_failed(fs->db, job, err));
		goto out_free;
	}
	done = img;
	/* beside the original, as the app names it: {stem}_thumb{ext} */
	ret = claim_thumb(fs, &img, img.s3_key, res.thumb_ext, &done, err,
			  sizeof(err));
	if (ret == -ENOENT) { /* removed meanwhile */
		FS_SETTLE(fs, "a finished job", db_job_drop(fs->db, job));
		goto out_free;
	}
	if (ret == -ENAMETOOLONG) {
		FS_SETTLE(fs, "a failed backfill",
			  db_backfill_failed(fs->db, job, err));
		goto out_free;
	}
	if (ret == -EAGAIN || ret == -EBUSY) {
		fs_claim_wait(fs, job, ret, "thumbnail name of a backfill",
			      err);
		goto out_free;
	}
	if (ret) {
		fs_job_retry(fs, job, "thumbnail name of a backfill", err);
		goto out_free;
	}
	done.thumbnail_size = (int64_t)res.size;
	done.width = res.width;
	done.height = res.height;
	if (!done.mime_type[0])
		snprintf(done.mime_type, sizeof(done.mime_type), "%s",
			 res.mime_type);
	if (!done.sha256[0] && (ret = s3_digest_fd(fs->store, fd, &dg)) == 0)
		snprintf(done.sha256, sizeof(done.sha256), "%s", dg.sha256);
	if (!done.s3_bucket[0])
		snprintf(done.s3_bucket, sizeof(done.s3_bucket), "%s",
			 s3_bucket(fs->store));
	char owner[400], stamp[32];
	fs_claim_owner(owner, &img);
	db_now(stamp);
	if (!fs_gate_put(fs, job, done.s3_thumbnail_key, "",
			 "upload of a backfilled thumbnail") ||
	    !fs_claim_write(fs, job, done.s3_thumbnail_key, "", owner, stamp,
			    "upload of a backfilled thumbnail"))
		goto out_free;
	ret = s3_put_buf(fs->store, done.s3_thumbnail_key, res.data, res.size,
			 thumb_mime_type(res.thumb_format), err, sizeof(err));
	fs_claim_end(fs);
	if (ret) {
		fs_job_failed(fs, job, ret, "upload of a backfilled thumbnail",
			      err);
		goto out_free;
	}
	fs_job_succeeded(fs);
	if (!fs_thumb_path(fs, img.patient_id, img.batch_date,
			   done.thumbnail_name, path, sizeof(path)) &&
	    fs_write_whole(fs, path, res.data, res.size) == 0)
		fs_cache_added(fs->cache, res.size);
	FS_SETTLE(fs, what,
		  ret = db_ingest_done(fs->db, job, &done,
				       fs->pg ? stamp : NULL, &current));
	if (ret)
		log_error("catalog update of '%s' failed: %s", what,
			  strerror(-ret));
	else if (current)
		fs_metrics_thumbnail_made(res.size);
	if (ret == 0 && current)
		log_info("backfilled the thumbnail of %s (%dx%d, thumb %dx%d)",
			 what, res.width, res.height, res.thumb_width,
			 res.thumb_height);
	if (ret == 0 && current && fs->pg)
		fs_jobs_kick(fs);
out_free:
	if (fd >= 0)
		close(fd);
	s3_digest_release(&dg);
	thumb_result_release(&res);
}

/* The keys of a removed image or a moved one's old place: each goes
 * unless a row holds it again, once no job is writing it (db_gate_delete). */
static void run_delete(struct thumbfs *fs, const struct db_job *job)
{
	const char *const keys[] = {job->key, job->key2};
	char err[512];
	int ret = 0;
	for (int i = 0; ret == 0 && i < 2; i++) {
		if (!keys[i][0])
			continue;
		int go = db_gate_delete(fs->db, job, keys[i]);
		if (go == -EBUSY) {
			FS_SETTLE(fs, "a delete held back",
				  db_job_wait(fs->db, job->id, 1));
			return;
		}
		if (go < 0) {
			fs_job_retry(fs, job, "delete", strerror(-go));
			return;
		}
		if (go == 0)
			go =
			    fs_claim_delete(fs, job, keys[i], err, sizeof(err));
		if (go < 0) {
			fs_claim_wait(fs, job, go, "a delete", err);
			return;
		}
		if (go == 0) {
			ret = s3_delete(fs->store, keys[i], err, sizeof(err));
			fs_claim_end(fs);
		} else if (fs->pg) {
			log_info("kept '%s': another mount stored it since",
				 keys[i]);
		}
	}
	if (ret) {
		fs_job_failed(fs, job, ret, "delete", err);
		return;
	}
	fs_job_succeeded(fs);
	FS_SETTLE(fs, "a finished job", db_job_done(fs->db, job->id));
}

/* A move found its image's objects gone from the store: if PostgreSQL has
 * its row no more either, it was removed elsewhere (the web app, another
 * mount) while this mount renamed its folder, and it goes here too, with
 * what the move copied. true if so; false when that cannot be said (the
 * move fails for good then, with the store's reason). */
static bool vanished(struct thumbfs *fs, const struct db_job *job,
		     const struct db_image *img, const char *what,
		     const char *key, const char *thumb, const char *stamp)
{
	struct db_image gone;
	if (fs_claim_has_image(fs, img->id) != 0)
		return false;
	int ret;
	FS_SETTLE(fs, "a move of a removed image",
		  (ret = db_move_vanished(fs->db, job, key, thumb, stamp,
					  &gone)) == -EBUSY
		      ? 0
		      : ret);
	if (ret)
		return false;
	fs_spool_drop(fs, &gone);
	log_info("'%s' was removed elsewhere while its folder was renamed "
		 "here: it goes here too",
		 what);
	fs_jobs_kick(fs);
	return true;
}

/* The image's directory was renamed (once or more since the job was
 * queued): its objects are copied from the keys it has now to those of
 * the place it has now, through the gate, and it takes them; the keys it
 * left go after (db_move_done). Removed since, it has nothing to copy. */
static void run_move(struct thumbfs *fs, const struct db_job *job)
{
	struct db_image img;
	char key[DB_KEY_MAX], thumb[DB_KEY_MAX] = "", err[512], what[PATH_MAX],
			      w[PATH_MAX + 16];
	int ret = db_image_get_by_id(fs->db, job->image_id, &img);
	if (ret == -ENOENT) {
		FS_SETTLE(
		    fs, "a move with nothing to copy",
		    db_move_done(fs->db, job, NULL, NULL, NULL, NULL, NULL));
		return;
	}
	if (ret) {
		fs_job_failed(fs, job, ret, "move", strerror(-ret));
		return;
	}
	fs_tree_path(what, sizeof(what), NULL, img.patient_id, img.batch_date,
		     img.name);
	snprintf(w, sizeof(w), "move of '%s'", what);
	if (fs_image_key(fs, img.patient_id, img.batch_date, img.name, key,
			 sizeof(key)) ||
	    (img.s3_thumbnail_key[0] &&
	     fs_thumb_key(key, img.thumbnail_name, thumb, sizeof(thumb)))) {
		/* its old keys stay, and serve it */
		log_error("move of '%s': its new key is too long; it keeps "
			  "'%s'",
			  what, img.s3_key);
		FS_SETTLE(fs, "a move kept",
			  db_move_done(fs->db, job, img.s3_key,
				       img.s3_thumbnail_key, NULL, NULL, NULL));
		return;
	}
	/* what is under its keys now is its own: a write of them by
	 * another image waits on its row until this is done (db/gate.c) */
	bool copy = strcmp(key, img.s3_key) != 0,
	     copy_thumb = thumb[0] && strcmp(thumb, img.s3_thumbnail_key);
	char owner[400], stamp[32];
	fs_claim_owner(owner, &img);
	snprintf(stamp, sizeof(stamp), "%s", img.updated_at);
	if (!fs_gate_put(fs, job, copy ? key : "", copy_thumb ? thumb : "",
			 w) ||
	    ((copy || copy_thumb) &&
	     !fs_claim_write(fs, job, copy ? key : thumb,
			     copy && copy_thumb ? thumb : "", owner, stamp, w)))
		return;
	ret = copy ? s3_copy(fs->store, img.s3_key, key, err, sizeof(err)) : 0;
	if (ret == 0 && copy_thumb)
		ret = s3_copy(fs->store, img.s3_thumbnail_key, thumb, err,
			      sizeof(err));
	fs_claim_end(fs);
	if (ret == -ENOENT && vanished(fs, job, &img, what, copy ? key : NULL,
				       copy_thumb ? thumb : NULL, stamp))
		return;
	if (ret) {
		fs_job_failed(fs, job, ret, w, err);
		return;
	}
	fs_job_succeeded(fs);
	/* the copies exist: the job ends only once the catalog has them,
	 * or it would stay claimed and the image's other jobs wait until
	 * the next mount */
	FS_SETTLE(fs, "a move done",
		  db_move_done(fs->db, job, img.s3_key, img.s3_thumbnail_key,
			       key, thumb, fs->pg ? stamp : NULL));
	if (copy)
		log_info("moved %s in the store to %s", what, key);
	if (fs->pg)
		fs_jobs_kick(fs);
}

void fs_ingest_run(struct thumbfs *fs, const struct db_job *job)
{
	switch (job->kind) {
	case DB_JOB_INGEST:
		run_ingest(fs, job);
		break;
	case DB_JOB_BACKFILL:
		run_backfill(fs, job);
		break;
	case DB_JOB_MOVE:
		run_move(fs, job);
		break;
	default:
		run_delete(fs, job);
	}
}
