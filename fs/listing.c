/* listing.c - a directory's entries: the spool's, and in a date the
 * catalog's images and thumbnails (some in the store only), taken once
 * per open directory and given a buffer at a time, with their attributes
 * for READDIRPLUS. */
#include "fs/listing.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db/catalog.h"
#include "db/queue.h"
#include "fs/attr.h"
#include "fs/handle.h"
#include "fs/job.h"
#include "fs/request.h"
#include "fs/rowino.h"
#include "fs/spool.h"
#include "fs/thumbfs.h"

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct db_name *)a)->name,
		      ((const struct db_name *)b)->name);
}

/* An open directory's entries, taken when it is read from its start: the
 * calls that follow (a buffer each) go on from the same list, so that an
 * entry is met once even while others are made or removed (rm -r). */
struct dir_list {
	struct dir_entry {
		char *name;
		mode_t type; /* its d_type, as a mode */
		ino_t ino;
		bool known; /* st is what getattr would give */
		struct stat st;
	} * v;
	size_t n, cap;
};

static void dir_list_clear(struct dir_list *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].name);
	d->n = 0;
}

static int add_entry(struct dir_list *d, const char *name, mode_t type,
		     ino_t ino)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 64;
		struct dir_entry *v = realloc(d->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	if (!(d->v[d->n].name = strdup(name)))
		return -ENOMEM;
	d->v[d->n].type = type;
	d->v[d->n].known = false;
	d->v[d->n++].ino = ino;
	return 0;
}

/* The names in dir (none if it is not there), sorted, into *out. */
static int names_in(const char *dir, char ***out)
{
	char **v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	DIR *d = opendir(dir);
	*out = NULL;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		if (n == cap) {
			size_t c = cap ? 2 * cap : 64;
			char **nv = realloc(v, c * sizeof(*v));
			if (!nv)
				break;
			v = nv;
			cap = c;
		}
		if (!(v[n] = strdup(e->d_name)))
			break;
		n++;
	}
	int ret = e ? -ENOMEM : 0;
	closedir(d);
	if (v)
		qsort(v, n, sizeof(*v), cmp_str);
	*out = v;
	if (ret) {
		free_names(v, n);
		*out = NULL;
		return ret;
	}
	return (int)n;
}

static bool has_name(char **v, int n, const char *name)
{
	return n > 0 &&
	       bsearch(&name, v, (size_t)n, sizeof(*v), cmp_str) != NULL;
}

/* The entries of dir but those in skip (sorted by name). */
static int list_dir(struct dir_list *l, const char *dir,
		    const struct db_name *skip, int n_skip)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int ret = 0;
	if (!d)
		return -errno;
	while (ret == 0 && (e = readdir(d))) {
		struct db_name key = {.name = e->d_name};
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    !strncmp(e->d_name, FS_HIDDEN_PREFIX,
			     strlen(FS_HIDDEN_PREFIX)))
			continue; /* (unlinked, still open) */
		if (n_skip > 0 && bsearch(&key, skip, (size_t)n_skip,
					  sizeof(*skip), cmp_name))
			continue;
		/* the entry's type goes with it (d_type) at least, so that
		 * find need not look up every name to know a file from a
		 * directory */
		ret = add_entry(l, e->d_name, (mode_t)DTTOIF(e->d_type),
				e->d_ino);
	}
	closedir(d);
	return ret;
}

/* A batch lists its images and their thumbnails from the catalog (some
 * live in the store only), then the spool's other files (hidden, ignored,
 * or still being written). Rows with no thumbnail (imported before
 * thumbnails) get one made, when they are first listed or read. */
static int list_batch(struct thumbfs *fs, struct dir_list *l,
		      const struct fs_path *p, const char *sp, bool plus)
{
	struct db_name *v = NULL;
	char **spooled = NULL, **cached = NULL, dir[PATH_MAX];
	int n = db_list_batch(fs->db, p->patient, p->date, &v), unthumbed = 0;
	int n_spooled = 0, n_cached = 0, ret = 0;
	if (n < 0)
		return n;
	/* with READDIRPLUS, the attributes of what is in the store only
	 * come from the rows listed, not from a lookup each: the local
	 * files' names say which those are */
	if (plus && (n_spooled = names_in(sp, &spooled)) >= 0 &&
	    fs_thumb_path(fs, p->patient, p->date, NULL, dir, sizeof(dir)) == 0)
		n_cached = names_in(dir, &cached);
	if (n_spooled < 0 || n_cached < 0)
		plus = false; /* each entry looked up, then */
	for (int i = 0; ret == 0 && i < n; i++) {
		const struct db_name *r = &v[i];
		if ((ret = add_entry(l, r->name, S_IFREG, 0)))
			break;
		if (plus && r->uploaded &&
		    !has_name(spooled, n_spooled, r->name)) {
			struct dir_entry *e = &l->v[l->n - 1];
			fs_stored_stat(r->size, r->updated_at, &e->st);
			e->st.st_ino = fs_rowino(r->rowid, r->id, false);
			fs_shown(fs, &e->st);
			e->known = true;
		}
		if (!r->thumb[0]) {
			unthumbed++;
			continue;
		}
		if ((ret = add_entry(l, r->thumb, S_IFREG, 0)))
			break;
		if (plus && r->thumb_stored &&
		    !has_name(cached, n_cached, r->thumb)) {
			struct dir_entry *e = &l->v[l->n - 1];
			fs_stored_stat(r->thumb_size, r->updated_at, &e->st);
			e->st.st_ino = fs_rowino(r->rowid, r->id, true);
			fs_shown(fs, &e->st);
			e->known = true;
		}
	}
	free_names(spooled, n_spooled > 0 ? n_spooled : 0);
	free_names(cached, n_cached > 0 ? n_cached : 0);
	if (ret == 0)
		ret = list_dir(l, sp, v, n);
	if (unthumbed && db_backfill_queue(fs->db, p->patient, p->date) > 0)
		fs_jobs_kick(fs);
	db_names_free(v, n);
	return ret;
}

static int list_path(struct thumbfs *fs, const char *path, struct dir_list *l,
		     bool plus)
{
	struct fs_path p;
	char sp[PATH_MAX];
	int ret;
	fs_parse(fs, path, &p);
	if ((ret = add_entry(l, ".", S_IFDIR, 0)) ||
	    (ret = add_entry(l, "..", S_IFDIR, 0)))
		return ret;
	switch (p.kind) {
	case FS_ROOT:
		/* .thumbfs is reached by name only, so that a copy or an
		 * rsync --delete of the whole mount never meets it */
		return add_entry(l, "patients", S_IFDIR, 0);
	case FS_META:
		if ((ret = add_entry(l, "status", S_IFREG, 0)))
			return ret;
		return add_entry(l, "status.json", S_IFREG, 0);
	case FS_PATIENTS:
	case FS_PATIENT:
	case FS_BATCH:
		if (fs_spool_path(fs, path, sp, sizeof(sp)))
			return -ENAMETOOLONG;
		if (p.kind == FS_BATCH)
			return list_batch(fs, l, &p, sp, plus);
		return list_dir(l, sp, NULL, 0);
	case FS_HELD:
		if (fs_spool_path(fs, path, sp, sizeof(sp)))
			return -ENAMETOOLONG;
		return list_dir(l, sp, NULL, 0);
	default:
		return -ENOTDIR;
	}
}

int fs_op_opendir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	struct dir_list *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	fi->fh = (uint64_t)(uintptr_t)l;
	return 0;
}

int fs_op_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	struct dir_list *l = (struct dir_list *)(uintptr_t)fi->fh;
	dir_list_clear(l);
	free(l->v);
	free(l);
	return 0;
}

/* Asked for READDIRPLUS, every entry goes with its attributes, as stat()
 * gives them, so that find, du and ls -l look up no name again (libfuse
 * keeps a node for each, as a lookup would). Entries go with their
 * offsets (1, 2, ...), a buffer at a time: libfuse 3.14 drops the
 * attributes of a listing given at once with offset 0 (its issue #235,
 * fixed in 3.17.1). */
int fs_op_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
		  off_t off, struct fuse_file_info *fi,
		  enum fuse_readdir_flags flags)
{
	struct thumbfs *fs = fs_get();
	struct dir_list *l = (struct dir_list *)(uintptr_t)fi->fh;
	char full[PATH_MAX];
	const char *dir = strcmp(path, "/") ? path : "";
	bool plus = (flags & FUSE_READDIR_PLUS) &&
		    strcmp(path, "/.thumbfs") != 0; /* (no status text) */
	if (off == 0 || l->n == 0) { /* from the start: taken anew */
		dir_list_clear(l);
		int ret = list_path(fs, path, l, plus);
		if (ret)
			return ret;
	}
	for (size_t i = (size_t)off; i < l->n; i++) {
		const struct dir_entry *e = &l->v[i];
		struct stat st = {.st_ino = e->ino, .st_mode = e->type};
		enum fuse_fill_dir_flags how = 0;
		if (plus && e->known) {
			st = e->st;
			how = FUSE_FILL_DIR_PLUS;
		} else if (plus && i >= 2 &&
			   snprintf(full, sizeof(full), "%s/%s", dir, e->name) <
			       (int)sizeof(full) &&
			   fs_op_getattr(full, &st, NULL) == 0)
			how = FUSE_FILL_DIR_PLUS;
		else
			st =
			    (struct stat){.st_ino = e->ino, .st_mode = e->type};
		if (filler(buf, e->name, &st, (off_t)i + 1, how))
			break;
	}
	return 0;
}
