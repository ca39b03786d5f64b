/* cache.c - the bound on the spool and the thumbnail cache: measure, pick
 * the least recently used settled content, give its data back. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db/catalog.h"
#include "db/evict.h"
#include "fs/cache.h"
#include "fs/log.h"
#include "fs/request.h"
#include "fs/spool.h"
#include "fs/thumbfs.h"
#include "s3/s3.h"

/* What the cache knows of a file it has seen opened. */
struct use {
	ino_t ino;
	int holds;    /* open handles */
	double last;  /* when it was last opened (CLOCK_REALTIME) */
	bool checked; /* seen by the walk under way */
};

#define RESTORES_MAX 32

struct fs_cache {
	uint64_t max_bytes;
	pthread_mutex_t lock; /* guards everything below; held while a
			       * spool file is punched, so that no open
			       * slips in between the check and the punch */
	void *uses;	      /* tsearch tree of struct use, by ino */
	uint64_t measured;    /* bytes at the last walk */
	uint64_t added;	      /* bytes added since */
	bool walked;
	bool over; /* still over the bound after the last trim */
	bool trimming;
	bool no_punch; /* the spool's file system cannot punch holes */
	/* the files being restored (one restore per file, many files at
	 * once: no lock is held across a GET), and the times a client must
	 * see of each until its restore has put them back */
	struct {
		ino_t ino; /* 0: a free slot */
		struct timespec times[2];
	} restoring[RESTORES_MAX];
	pthread_cond_t restored; /* a slot freed */
};

static int cmp_use(const void *a, const void *b)
{
	ino_t x = ((const struct use *)a)->ino,
	      y = ((const struct use *)b)->ino;
	return x < y ? -1 : x > y;
}

struct fs_cache *fs_cache_new(uint64_t max_bytes)
{
	struct fs_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->max_bytes = max_bytes;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->restored, NULL);
	return c;
}

void fs_cache_free(struct fs_cache *c)
{
	if (!c)
		return;
	tdestroy(c->uses, free);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->restored);
	free(c);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The use of ino, made if create; NULL if there is none (or no memory). */
static struct use *use_of(struct fs_cache *c, ino_t ino, bool create)
{
	struct use key = {.ino = ino}, **found = tfind(&key, &c->uses, cmp_use);
	if (found || !create)
		return found ? *found : NULL;
	struct use *u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->ino = ino;
	found = tsearch(u, &c->uses, cmp_use);
	if (!found || *found != u) {
		free(u);
		return found ? *found : NULL;
	}
	return u;
}

void fs_cache_hold(struct fs_cache *c, ino_t ino)
{
	pthread_mutex_lock(&c->lock);
	struct use *u = use_of(c, ino, true);
	if (u) {
		u->holds++;
		u->last = now();
	}
	pthread_mutex_unlock(&c->lock);
}

void fs_cache_put(struct fs_cache *c, ino_t ino)
{
	pthread_mutex_lock(&c->lock);
	struct use *u = use_of(c, ino, false);
	if (u && u->holds > 0)
		u->holds--;
	pthread_mutex_unlock(&c->lock);
}

void fs_cache_set_bound(struct fs_cache *c, uint64_t max_bytes)
{
	pthread_mutex_lock(&c->lock);
	c->max_bytes = max_bytes;
	pthread_mutex_unlock(&c->lock);
}

void fs_cache_added(struct fs_cache *c, uint64_t bytes)
{
	pthread_mutex_lock(&c->lock);
	c->added += bytes;
	pthread_mutex_unlock(&c->lock);
}

bool fs_cache_figures(struct fs_cache *c, uint64_t *used, uint64_t *max)
{
	pthread_mutex_lock(&c->lock);
	*used = c->measured + c->added;
	*max = c->max_bytes;
	bool walked = c->walked;
	pthread_mutex_unlock(&c->lock);
	return walked;
}

void fs_cache_describe(struct fs_cache *c, char *out, size_t n)
{
	char used[32], bound[32];
	uint64_t now, max;
	bool walked = fs_cache_figures(c, &now, &max);
	log_size(max, bound, sizeof(bound));
	if (!walked)
		snprintf(out, n, "being measured; bound %s",
			 max ? bound : "none");
	else if (!max)
		snprintf(out, n, "%s (%llu bytes) on disk; no bound",
			 log_size(now, used, sizeof(used)),
			 (unsigned long long)now);
	else
		snprintf(out, n, "%s (%llu bytes) on disk of %s (%llu bytes)",
			 log_size(now, used, sizeof(used)),
			 (unsigned long long)now, bound,
			 (unsigned long long)max);
}

/* A file the walk found: a spool file (thumb false) or a thumbnail. */
struct cand {
	ino_t ino;
	double last;
	uint64_t bytes;
	bool thumb;
	char *patient, *date, *name;
	char *path;
};

struct walk {
	struct thumbfs *fs;
	struct cand *v;
	size_t n, cap;
	uint64_t total;
	bool thumbs;
};

static int add_file(const char *path, const char *patient, const char *date,
		    const char *name, void *arg)
{
	struct walk *w = arg;
	struct stat st;
	if (lstat(path, &st) || !S_ISREG(st.st_mode))
		return 0;
	uint64_t bytes = (uint64_t)st.st_blocks * 512;
	w->total += bytes;
	if (bytes == 0 || strstr(name, ".tmp."))
		return 0; /* nothing to give back, or a fetch under way */
	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 256;
		struct cand *v = realloc(w->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		w->v = v;
		w->cap = cap;
	}
	struct cand *k = &w->v[w->n];
	memset(k, 0, sizeof(*k));
	k->ino = st.st_ino;
	k->bytes = bytes;
	k->thumb = w->thumbs;
	/* never opened here: last changed on this disk */
	k->last = (double)st.st_ctim.tv_sec + st.st_ctim.tv_nsec / 1e9;
	k->patient = strdup(patient);
	k->date = strdup(date);
	k->name = strdup(name);
	k->path = strdup(path);
	w->n++;
	if (!k->patient || !k->date || !k->name || !k->path)
		return -ENOMEM;
	return 0;
}

static int by_last(const void *a, const void *b)
{
	double x = ((const struct cand *)a)->last;
	double y = ((const struct cand *)b)->last;
	return x < y ? -1 : x > y;
}

/* Open path for writing, as its owner may even where its mode says no
 * (a read-only image): the mode is given back at once. */
static int open_for_cache(const char *path, int flags)
{
	struct stat st;
	int fd = open(path, flags | O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 || errno != EACCES || lstat(path, &st) ||
	    chmod(path, (st.st_mode & 07777) | S_IWUSR))
		return fd;
	fd = open(path, flags | O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	int e = errno;
	chmod(path, st.st_mode & 07777);
	errno = e;
	return fd;
}

/* Give back the data of the spool file k, if nothing holds it and the
 * catalog says it is settled. Called under c->lock. 0 if it was. */
static int punch(struct thumbfs *fs, const struct cand *k)
{
	struct fs_cache *c = fs->cache;
	struct use *u = use_of(c, k->ino, false);
	struct stat st;
	if ((u && u->holds) || c->no_punch)
		return -EBUSY;
	int ret = db_image_evict(fs->db, k->patient, k->date, k->name);
	if (ret)
		return ret;
	int fd = open_for_cache(k->path, 0);
	if (fd < 0 || fstat(fd, &st) || st.st_ino != k->ino) {
		ret = fd < 0 ? -errno : -EAGAIN; /* replaced meanwhile */
		goto out_undo;
	}
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
		      st.st_size)) {
		ret = -errno;
		if (ret == -EOPNOTSUPP) {
			c->no_punch = true;
			log_warn("cache: the spool's file system cannot punch "
				 "holes; only thumbnails are evicted");
		}
		goto out_undo;
	}
	/* the client's times stay what they were */
	struct timespec tv[2] = {st.st_atim, st.st_mtim};
	futimens(fd, tv);
	close(fd);
	return 0;
out_undo:
	if (fd >= 0)
		close(fd);
	db_image_restored(fs->db, k->patient, k->date, k->name);
	return ret;
}

static int evict(struct thumbfs *fs, const struct cand *k)
{
	if (!k->thumb) {
		pthread_mutex_lock(&fs->cache->lock);
		int ret = punch(fs, k);
		pthread_mutex_unlock(&fs->cache->lock);
		return ret;
	}
	/* a reader that has it open keeps reading the unlinked file */
	if (db_thumb_settled(fs->db, k->patient, k->date, k->name) != 1)
		return -EBUSY;
	return unlink(k->path) ? -errno : 0;
}

struct gone {
	ino_t *v;
	size_t n, cap;
};

static void collect_gone(const void *node, VISIT v, void *arg)
{
	struct use *u = *(struct use *const *)node;
	struct gone *g = arg;
	if (v != postorder && v != leaf)
		return;
	if (!u->holds && !u->checked) {
		if (g->n == g->cap) {
			size_t cap = g->cap ? 2 * g->cap : 64;
			ino_t *nv = realloc(g->v, cap * sizeof(*nv));
			if (!nv)
				return; /* forgotten at the next walk */
			g->v = nv;
			g->cap = cap;
		}
		g->v[g->n++] = u->ino;
	}
	u->checked = false;
}

/* Forget the uses of files the walk did not find with data (gone, or
 * evicted) that nobody holds. Under c->lock. */
static void prune(struct fs_cache *c, const struct walk *w)
{
	struct gone g = {0};
	for (size_t i = 0; i < w->n; i++) {
		struct use *u = use_of(c, w->v[i].ino, false);
		if (u)
			u->checked = true;
	}
	twalk_r(c->uses, collect_gone, &g);
	for (size_t i = 0; i < g.n; i++) {
		struct use key = {.ino = g.v[i]};
		struct use **found = tfind(&key, &c->uses, cmp_use);
		struct use *u = found ? *found : NULL;
		if (u) {
			tdelete(&key, &c->uses, cmp_use);
			free(u);
		}
	}
	free(g.v);
}

static void free_walk(struct walk *w)
{
	for (size_t i = 0; i < w->n; i++) {
		free(w->v[i].patient);
		free(w->v[i].date);
		free(w->v[i].name);
		free(w->v[i].path);
	}
	free(w->v);
}

void fs_cache_trim(struct thumbfs *fs)
{
	struct fs_cache *c = fs->cache;
	char dir[PATH_MAX];
	pthread_mutex_lock(&c->lock);
	uint64_t max = c->max_bytes; /* SIGHUP may change it */
	bool due =
	    max && !c->trimming && (!c->walked || c->measured + c->added > max);
	if (due)
		c->trimming = true;
	pthread_mutex_unlock(&c->lock);
	if (!due)
		return;

	struct walk w = {.fs = fs};
	snprintf(dir, sizeof(dir), "%s/patients", fs->spool);
	int ret = fs_each_file(dir, add_file, &w);
	w.thumbs = true;
	if (ret == 0)
		ret = fs_each_file(fs->thumbs, add_file, &w);
	uint64_t total = w.total, freed = 0;
	int files = 0;
	if (ret)
		log_error("cache: cannot measure the spool: %s",
			  strerror(-ret));
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < w.n; i++) { /* what was opened here */
		struct use *u = use_of(c, w.v[i].ino, false);
		if (u && u->last > w.v[i].last)
			w.v[i].last = u->last;
	}
	pthread_mutex_unlock(&c->lock);
	/* down to 90% of the bound, so that it is not done at every file */
	uint64_t low = max - max / 10;
	char a[32], b[32];
	if (!ret && max && total > max) {
		qsort(w.v, w.n, sizeof(*w.v), by_last);
		for (size_t i = 0; i < w.n && total - freed > low; i++) {
			if (evict(fs, &w.v[i]) == 0) {
				freed += w.v[i].bytes;
				files++;
			}
		}
		if (total - freed > max)
			log_warn("cache: %llu bytes kept, over the bound of "
				 "%llu: the rest is not uploaded yet, or open",
				 (unsigned long long)(total - freed),
				 (unsigned long long)max);
	}
	if (files)
		log_info("cache: evicted %d file(s), %s; %s in use", files,
			 log_size(freed, a, sizeof(a)),
			 log_size(total - freed, b, sizeof(b)));
	pthread_mutex_lock(&c->lock);
	c->measured = total - freed;
	/* over the bound with nothing to give back: measure again only once
	 * more has come (a tenth of the bound) */
	c->over = max && c->measured > max;
	c->added = 0;
	c->walked = true;
	c->trimming = false;
	prune(c, &w);
	pthread_mutex_unlock(&c->lock);
	free_walk(&w);
}

/* Take the restore slot of ino, waiting while another thread restores
 * the same file (or every slot is taken). Under c->lock. */
static int take_slot(struct fs_cache *c, ino_t ino, const struct timespec *tv)
{
	for (;;) {
		int free_slot = -1;
		bool busy = false;
		for (int i = 0; i < RESTORES_MAX; i++) {
			if (c->restoring[i].ino == ino)
				busy = true;
			else if (!c->restoring[i].ino && free_slot < 0)
				free_slot = i;
		}
		if (!busy && free_slot >= 0) {
			c->restoring[free_slot].ino = ino;
			memcpy(c->restoring[free_slot].times, tv,
			       sizeof(c->restoring[0].times));
			return free_slot;
		}
		pthread_cond_wait(&c->restored, &c->lock);
	}
}

/* fd as an evicted file is, its size and no data, to be filled again */
static bool emptied(int fd, off_t size)
{
	return ftruncate(fd, 0) == 0 && ftruncate(fd, size) == 0 &&
	       lseek(fd, 0, SEEK_SET) == 0;
}

int fs_cache_restore(struct thumbfs *fs, const struct fs_path *p,
		     const char *sp)
{
	struct fs_cache *c = fs->cache;
	struct db_image img;
	struct stat st;
	char err[512];
	if (p->local)
		return 0;
	int ret = db_image_evicted(fs->db, p->patient, p->date, p->name);
	if (ret != 1)
		return ret == -ENOENT ? 0 : ret;
	int fd = open_for_cache(sp, 0);
	if (fd < 0 || fstat(fd, &st)) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		return ret;
	}
	/* its writes change its times: stat shows the old ones meanwhile */
	struct timespec tv[2] = {st.st_atim, st.st_mtim};
	pthread_mutex_lock(&c->lock);
	int slot = take_slot(c, st.st_ino, tv);
	pthread_mutex_unlock(&c->lock);
	/* another thread may have restored it while this one waited */
	ret = db_image_evicted(fs->db, p->patient, p->date, p->name);
	if (ret == 1)
		ret = db_image_get(fs->db, p->patient, p->date, p->name, &img);
	else
		ret = ret == 0 ? 1 : ret;
	if (!ret) {
		/* (an object moved meanwhile is followed, db_key_moved) */
		int moves = 0;
		do
			ret = s3_get_fd(fs->store, img.s3_key, fd, err,
					sizeof(err));
		while (ret == -ENOENT && moves++ < 3 &&
		       db_key_moved(fs->db, img.id, img.s3_key,
				    sizeof(img.s3_key)) &&
		       emptied(fd, st.st_size));
		if (ret)
			log_error("restore of '%s' from the store failed: %s",
				  sp, err);
		ret = fs_store_errno(ret);
	}
	struct stat now_st;
	if (!ret && (fstat(fd, &now_st) || now_st.st_size != st.st_size)) {
		log_error("restore of '%s': the store has %lld bytes, the "
			  "file %lld",
			  sp, (long long)now_st.st_size, (long long)st.st_size);
		ret = -EIO;
		if (ftruncate(fd, st.st_size))
			log_error("cannot cut '%s' back: %s", sp,
				  strerror(errno));
	}
	if (!ret && fdatasync(fd))
		ret = -errno;
	if (!ret) {
		ret = db_image_restored(fs->db, p->patient, p->date, p->name);
		fs_cache_added(c, (uint64_t)st.st_size);
	}
	futimens(fd, tv); /* the client's, restored or not */
	close(fd);
	pthread_mutex_lock(&c->lock);
	c->restoring[slot].ino = 0;
	pthread_cond_broadcast(&c->restored);
	pthread_mutex_unlock(&c->lock);
	if (ret == 1)
		return 0; /* restored by another */
	return ret == -ENOENT ? -EIO : ret;
}

int fs_cache_stat(struct fs_cache *c, const char *sp, int fd, struct stat *st)
{
	/* under the lock an eviction holds while it punches a file and puts
	 * its times back, so no stat sees the times in between */
	pthread_mutex_lock(&c->lock);
	int ret = (fd >= 0 ? fstat(fd, st) : lstat(sp, st)) ? -errno : 0;
	for (int i = 0; ret == 0 && i < RESTORES_MAX; i++)
		if (c->restoring[i].ino && c->restoring[i].ino == st->st_ino) {
			st->st_atim = c->restoring[i].times[0];
			st->st_mtim = c->restoring[i].times[1];
		}
	pthread_mutex_unlock(&c->lock);
	return ret;
}
