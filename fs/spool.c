/* spool.c - the mount's own disk: every path and store key derived in one
 * place, files read and written whole, and the walk of the tree. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "db/catalog.h"
#include "db/move.h"
#include "fs/lowlevel.h"
#include "fs/spool.h"
#include "fs/template.h"
#include "fs/thumbfs.h"

/* snprintf's result as 0 or -ENAMETOOLONG. */
static int fits(int len, size_t n)
{
	return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

int fs_tree_path(char *out, size_t n, const char *top, const char *patient,
		 const char *date, const char *name)
{
	return fits(snprintf(out, n, "%s%spatients/%s%s%s%s%s", top ? top : "",
			     top ? "/" : "", patient, date ? "/" : "",
			     date ? date : "", name ? "/" : "",
			     name ? name : ""),
		    n);
}

int fs_spool_file(const struct thumbfs *fs, const char *patient,
		  const char *date, const char *name, char *out, size_t n)
{
	return fs_tree_path(out, n, fs->spool, patient, date, name);
}

int fs_spool_path(const struct thumbfs *fs, const char *path, char *out,
		  size_t n)
{
	return fits(
	    snprintf(out, n, "%s%s", fs->spool, strcmp(path, "/") ? path : ""),
	    n);
}

int fs_thumb_path(const struct thumbfs *fs, const char *patient,
		  const char *date, const char *thumb_name, char *out, size_t n)
{
	return fits(snprintf(out, n, "%s/%s%s%s%s%s", fs->thumbs, patient,
			     date ? "/" : "", date ? date : "",
			     thumb_name ? "/" : "",
			     thumb_name ? thumb_name : ""),
		    n);
}

int fs_image_key(const struct thumbfs *fs, const char *patient,
		 const char *date, const char *name, char *out, size_t n)
{
	return cfg_expand(fs->cfg.key_template, patient, date, name, out, n);
}

void fs_key_prefix(const struct thumbfs *fs, const char *patient,
		   const char *date, const char *name, char *out, size_t n)
{
	char key[2048];
	cfg_expand(fs->cfg.key_template, patient ? patient : "\001",
		   date ? date : "\001", name ? name : "\001", key,
		   sizeof(key));
	key[strcspn(key, "\001")] = '\0';
	snprintf(out, n, "%s", key);
}

int fs_thumb_key(const char *image_key, const char *thumb_name, char *out,
		 size_t n)
{
	const char *slash = strrchr(image_key, '/');
	int dir = slash ? (int)(slash - image_key + 1) : 0;
	return fits(snprintf(out, n, "%.*s%s", dir, image_key, thumb_name), n);
}

/* from to to, an empty to replaced; from gone already is 0. */
static int move_dir(const char *from, const char *to)
{
	struct stat st;
	if (lstat(from, &st))
		return errno == ENOENT ? 0 : -errno;
	if (rmdir(to) && errno != ENOENT)
		return -errno;
	return rename(from, to) ? -errno : 0;
}

int fs_spool_move(const struct thumbfs *fs, const struct db_move *m)
{
	char from[PATH_MAX], to[PATH_MAX];
	const char *fd = m->from_date[0] ? m->from_date : NULL;
	const char *td = m->to_date[0] ? m->to_date : NULL;
	int ret =
	    fs_spool_file(fs, m->from_patient, fd, NULL, from, sizeof(from));
	if (!ret)
		ret =
		    fs_spool_file(fs, m->to_patient, td, NULL, to, sizeof(to));
	if (!ret)
		ret = move_dir(from, to);
	/* the cached thumbnails follow; any left behind are only a cache */
	if (!ret &&
	    !fs_thumb_path(fs, m->from_patient, fd, NULL, from, sizeof(from)) &&
	    !fs_thumb_path(fs, m->to_patient, td, NULL, to, sizeof(to))) {
		if (td && !fs_thumb_path(fs, m->to_patient, NULL, NULL, to,
					 sizeof(to)))
			mkdir(to, 0700);
		if (!fs_thumb_path(fs, m->to_patient, td, NULL, to, sizeof(to)))
			move_dir(from, to);
	}
	return ret;
}

int fs_sync_parent(const char *path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		return 0;
	*slash = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int ret = fsync(fd) ? -errno : 0;
	close(fd);
	return ret;
}

int fs_write_whole(const struct thumbfs *fs, const char *dest, const void *buf,
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

/* Call fn for each entry of dir that is not "." or ".." (a missing dir
 * has none); a non-zero return stops the walk and is returned. */
static int each_entry(const char *dir,
		      int (*fn)(const char *dir, const char *name, void *arg),
		      void *arg)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int ret = 0;
	if (!d) /* (a file where a folder is held: .DS_Store) */
		return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
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
	int depth; /* of the entries being walked: 0 patients, 1 dates */
	char patient[256];
	char date[256];
};

/* An entry of the tree: a patient's or a date's directory is walked in
 * turn, a file is given to fn. */
static int walk_entry(const char *dir, const char *name, void *arg)
{
	struct tree_walk *t = arg;
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    (int)sizeof(path))
		return 0;
	if (t->depth == 2)
		return t->fn(path, t->patient, t->date, name, t->arg);
	snprintf(t->depth ? t->date : t->patient, sizeof(t->date), "%s", name);
	t->depth++;
	int ret = each_entry(path, walk_entry, t);
	t->depth--;
	return ret;
}

int fs_each_file(const char *top,
		 int (*fn)(const char *path, const char *patient,
			   const char *date, const char *name, void *arg),
		 void *arg)
{
	struct tree_walk t = {.fn = fn, .arg = arg};
	return each_entry(top, walk_entry, &t);
}

/* The folder (spool and thumbnail cache) of the patient's date, or of the
 * patient (date NULL), removed if nothing is left in it: no row and no
 * local file (rmdir refuses a folder that is not empty). */
static void prune_folder(struct thumbfs *fs, const char *patient,
			 const char *date)
{
	char path[PATH_MAX];
	if (db_folder_used(fs->db, patient, date) != 0)
		return; /* (or unknown: it stays) */
	if (!fs_spool_file(fs, patient, date, NULL, path, sizeof(path)) &&
	    rmdir(path) && errno != ENOENT)
		return;
	if (!fs_thumb_path(fs, patient, date, NULL, path, sizeof(path)))
		rmdir(path);
}

/* Drop the local copies of img (its spool file and cached thumbnail): the
 * store has other content under its name now, or none. Its date's and
 * patient's folders go with it if it was the last there: another mount
 * removed or moved it, and the folders it leaves are not shown there. */
void fs_spool_drop(struct thumbfs *fs, const struct db_image *img)
{
	char path[PATH_MAX];
	if (!fs_spool_file(fs, img->patient_id, img->batch_date, img->name,
			   path, sizeof(path)))
		unlink(path);
	if (img->thumbnail_name[0] &&
	    !fs_thumb_path(fs, img->patient_id, img->batch_date,
			   img->thumbnail_name, path, sizeof(path)))
		unlink(path);
	prune_folder(fs, img->patient_id, img->batch_date);
	prune_folder(fs, img->patient_id, NULL);
	/* the kernel looks the names up again, not in a second */
	fs_ll_changed(fs, img->patient_id, img->batch_date, img->name);
	if (img->thumbnail_name[0])
		fs_ll_changed(fs, img->patient_id, img->batch_date,
			      img->thumbnail_name);
}
