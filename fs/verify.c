/* verify.c - thumbfs verify: the catalog, the store's listing and
 * PostgreSQL compared, row by row and key by key (see verify.h). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db/catalog.h"
#include "db/repair.h"
#include "db/evict.h"
#include "db/pg.h"
#include "db/pgread.h"
#include "db/scratch.h"
#include "fs/audit.h"
#include "fs/jobs.h"
#include "fs/json.h"
#include "fs/spool.h"
#include "fs/template.h"
#include "fs/thumbfs.h"
#include "fs/verify.h"
#include "s3/s3.h"
#include "thumb/thumb.h"

/* The kinds of finding, in the order the table shows them. */
enum kind {
	K_MISSING_ORIGINAL,
	K_MISSING_THUMBNAIL,
	K_SIZE,
	K_NO_THUMBNAIL,
	K_SHARED_KEY,
	K_KEY_NOT_PATH,
	K_CONTENT,
	K_THUMBNAIL_WRONG,
	K_ORPHAN,
	K_PG_MISSING,
	K_CATALOG_MISSING,
	K_COUNT
};

static const char *const kind_names[K_COUNT] = {
    "missing-original", "missing-thumbnail", "size-mismatch",
    "no-thumbnail",	"shared-key",	     "key-not-path",
    "content-mismatch", "thumbnail-wrong",   "orphan",
    "postgres-missing", "catalog-missing"};

/* A repair decided during the pass, carried out after it. */
struct fix {
	char id[37];
	enum db_repair what;
};

struct run {
	struct thumbfs *fs;
	char prefix[2048]; /* what the listing covers */
	const struct verify_opts *o;
	struct db_scratch *scratch;
	struct db_scope scope;
	size_t n_objs;
	long counts[K_COUNT];
	long rows, checked_objects;
	bool tty;
	struct fix *fixes;
	size_t n_fixes, cap_fixes;
	long unfixable, deleted;
};

static void finding(struct run *r, enum kind k, const char *path,
		    const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void finding(struct run *r, enum kind k, const char *path,
		    const char *key, const char *fmt, ...)
{
	char what[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	r->counts[k]++;
	if (r->tty)
		fputs("\r\033[K", stderr);
	if (r->o->json) {
		printf("{\"kind\": ");
		fs_json_str(stdout, kind_names[k]);
		printf(", \"path\": ");
		fs_json_str(stdout, path);
		printf(", \"key\": ");
		fs_json_str(stdout, key ? key : "");
		printf(", \"what\": ");
		fs_json_str(stdout, what);
		printf("}\n");
	} else {
		printf("%-18s %s%s%s: %s\n", kind_names[k], path,
		       key && *key ? "  key " : "", key ? key : "", what);
	}
	fflush(stdout);
}

static void progress(struct run *r)
{
	if (r->tty && (r->rows + r->n_objs) % 100 == 0)
		fprintf(stderr, "\rverify: %ld rows, %zu objects listed",
			r->rows, r->n_objs);
}

static int push(void **v, size_t *n, size_t *cap, size_t size)
{
	if (*n < *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : 1024;
	void *p = realloc(*v, c * size);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = c;
	return 0;
}

static int on_object(const struct s3_object *obj, void *arg)
{
	struct run *r = arg;
	r->n_objs++;
	progress(r);
	return db_scratch_object(r->scratch, obj->key, obj->size);
}

static bool wanted(const struct run *r, const char *patient, const char *date,
		   const char *name)
{
	const struct verify_opts *o = r->o;
	return (!o->patient || !strcmp(o->patient, patient)) &&
	       (!o->date || !strcmp(o->date, date)) &&
	       (!o->name || !strcmp(o->name, name));
}

static int on_pg_row(const struct db_image *img, void *arg)
{
	struct run *r = arg;
	if (!wanted(r, img->patient_id, img->batch_date, img->name))
		return 0;
	return db_scratch_pg_row(r->scratch, img->patient_id, img->batch_date,
				 img->name);
}

/* The object at key into a file of tmp/, opened; -errno. */
static int fetch_object(struct run *r, const char *key, char *err,
			size_t errlen)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/verify.XXXXXX", r->fs->tmp);
	int fd = mkstemp(path);
	if (fd < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		return -errno;
	}
	unlink(path);
	int ret = s3_get_fd(r->fs->store, key, fd, err, errlen);
	if (ret) {
		close(fd);
		return ret;
	}
	lseek(fd, 0, SEEK_SET);
	return fd;
}

/* The gray level of each pixel of img, for comparing two pictures. */
static double gray(const struct thumb_image *img, size_t i)
{
	const unsigned char *p = img->pixels + i * (size_t)img->channels;
	return img->channels >= 3 ? (p[0] + p[1] + p[2]) / 3.0 : p[0];
}

/* PSNR of two decoded images of one size, in dB. */
static double psnr(const struct thumb_image *a, const struct thumb_image *b)
{
	size_t n = (size_t)a->width * (size_t)a->height;
	double se = 0;
	for (size_t i = 0; i < n; i++) {
		double d = gray(a, i) - gray(b, i);
		se += d * d;
	}
	return se == 0 ? 99.0 : 10 * log10(255.0 * 255.0 * (double)n / se);
}

/* Whether the spool holds img's content whole, as the row has it: the
 * only copy a lost or wrong original may be uploaded again from. */
static bool whole_copy(struct run *r, const struct db_image *img)
{
	char path[PATH_MAX], sha[65];
	struct stat st;
	if (fs_spool_file(r->fs, img->patient_id, img->batch_date, img->name,
			  path, sizeof(path)) ||
	    stat(path, &st) || st.st_size != img->file_size ||
	    db_image_evicted(r->fs->db, img->patient_id, img->batch_date,
			     img->name) != 0)
		return false;
	return !img->sha256[0] ||
	       (s3_sha256_file(path, sha) == 0 && !strcmp(sha, img->sha256));
}

static void want_fix(struct run *r, const struct db_image *img,
		     enum db_repair what, const char *path)
{
	if (!r->o->repair)
		return;
	for (size_t i = 0; i < r->n_fixes; i++)
		if (!strcmp(r->fixes[i].id, img->id) &&
		    (r->fixes[i].what == what ||
		     r->fixes[i].what == DB_REPAIR_UPLOAD))
			return; /* an upload makes the thumbnail too */
	if (what == DB_REPAIR_UPLOAD && !whole_copy(r, img)) {
		fprintf(stderr,
			"thumbfs verify: %s cannot be repaired here: this "
			"machine has no whole copy of its content\n",
			path);
		r->unfixable++;
		return;
	}
	if (push((void **)&r->fixes, &r->n_fixes, &r->cap_fixes,
		 sizeof(*r->fixes)))
		return;
	snprintf(r->fixes[r->n_fixes].id, sizeof(r->fixes[0].id), "%s",
		 img->id);
	r->fixes[r->n_fixes++].what = what;
}

/* --content: the original's bytes against the row's sha256, and the
 * thumbnail against one made from the original. */
static void check_content(struct run *r, const struct db_image *img,
			  const char *path, bool has_thumb)
{
	char err[512], sha[65];
	struct s3_digest dg = {0};
	int fd = fetch_object(r, img->s3_key, err, sizeof(err));
	if (fd < 0)
		return; /* missing: said already */
	r->checked_objects++;
	if (s3_digest_fd(r->fs->store, fd, &dg) == 0) {
		snprintf(sha, sizeof(sha), "%s", dg.sha256);
		if (img->sha256[0] && strcmp(sha, img->sha256)) {
			finding(r, K_CONTENT, path, img->s3_key,
				"sha256 %s, the row says %s", sha, img->sha256);
			want_fix(r, img, DB_REPAIR_UPLOAD, path);
		}
	}
	s3_digest_release(&dg);
	if (!has_thumb)
		goto out;
	struct thumb_opts opts;
	struct thumb_result made = {0};
	struct thumb_image want = {0}, got = {0};
	int w, h;
	thumb_opts_init(&opts);
	lseek(fd, 0, SEEK_SET);
	if (thumb_make_fd(fd, &opts, &made, err, sizeof(err)))
		goto out; /* the original is no image: no picture to compare */
	int tfd = fetch_object(r, img->s3_thumbnail_key, err, sizeof(err));
	struct stat st;
	unsigned char *buf = NULL;
	if (tfd >= 0 && fstat(tfd, &st) == 0 &&
	    (buf = malloc((size_t)st.st_size + 1)) &&
	    read(tfd, buf, (size_t)st.st_size) == st.st_size &&
	    thumb_decode(buf, (size_t)st.st_size, 0, 0, 100000000ULL, &got, &w,
			 &h, err, sizeof(err)) == 0 &&
	    thumb_decode(made.data, made.size, 0, 0, 100000000ULL, &want, &w,
			 &h, err, sizeof(err)) == 0) {
		r->checked_objects++;
		if (got.width != want.width || got.height != want.height) {
			finding(r, K_THUMBNAIL_WRONG, path,
				img->s3_thumbnail_key,
				"%dx%d, its original gives %dx%d", got.width,
				got.height, want.width, want.height);
			want_fix(r, img, DB_REPAIR_THUMBNAIL, path);
		} else if (psnr(&got, &want) < 20) {
			finding(r, K_THUMBNAIL_WRONG, path,
				img->s3_thumbnail_key,
				"another picture than its original's "
				"(PSNR %.1f dB)",
				psnr(&got, &want));
			want_fix(r, img, DB_REPAIR_THUMBNAIL, path);
		}
	} else if (tfd >= 0) {
		finding(r, K_THUMBNAIL_WRONG, path, img->s3_thumbnail_key,
			"does not decode: %s", err);
		want_fix(r, img, DB_REPAIR_THUMBNAIL, path);
	}
	free(buf);
	if (tfd >= 0)
		close(tfd);
	thumb_image_release(&got);
	thumb_image_release(&want);
	thumb_result_release(&made);
out:
	close(fd);
}

struct probe {
	const char *key;
	int64_t size;
};

static int probed(const struct s3_object *obj, void *arg)
{
	struct probe *p = arg;
	if (strcmp(obj->key, p->key))
		return 0;
	p->size = (int64_t)obj->size;
	return 1;
}

/* The size of an object the listing did not cover (a row of the web app
 * under keys of its own, outside the key template's prefix), listed by
 * itself; -1 if the store has none. The size known stays. */
static int64_t outside(struct run *r, const char *key, int64_t known)
{
	char err[512];
	if (known >= 0 || !key[0] ||
	    !strncmp(key, r->prefix, strlen(r->prefix)))
		return known;
	struct probe p = {key, -1};
	int ret = s3_list(r->fs->store, key, probed, &p, err, sizeof(err));
	if (ret < 0)
		fprintf(stderr, "thumbfs verify: cannot list '%s': %s\n", key,
			err);
	return p.size;
}

/* One uploaded row, with what the store has of it (sizes, -1: none) and
 * whether PostgreSQL has it. */
static int check_row(void *arg, const struct db_image *img, int64_t original,
		     int64_t thumbnail, bool in_pg, bool moving)
{
	struct run *r = arg;
	char path[PATH_MAX], key[DB_KEY_MAX], thumb[DB_KEY_MAX] = "";
	fs_tree_path(path, sizeof(path), NULL, img->patient_id, img->batch_date,
		     img->name);
	r->rows++;
	progress(r);
	original = outside(r, img->s3_key, original);
	thumbnail = outside(r, img->s3_thumbnail_key, thumbnail);
	/* its keys are its path's under [store] key_template (a move that
	 * waits will make them so); a row the web app wrote under keys of
	 * its own (not of the template's shape) keeps them */
	if (!moving && cfg_key_matches(r->fs->cfg.key_template, img->s3_key) &&
	    !fs_image_key(r->fs, img->patient_id, img->batch_date, img->name,
			  key, sizeof(key)) &&
	    (!img->s3_thumbnail_key[0] ||
	     !fs_thumb_key(key, img->thumbnail_name, thumb, sizeof(thumb))) &&
	    (strcmp(key, img->s3_key) ||
	     strcmp(thumb, img->s3_thumbnail_key))) {
		finding(r, K_KEY_NOT_PATH, path, img->s3_key,
			"its path's keys are '%s'%s%s", key,
			thumb[0] ? " and '" : "", thumb[0] ? thumb : "");
		want_fix(r, img, DB_REPAIR_MOVE, path);
	}
	if (original < 0) {
		finding(r, K_MISSING_ORIGINAL, path, img->s3_key,
			"the store has no such object");
		want_fix(r, img, DB_REPAIR_UPLOAD, path);
	} else if (original != img->file_size) {
		finding(r, K_SIZE, path, img->s3_key,
			"%lld bytes in the store, %lld in the row",
			(long long)original, (long long)img->file_size);
		want_fix(r, img, DB_REPAIR_UPLOAD, path);
	}
	/* a row thumbfs makes a thumbnail of */
	bool image = !strncmp(img->mime_type, "image/", 6) ||
		     !strncmp(img->mime_type, "video/", 6) ||
		     !strcmp(img->mime_type, "application/pdf") ||
		     !strcmp(img->mime_type, "application/dicom");
	if (img->s3_thumbnail_key[0] && thumbnail < 0) {
		finding(r, K_MISSING_THUMBNAIL, path, img->s3_thumbnail_key,
			"the store has no such object");
		want_fix(r, img, DB_REPAIR_THUMBNAIL, path);
	} else if (image && (!img->s3_thumbnail_key[0] || img->width <= 0 ||
			     img->height <= 0)) {
		finding(r, K_NO_THUMBNAIL, path, img->s3_key,
			"an image row without its thumbnail, width and "
			"height%s%s",
			img->error[0] ? ": " : "", img->error);
		if (!img->error[0]) /* not an image thumbfs reads: no use */
			want_fix(r, img, DB_REPAIR_THUMBNAIL, path);
	}
	if (r->fs->pg && img->s3_thumbnail_key[0] && img->width > 0 && !in_pg) {
		finding(r, K_PG_MISSING, path, NULL,
			"the catalog has it uploaded, PostgreSQL lacks it");
		want_fix(r, img, DB_REPAIR_SYNC, path);
	}
	if (r->o->content && original >= 0)
		check_content(r, img, path, thumbnail >= 0);
	return 0;
}

static int on_shared(void *arg, const char *key, int64_t rows)
{
	finding(arg, K_SHARED_KEY, "", key, "%lld rows name this key",
		(long long)rows);
	return 0;
}

static int on_pg_only(void *arg, const char *path)
{
	finding(arg, K_CATALOG_MISSING, path, NULL,
		"PostgreSQL has it, the catalog does not (a mount reads it "
		"in)");
	return 0;
}

/* An object no row names: listed (a dry run) or, with --delete-orphans,
 * deleted, after its tombstone is recorded and with an audit line. */
static void delete_orphan(struct run *r, const char *key, int64_t size)
{
	char err[512];
	if (!r->o->delete_orphans) {
		printf("repair: would delete %s (add --delete-orphans)\n", key);
		return;
	}
	int ret = db_tombstone_orphan(r->fs->db, s3_bucket(r->fs->store), key,
				      size, "thumbfs verify");
	if (ret == 0)
		ret = s3_delete(r->fs->store, key, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "the catalog: %s", strerror(-ret));
	if (r->fs->audit) {
		struct audit_event e = {.op = "delete-orphan",
					.path = key,
					.size = size,
					.result = ret,
					.uid = getuid(),
					.pid = getpid()};
		audit_log(r->fs->audit, &e);
	}
	if (ret)
		fprintf(stderr, "thumbfs verify: %s not deleted: %s\n", key,
			err);
	else {
		printf("repair: deleted %s\n", key);
		r->deleted++;
	}
}

static int on_orphan(void *arg, const char *key, int64_t size)
{
	struct run *r = arg;
	finding(r, K_ORPHAN, "", key,
		"%lld bytes no row, kept tombstone or job names",
		(long long)size);
	if (r->o->repair)
		delete_orphan(r, key, size);
	return 0;
}

/* One pass over the archive; with repair, what to fix is gathered into
 * rp. Returns the exit status. */
static int pass(struct thumbfs *fs, const struct verify_opts *o, struct run *rp)
{
	struct run r = {.fs = fs,
			.o = o,
			.tty = isatty(STDERR_FILENO),
			.scope = {o->patient, o->date, o->name}};
	char err[1024], *prefix = r.prefix;
	int ret, status = 2;
	/* the store's prefix the archive (or the part asked for) is under */
	fs_key_prefix(fs, o->patient, o->date, o->name, prefix,
		      sizeof(r.prefix));
	r.scratch =
	    db_scratch_open(fs->cfg.catalog_dir, fs->tmp, err, sizeof(err));
	if (!r.scratch) {
		fprintf(stderr, "thumbfs verify: %s\n", err);
		return 2;
	}
	ret = s3_list(fs->store, prefix, on_object, &r, err, sizeof(err));
	if (ret) {
		fprintf(stderr,
			"thumbfs verify: cannot list the store under '%s': "
			"%s\n",
			prefix, ret == -EIO ? "the scratch database" : err);
		goto out;
	}
	int64_t bound; /* (verify keeps no place in the changes) */
	if (fs->pg && (ret = db_pg_scan(fs->pg, on_pg_row, &r, &bound, err,
					sizeof(err))) < 0) {
		fprintf(stderr, "thumbfs verify: cannot read PostgreSQL: %s\n",
			err);
		goto out;
	}
	if ((ret = db_scratch_loaded(r.scratch)) ||
	    (ret = db_scratch_rows(r.scratch, &r.scope, check_row, &r)) ||
	    (ret = db_scratch_shared(r.scratch, &r.scope, on_shared, &r)) ||
	    (ret = db_scratch_orphans(r.scratch, on_orphan, &r)) ||
	    (ret = db_scratch_pg_only(r.scratch, on_pg_only, &r))) {
		fprintf(stderr, "thumbfs verify: cannot read the catalog: %s\n",
			strerror(-ret));
		goto out;
	}
	long total = 0;
	for (int k = 0; k < K_COUNT; k++)
		total += r.counts[k];
	if (r.tty)
		fputs("\r\033[K", stderr);
	if (o->json) {
		printf("{\"summary\": {\"rows\": %ld, \"objects\": %zu", r.rows,
		       r.n_objs);
		for (int k = 0; k < K_COUNT; k++)
			printf(", \"%s\": %ld", kind_names[k], r.counts[k]);
		printf("}}\n");
	} else {
		printf("verify: %ld rows, %zu objects under '%s'%s%s\n", r.rows,
		       r.n_objs, prefix, fs->pg ? ", PostgreSQL" : "",
		       o->content ? ", every object read" : "");
		for (int k = 0; k < K_COUNT; k++)
			printf("  %-18s %ld\n", kind_names[k], r.counts[k]);
		printf("%s\n", total ? "verify: the archive does not keep its "
				       "rule: see the lines above"
				     : "verify: clean");
	}
	status = total ? 1 : 0;
	if (rp) { /* the fixes go to the caller */
		rp->fixes = r.fixes;
		rp->n_fixes = r.n_fixes;
		rp->unfixable = r.unfixable;
		rp->deleted = r.deleted;
		r.fixes = NULL;
	}
out:
	db_scratch_close(r.scratch);
	free(r.fixes);
	return status;
}

/* The queue's work of the repairs, not yet done. */
static int64_t left(struct thumbfs *fs)
{
	struct db_counts c;
	if (db_counts(fs->db, &c))
		return -1;
	return c.jobs_ingest + c.jobs_backfill + c.jobs_move + c.jobs_delete +
	       (fs->pg ? c.jobs_sync : 0);
}

int fs_verify(struct thumbfs *fs, const struct verify_opts *o)
{
	struct run fixes = {0};
	int status = pass(fs, o, o->repair ? &fixes : NULL);
	if (!o->repair || status == 2 || (!fixes.n_fixes && !fixes.deleted))
		return status;
	int queued = 0;
	for (size_t i = 0; i < fixes.n_fixes; i++)
		if (db_repair(fs->db, fixes.fixes[i].id, fixes.fixes[i].what) ==
		    0)
			queued++;
	free(fixes.fixes);
	if (queued == 0)
		goto again;
	printf("repair: %d job(s) queued%s\n", queued,
	       o->beside ? "; the mount's runners do them" : "");
	fflush(stdout);
	if (!o->beside && fs_jobs_start(fs)) {
		fprintf(stderr, "thumbfs verify: cannot start the workers\n");
		return 2;
	}
	/* until the queue is empty, or nothing moves for a minute (what
	 * fails for good is parked, and not counted) */
	int64_t was = -1;
	time_t moved = time(NULL);
	for (int64_t n; (n = left(fs)) > 0 && time(NULL) - moved < 60;) {
		if (n != was)
			moved = time(NULL);
		was = n;
		struct timespec nap = {0, 200 * 1000 * 1000};
		nanosleep(&nap, NULL);
	}
	if (!o->beside)
		fs_jobs_stop(fs);
again:
	printf("repair: done; verifying again\n");
	struct verify_opts again = *o;
	again.repair = false;
	again.delete_orphans = false;
	return pass(fs, &again, NULL);
}
