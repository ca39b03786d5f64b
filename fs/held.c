/* held.c - folders held for their names: made, removed, renamed into the
 * archive (what they hold then ingested), and counted for the status. */
#include "fs/held.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/catalog.h"
#include "db/held.h"
#include "fs/context.h"
#include "fs/handle.h"
#include "fs/log.h"
#include "fs/request.h"
#include "fs/spool.h"
#include "fs/thumbfs.h"

/* Below a date, a name the catalog has: an image (in the store only, or
 * being written) or a thumbnail. */
static bool name_taken(struct thumbfs *fs, const struct fs_path *p)
{
	struct db_image img;
	return db_image_get(fs->db, p->patient, p->date, p->name, &img) == 0 ||
	       db_image_get_by_thumb(fs->db, p->patient, p->date, p->name,
				     &img) == 0;
}

/* The topmost held folder of its chain: its parent is a valid one. */
static bool is_top(const struct fs_path *p)
{
	return !p->held || p->depth == p->held_at;
}

bool fs_held_target(const struct fs_path *pt)
{
	return pt->held || (pt->kind == FS_FILE && pt->depth == 4);
}

static int catalog_errno(int ret)
{
	return ret == -ENOSPC || ret == -ENOMEM ? ret : -EIO;
}

int fs_held_mkdir(struct thumbfs *fs, const char *path, const struct fs_path *p,
		  mode_t mode)
{
	char sp[PATH_MAX];
	bool top = is_top(p);
	int ret;
	if (!p->held && name_taken(fs, p))
		return -EEXIST;
	if (fs_spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	/* the catalog first: a folder it does not list would hold files
	 * that nobody is told about */
	if (top && (ret = db_held_add(fs->db, path)))
		return catalog_errno(ret);
	if (mkdir(sp, 0700)) {
		ret = -errno;
		if (top && ret != -EEXIST)
			db_held_drop(fs->db, path);
		return ret;
	}
	if ((ret = fs_take_owner(-1, sp, mode))) {
		rmdir(sp);
		if (top)
			db_held_drop(fs->db, path);
		return ret;
	}
	if (top)
		log_info("holding '%s' (%s): what is put in it stays on this "
			 "server, not uploaded, until the folder is renamed "
			 "to a patient id or a date",
			 path,
			 p->held ? p->why : "a folder in a date's folder");
	return 0;
}

int fs_held_rmdir(struct thumbfs *fs, const char *path)
{
	char sp[PATH_MAX];
	if (fs_spool_path(fs, path, sp, sizeof(sp)))
		return -ENAMETOOLONG;
	if (rmdir(sp))
		return -errno;
	int ret = db_held_drop(fs->db, path);
	if (ret)
		log_error("the catalog kept held folder '%s' after its rmdir: "
			  "%s",
			  path, strerror(-ret));
	return 0;
}

/* A file directly in what becomes a patient's folder: files belong in a
 * date's: 1 with its name in name, 0 if there is none, or -errno. */
static int stranded(const char *dir, const struct thumbfs *fs, char *name,
		    size_t n)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int found = 0;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while (!found && (e = readdir(d))) {
		if (e->d_type == DT_DIR || !strcmp(e->d_name, ".") ||
		    !strcmp(e->d_name, "..") ||
		    fs_name_local(&fs->rules, e->d_name))
			continue;
		snprintf(name, n, "%s", e->d_name);
		found = 1;
	}
	closedir(d);
	return found;
}

struct entering {
	struct thumbfs *fs;
	uid_t uid;
	int files, held, failed;
};

/* The tree at path (its spool copy at sp) is in the archive now: its
 * files are ingested, its folders with other names held. */
static void enter(struct entering *w, const char *path, const char *sp)
{
	DIR *d = opendir(sp);
	struct dirent *e;
	if (!d) {
		w->failed++;
		return;
	}
	while ((e = readdir(d))) {
		char mp[PATH_MAX], fp[PATH_MAX];
		struct fs_path p;
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    snprintf(mp, sizeof(mp), "%s/%s", path, e->d_name) >=
			(int)sizeof(mp) ||
		    snprintf(fp, sizeof(fp), "%s/%s", sp, e->d_name) >=
			(int)sizeof(fp) ||
		    lstat(fp, &st))
			continue;
		fs_parse_name(w->fs, mp, &p);
		if (S_ISDIR(st.st_mode) &&
		    (p.kind == FS_PATIENT || p.kind == FS_BATCH)) {
			enter(w, mp, fp);
		} else if (S_ISDIR(st.st_mode)) {
			if (db_held_add(w->fs->db, mp))
				w->failed++;
			else
				w->held++;
		} else if (S_ISREG(st.st_mode) && p.kind == FS_FILE &&
			   !p.local && !p.thumb) {
			if (fs_may_create(w->fs, "ingest of", mp, &p) ||
			    fs_queue_ingest(w->fs, &p, (int64_t)st.st_size,
					    w->uid))
				w->failed++;
			else
				w->files++;
		}
	}
	closedir(d);
}

int fs_held_rename(struct thumbfs *fs, const char *from, const char *to,
		   const struct fs_path *pf, const struct fs_path *pt,
		   unsigned int flags)
{
	char sf[PATH_MAX], st_[PATH_MAX], op[PATH_MAX + 32], name[256];
	bool into = pt->kind == FS_PATIENT || pt->kind == FS_BATCH;
	int ret;
	snprintf(op, sizeof(op), "rename of '%s' to", from);
	if (!into && !fs_held_target(pt))
		return pt->kind == FS_INVALID
			   ? fs_refused_path(pt->err, op, to, pt)
			   : fs_refused(-EPERM, op, to,
					"a folder goes where a patient's or a "
					"date's does");
	if (fs_spool_path(fs, from, sf, sizeof(sf)) ||
	    fs_spool_path(fs, to, st_, sizeof(st_)))
		return -ENAMETOOLONG;
	if (!pf->held) {
		/* a patient's or a date's folder: only an empty one may be
		 * held, what is in the archive stays there */
		ret = db_folder_used(fs->db, pf->patient,
				     pf->kind == FS_BATCH ? pf->date : NULL);
		if (ret)
			return ret < 0 ? catalog_errno(ret)
				       : fs_refused(-EPERM, op, to,
						    "a folder with images in "
						    "the archive keeps a "
						    "patient id's or a date's "
						    "name");
	}
	if (into) {
		ret = db_folder_used(fs->db, pt->patient,
				     pt->kind == FS_BATCH ? pt->date : NULL);
		if (ret)
			return ret < 0 ? catalog_errno(ret) : -ENOTEMPTY;
		if (pt->kind == FS_PATIENT &&
		    (ret = stranded(sf, fs, name, sizeof(name))))
			return ret < 0 ? ret
				       : fs_refused(-EPERM, op, to,
						    "'%s' would be a file in a "
						    "patient's folder: files "
						    "belong in a date's",
						    name);
	} else if (!pt->held && name_taken(fs, pt)) {
		return -ENOTDIR; /* below a date: an image's name */
	}
	if (renameat2(AT_FDCWD, sf, AT_FDCWD, st_, flags))
		return -errno;
	if (!pf->held) { /* its cached thumbnails' folder, empty */
		char tp[PATH_MAX];
		if (!fs_thumb_path(fs, pf->patient,
				   pf->kind == FS_BATCH ? pf->date : NULL, NULL,
				   tp, sizeof(tp)))
			rmdir(tp);
	}
	if ((ret = db_held_drop(fs->db, from)) == 0 && !into && is_top(pt))
		ret = db_held_add(fs->db, to);
	if (ret)
		log_error("the catalog's held folders missed the rename of "
			  "'%s' to '%s': %s",
			  from, to, strerror(-ret));
	if (!into)
		return 0;
	struct entering w = {.fs = fs, .uid = fs_ctx()->uid};
	enter(&w, to, st_);
	log_info("'%s' renamed to '%s': %d file(s) go into the archive, %d "
		 "folder(s) in it stay held",
		 from, to, w.files, w.held);
	if (w.failed) {
		log_error("'%s': %d file(s) or folder(s) in it could not be "
			  "taken in; the next mount's walk of the spool "
			  "finds them",
			  to, w.failed);
		atomic_store(&fs->walk_spool, true);
		return -EIO;
	}
	return 0;
}
