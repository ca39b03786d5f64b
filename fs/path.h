/*
 * path.h - the tree a mount shows: which paths exist, which names are valid,
 * and what each name is (the original design, shared/DESIGN.md beside
 * the clone, "The tree a mount shows").
 */
#ifndef FS_PATH_H
#define FS_PATH_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

/* The name a file unlinked or replaced while open has until its last
 * close (lowlevel.c, as libfuse's high-level API names it with
 * hard_remove off): ".fuse_hidden...". */
#define FS_HIDDEN_PREFIX ".fuse_hidden"

enum fs_kind {
	FS_ROOT,     /* "/" */
	FS_PATIENTS, /* "/patients" */
	FS_PATIENT,  /* "/patients/<id>" */
	FS_BATCH,    /* "/patients/<id>/<date>" */
	FS_FILE,     /* "/patients/<id>/<date>/<name>" */
	FS_META,     /* "/.thumbfs" */
	FS_STATUS,   /* "/.thumbfs/status" and "/.thumbfs/status.json" */
	FS_HELD,     /* a folder held for its name (db/held.h), where a
		      * patient's or a date's goes, or one below a date */
	FS_INVALID,  /* see err and why */
};

struct fs_path {
	enum fs_kind kind;
	int depth; /* how many names the path has ("/" has 0) */
	char patient[65];
	char date[11];
	char name[256];
	bool local;	  /* FS_FILE: hidden, ignored or held, never uploaded */
	bool held;	  /* FS_FILE, FS_HELD: in a held folder, or it */
	int held_at;	  /* with held: the depth of the topmost held folder */
	bool thumb;	  /* FS_FILE: a reserved "*_thumb.*" name */
	bool json;	  /* FS_STATUS: status.json */
	int err;	  /* FS_INVALID: -EINVAL (bad id or date), -EPERM (not a
			   * place for files), -ENAMETOOLONG, -ENOENT */
	char why[512];	  /* FS_INVALID: the rule that failed, with the values;
			   * with held: why the folder is held */
	const char *rule; /* FS_INVALID: the rule broken (why's format) */
};

struct fs_rules {
	regex_t patient_re;
	char pattern[256]; /* as the config has it, for the log */
	char ignore[1024]; /* comma-separated fnmatch() globs */
};

/* Compile the rules; -EINVAL if the pattern does not compile. */
int fs_rules_init(struct fs_rules *r, const char *patient_pattern,
		  const char *ignore);
void fs_rules_release(struct fs_rules *r);

/* Classify path (as FUSE gives it, starting with '/'). */
void fs_path_parse(const struct fs_rules *r, const char *path,
		   struct fs_path *out);

/* A part of the tree named on a command line (thumbfs retry, verify):
 * "patients/ID[/DATE[/NAME]]", alone or after a mount point. */
struct fs_scope {
	int parts; /* 1: a patient, 2: a date of it, 3: one name */
	char patient[65];
	char date[11];
	char name[256];
};

/* Parse path into out: 0, or -EINVAL with err said (not such a path, an
 * empty part, a part too long for what it names, more than three). */
int fs_scope_parse(const char *path, struct fs_scope *out, char *err, size_t n);

/* The length of the UTF-8 character s starts with (1 to 4), or 0 if it is
 * NUL or not valid UTF-8. Written out because glibc's mbrtowc depends on
 * the locale, and this must not: RFC 3629, no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
size_t fs_utf8_char(const char *s);

/* A name that stays local wherever it is: hidden ('.' first: .DS_Store,
 * Finder's ._NAME, rsync's temporaries) or on [fs] ignore (Thumbs.db,
 * desktop.ini, ~$NAME). */
bool fs_name_local(const struct fs_rules *r, const char *name);

/* A real calendar date written YYYY-MM-DD. */
bool fs_valid_date(const char *s);

/* "*_thumb.*": the stem before the last '.' ends in "_thumb" (a name
 * only thumbfs makes). */
bool fs_is_thumb_name(const char *name);

/* "IMG_1.jpg" and ".jpg" -> "IMG_1_thumb.jpg" into out: the app's
 * {stem}_thumb{ext}. */
void fs_thumb_name(const char *name, const char *ext, char *out, size_t n);

/*
 * No two images of a date share a thumbnail. The thumbnail of NAME is the
 * first of these that no other image of its date holds (claimed in the
 * catalog, so the first to come keeps it, for as long as it exists):
 *   k = 0   STEM_thumb.EXT      the app's name ("a.jpg" -> "a_thumb.jpg")
 *   k = 1   NAME_thumb.EXT      ("a.JPG" -> "a.JPG_thumb.jpg")
 *   k >= 2  NAME~k_thumb.EXT    ("a.JPG~2_thumb.jpg")
 * Each is a reserved "*_thumb.*" name, so no image can be called so.
 * Candidate k of name into out: 0, or -ENAMETOOLONG past 255 bytes.
 */
#define FS_THUMB_CANDIDATES 100
int fs_thumb_candidate(const char *name, const char *ext, int k, char *out,
		       size_t n);

/* The longest name of an image, so that its every candidate thumbnail
 * name (NAME~99_thumb.jpg, 13 bytes more) fits the 255 bytes a file name
 * has. */
#define FS_IMAGE_NAME_MAX 242

#endif
