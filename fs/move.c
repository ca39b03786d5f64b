/* move.c - a patient's or a date's folder renamed through the mount: the
 * catalog, then the spool's directory (db_dir_move, fs_spool_move); the
 * store and PostgreSQL follow through the job queue. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "db/catalog.h"
#include "db/move.h"
#include "fs/job.h"
#include "fs/log.h"
#include "fs/move.h"
#include "fs/request.h"
#include "fs/spool.h"
#include "fs/thumbfs.h"

/* Whether the directory dir has no entry. */
static bool dir_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool empty = true;
	while (d && empty && (e = readdir(d)))
		empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
	if (d)
		closedir(d);
	return empty;
}

/* A patient's directory renamed to another patient's, or a date's to
 * another date's (of any patient): the catalog first (db_dir_move, which
 * the store's keys and PostgreSQL follow through the queue), then the
 * spool's directory; a daemon that dies between the two finishes it at
 * the next mount. */
int fs_rename_dir(struct thumbfs *fs, const char *from, const char *to,
		  const struct fs_path *pf, const struct fs_path *pt,
		  unsigned int flags)
{
	char sf[PATH_MAX], st_[PATH_MAX], parent[PATH_MAX], op[PATH_MAX + 32];
	struct stat sb;
	snprintf(op, sizeof(op), "rename of '%s' to", from);
	if (pt->kind == FS_INVALID && pt->depth == pf->depth)
		return fs_refused(pt->err, op, to, "%s",
				  pt->why); /* not an id, or not a date */
	if (pt->kind != pf->kind)
		return fs_refused(-EPERM, op, to,
				  "a patient's directory stays a patient's, a "
				  "date's a date's");
	if (fs_spool_path(fs, from, sf, sizeof(sf)) ||
	    fs_spool_path(fs, to, st_, sizeof(st_)))
		return -ENAMETOOLONG;
	if (lstat(sf, &sb))
		return -errno;
	if (!strcmp(sf, st_))
		return 0;
	if (lstat(st_, &sb) == 0) {
		if (flags & RENAME_NOREPLACE)
			return -EEXIST;
		if (!S_ISDIR(sb.st_mode))
			return -ENOTDIR;
		/* an empty one is replaced; the catalog says for its part */
		if (sb.st_nlink > 2 || !dir_empty(st_))
			return -ENOTEMPTY;
	} else if (errno != ENOENT) {
		return -errno;
	}
	snprintf(parent, sizeof(parent), "%s", st_);
	*strrchr(parent, '/') = '\0';
	if (lstat(parent, &sb))
		return -errno; /* the new date's patient must exist */
	struct db_move m;
	memset(&m, 0, sizeof(m));
	snprintf(m.from_patient, sizeof(m.from_patient), "%s", pf->patient);
	snprintf(m.to_patient, sizeof(m.to_patient), "%s", pt->patient);
	if (pf->kind == FS_BATCH) {
		snprintf(m.from_date, sizeof(m.from_date), "%s", pf->date);
		snprintf(m.to_date, sizeof(m.to_date), "%s", pt->date);
	}
	int moved = db_dir_move(fs->db, &m);
	if (moved < 0)
		return moved == -ENOTEMPTY ? moved : -EIO;
	int ret = fs_spool_move(fs, &m);
	if (ret == 0)
		FS_SETTLE(fs, "a folder's rename done",
			  db_move_settled(fs->db, &m));
	else
		log_error("renaming '%s' to '%s' in the spool failed: %s; the "
			  "next mount finishes it",
			  from, to, strerror(-ret));
	log_info("renamed '%s' to '%s': %d image(s), their store keys and "
		 "rows follow",
		 from, to, moved);
	fs_jobs_kick(fs);
	return ret;
}
