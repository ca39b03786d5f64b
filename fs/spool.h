/*
 * spool.h - where a mount keeps what it holds on its own disk, and the one
 * place each path and store key is derived:
 *
 *   DIR/spool/patients/<id>/<date>/<name>   the tree as written (the spool)
 *   DIR/thumbs/<id>/<date>/<thumb_name>     the cached thumbnails
 *   DIR/tmp/                                files made whole, then renamed
 *
 * and the store's keys: an image's by [store] key_template, its
 * thumbnail's beside it (the app's {stem}_thumb{ext} in the same folder).
 */
#ifndef FS_SPOOL_H
#define FS_SPOOL_H

#include <stddef.h>
#include <stdint.h>

struct thumbfs;
struct db_image;
struct db_move;

/* "TOP/patients/<patient>/<date>/<name>" into out, with date and name left
 * out when NULL (a patient's or a batch's directory); TOP "" gives the
 * path the mount shows ("/patients/..."), TOP NULL the relative one log
 * lines name ("patients/..."). 0 or -ENAMETOOLONG. */
int fs_tree_path(char *out, size_t n, const char *top, const char *patient,
		 const char *date, const char *name);

/* The spool file of an image (fs_tree_path below the spool). */
int fs_spool_file(const struct thumbfs *fs, const char *patient,
		  const char *date, const char *name, char *out, size_t n);

/* The spool's counterpart of path as FUSE gives it ("/" is the spool). */
int fs_spool_path(const struct thumbfs *fs, const char *path, char *out,
		  size_t n);

/* The thumbnail cache's file (patient, date, thumb_name), or its
 * directory when thumb_name (and date) is NULL. */
int fs_thumb_path(const struct thumbfs *fs, const char *patient,
		  const char *date, const char *thumb_name, char *out,
		  size_t n);

/* The store key of an image by [store] key_template. */
int fs_image_key(const struct thumbfs *fs, const char *patient,
		 const char *date, const char *name, char *out, size_t n);

/* The prefix every key of a scope falls under (patient, date and name
 * NULL when not given): the key template up to its first placeholder not
 * given. */
void fs_key_prefix(const struct thumbfs *fs, const char *patient,
		   const char *date, const char *name, char *out, size_t n);

/* The store key of the thumbnail thumb_name of the image stored under
 * image_key: beside it. */
int fs_thumb_key(const char *image_key, const char *thumb_name, char *out,
		 size_t n);

/* The spool's directory of a move (and the thumbnail cache's) to its new
 * place, an empty one there replaced; done already is 0. 0 or -errno. */
int fs_spool_move(const struct thumbfs *fs, const struct db_move *m);

/* The directory holding path synced (its entries durable). 0 or -errno. */
int fs_sync_parent(const char *path);

/* Write buf to dest whole or not at all, through DIR/tmp/, creating
 * dest's directory (and its parent) if missing. 0 or -errno. */
int fs_write_whole(const struct thumbfs *fs, const char *dest, const void *buf,
		   size_t len);

/* The user.category and user.filemaker_id xattrs of the spool file at
 * path into img (empty when absent): the app's columns of those names. */
void fs_read_meta(const char *path, struct db_image *img);

/* Call fn for each entry three levels below top, top/<patient>/<date>/
 * <name> (the spool's patients/ and the thumbnail cache are laid out so),
 * with its path; a missing directory has none, and a non-zero return
 * stops the walk and is returned. */
int fs_each_file(const char *top,
		 int (*fn)(const char *path, const char *patient,
			   const char *date, const char *name, void *arg),
		 void *arg);

/* Drop the local copies of img (its spool file and cached thumbnail): the
 * store has other content under its name now, or none. The folders of its
 * date and patient go too if nothing is left in them. */
void fs_spool_drop(struct thumbfs *fs, const struct db_image *img);

#endif
