/* reconcile.c - the spool at mount: the partial files of writes a daemon
 * that died never acknowledged go, and files the catalog does not have
 * uploaded are queued for ingest. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/catalog.h"
#include "db/held.h"
#include "db/move.h"
#include "fs/log.h"
#include "fs/reconcile.h"
#include "fs/spool.h"
#include "fs/thumbfs.h"
#include "fs/users.h"

struct walk {
	struct thumbfs *fs;
	int queued;
};

static int reconcile_file(const char *path, const char *patient,
			  const char *date, const char *name, void *arg)
{
	struct walk *w = arg;
	char shown[PATH_MAX];
	struct fs_path p;
	struct stat sb;
	if (fs_tree_path(shown, sizeof(shown), "", patient, date, name))
		return 0;
	fs_path_parse(&w->fs->rules, shown, &p);
	/* (a spool file is no thumbnail, whatever its name: those are in
	 * the cache's own folder) */
	if (p.kind != FS_FILE || p.local || lstat(path, &sb) ||
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
		if (fs_spool_file(fs, img.patient_id, img.batch_date, img.name,
				  path, sizeof(path)) == 0 &&
		    unlink(path) && errno != ENOENT)
			return -errno;
		ret = db_writing_abort(fs->db, img.patient_id, img.batch_date,
				       img.name, &kept);
		if (ret)
			return ret;
		fs_tree_path(path, sizeof(path), NULL, img.patient_id,
			     img.batch_date, img.name);
		log_warn("%s was being written when thumbfs stopped, and its "
			 "writer was not told it was saved: %s",
			 path,
			 kept ? "its last uploaded content is kept"
			      : "it is removed");
	}
	return ret == -ENOENT ? 0 : ret;
}

/* Directories renamed whose spool directory had not followed when a
 * daemon died: it follows now, before anything walks the spool. */
static int settle_moves(struct thumbfs *fs)
{
	struct db_move m;
	int ret;
	while ((ret = db_move_first(fs->db, &m)) == 0) {
		ret = fs_spool_move(fs, &m);
		if (ret == 0)
			ret = db_move_settled(fs->db, &m);
		if (ret)
			return ret;
		log_warn("patients/%s%s%s was being renamed to patients/%s%s%s "
			 "when thumbfs stopped: done now",
			 m.from_patient, m.from_date[0] ? "/" : "", m.from_date,
			 m.to_patient, m.to_date[0] ? "/" : "", m.to_date);
	}
	return ret == -ENOENT ? 0 : ret;
}

/* Rows written here and not uploaded whose spool file is gone (a power
 * cut that kept the catalog's row and lost the file's name): nothing holds
 * their content, so they go rather than show what cannot be read. */
static int drop_lost(struct thumbfs *fs)
{
	struct db_image img;
	char after[64] = "", path[PATH_MAX];
	struct stat sb;
	int ret;
	while ((ret = db_spooled_next(fs->db, after, sizeof(after), &img)) ==
	       0) {
		if (fs_spool_file(fs, img.patient_id, img.batch_date, img.name,
				  path, sizeof(path)) ||
		    lstat(path, &sb) == 0 || errno != ENOENT)
			continue;
		ret = db_image_removed(fs->db, img.patient_id, img.batch_date,
				       img.name, NULL);
		if (ret && ret != -ENOENT)
			return ret;
		fs_tree_path(path, sizeof(path), NULL, img.patient_id,
			     img.batch_date, img.name);
		log_warn("%s is in the catalog, not uploaded, and its spool "
			 "file is gone (a power cut before it was synced): its "
			 "row is removed",
			 path);
	}
	return ret == -ENOENT ? 0 : ret;
}

/* Held folders the catalog lists and the spool has not (a daemon that
 * died between the catalog's line and the mkdir, or a folder another
 * mount's rename took with its parent): listed no more. */
static void drop_unheld(struct thumbfs *fs)
{
	char *v[64], sp[PATH_MAX];
	struct stat sb;
	int n = db_held_list(fs->db, v, 64);
	for (int i = 0; i < n && i < 64; i++) {
		if (!fs_spool_path(fs, v[i], sp, sizeof(sp)) &&
		    lstat(sp, &sb) && errno == ENOENT &&
		    db_held_drop(fs->db, v[i]) == 0)
			log_info("held folder '%s' is gone from the spool",
				 v[i]);
		free(v[i]);
	}
}

int fs_reconcile(struct thumbfs *fs, bool walk)
{
	char path[PATH_MAX];
	struct walk w = {.fs = fs};
	int ret = settle_moves(fs);
	drop_unheld(fs);
	if (ret == 0)
		ret = abort_writes(fs);
	if (ret == 0)
		ret = drop_lost(fs);
	if (ret || !walk)
		return ret;
	snprintf(path, sizeof(path), "%s/patients", fs->spool);
	ret = fs_each_file(path, reconcile_file, &w);
	return ret ? ret : w.queued;
}
