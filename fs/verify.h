/*
 * verify.h - thumbfs verify CONFIG [PATH] [--content] [--json]: whether the
 * archive keeps its rule. Compares the catalog's rows, the store's listing
 * (paged) and PostgreSQL's rows, mounted or not (the catalog is opened
 * beside a mount, and only read): an original or a thumbnail missing from
 * the store or of another size, an image row without its thumbnail, width
 * and height, two rows sharing a thumbnail, objects under the prefix no row
 * names, rows one side has and the other lacks; with --content, each
 * object read again: its sha256, and each thumbnail decoded and compared
 * with one made from its original (the size Pillow's rule gives, and the
 * same picture). One line per finding, a table of counts, exit 0 only
 * when clean. --repair fixes what can be fixed through the job queue;
 * --delete-orphans deletes the objects no row, kept tombstone or job names
 * (each recorded as a tombstone and in the audit log).
 */
#ifndef FS_VERIFY_H
#define FS_VERIFY_H

#include <stdbool.h>

struct thumbfs;

struct verify_opts {
	const char *patient; /* NULL: every patient */
	const char *date;    /* NULL: every date of it */
	const char *name;    /* NULL: every image of it */
	bool content;	     /* read every object again */
	bool json;	     /* a JSON object per line */
	/* --repair: what can be fixed safely is, then verified again:
	 * content uploaded again from a whole local copy, thumbnails made
	 * again from the stored original, rows sent to PostgreSQL again; by
	 * the mount's runners when mounted (beside), else by this process's */
	bool repair;
	bool delete_orphans; /* with repair: delete them (else only listed) */
	bool beside;	     /* a mount owns the catalog */
};

/* Returns the exit status: 0 clean, 1 findings, 2 it could not check. */
int fs_verify(struct thumbfs *fs, const struct verify_opts *o);

#endif
