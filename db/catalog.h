/*
 * catalog.h - the local SQLite catalog of images and the job queue.
 *
 * Knows nothing of FUSE, of thumbnails or of the store. One connection, in
 * WAL mode, guarded by one mutex inside struct db: every function here may be
 * called from any thread, and none calls back into its caller (rows are
 * handed out as copies). An image's state change and the job that follows
 * it are written in one transaction. This header has the rows the catalog
 * hands out and the images' own functions (catalog.c); each other file of
 * db/ has its own: conn.h (the connection), queue.h (jobs), remote.h (rows
 * from PostgreSQL), evict.h (the cache's state), move.h (folders renamed),
 * gate.h (one owner per store key), pg.h, scratch.h.
 *
 * Each write of an image bumps its generation (gen). A job carries the gen it
 * was queued for; finishing it updates the row only if the gen is unchanged,
 * so a file rewritten while its job ran is simply done again by the next job.
 * Claims live in memory: db_open() releases every claim, so after a crash
 * every unfinished job is done again, never skipped.
 *
 * Actions return 0 or -errno (-ENOENT: no such row or job; -EIO: SQLite
 * failed, with the reason in err where there is one).
 */
#ifndef DB_CATALOG_H
#define DB_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DB_KEY_MAX 1024

struct db;

struct db_image {
	int64_t rowid; /* the catalog's, never given twice (schema v16) */
	char id[37];   /* uuid */
	char patient_id[65];
	char batch_date[11];
	char name[256]; /* original_filename */
	char state[16]; /* "spooled", "uploaded" */
	int64_t gen;
	int64_t file_size;
	char s3_key[DB_KEY_MAX];
	char s3_thumbnail_key[DB_KEY_MAX];
	char s3_bucket[DB_KEY_MAX];
	char thumbnail_name[300]; /* "IMG_1_thumb.jpg", "" when none */
	int64_t thumbnail_size;
	char mime_type[64];
	int width;
	int height;
	char sha256[65];
	char error[256]; /* why there is no thumbnail, "" when there is */
	char uploaded_by[256];
	char category[51];	/* from the user.category xattr */
	char filemaker_id[101]; /* from the user.filemaker_id xattr */
	char created_at[32];	/* ISO 8601, UTC */
	char updated_at[32];
	/* the thumbnail name the image holds in its date ("": none yet),
	 * claimed before its thumbnail is stored (db_thumb_claim) */
	char thumb_claim[300];
};

enum db_job_kind {
	DB_JOB_INGEST = 1, /* thumbnail and upload image_id at gen */
	DB_JOB_DELETE = 2, /* remove key and key2 from the store */
	/* PostgreSQL sync, done by one thread in queue order: */
	DB_JOB_PG_UPSERT = 3, /* upsert image_id as the catalog has it now */
	DB_JOB_PG_DELETE = 4, /* delete (key = patient, key2 = date, name);
			       * image_id: its tombstone's id, or "" */
	DB_JOB_BACKFILL = 5,  /* make the missing thumbnail of image_id, a
			       * row the store has (an import from before
			       * thumbnails) */
	DB_JOB_MOVE = 6,      /* image_id's directory was renamed: copy its
			       * objects (key, key2) to its new keys */
};

struct db_job {
	int64_t id;
	enum db_job_kind kind;
	char image_id[37];
	int64_t gen;
	char key[DB_KEY_MAX];
	char key2[DB_KEY_MAX];
	char name[256];
	int attempts;
	int wrong;	    /* of them, tries the store got or kept wrong */
	int64_t not_before; /* not to be tried before (Unix time) */
	/* a delete's: the versions of its keys it means (their stamp, see
	 * db/pgkey.h); a writer's: the stamp of what it last wrote */
	char stamp[32];
};

/* An unlinked image that the store had: recorded before its objects are
 * deleted, and sent to PostgreSQL (thumbfs_tombstone). */
struct db_tombstone {
	char id[37];
	char image_id[37];
	char patient_id[65];
	char batch_date[11];
	char name[256];
	char s3_bucket[256];
	char s3_key[DB_KEY_MAX];
	char s3_thumbnail_key[DB_KEY_MAX];
	char sha256[65];
	int64_t file_size;
	char deleted_by[256];
	char deleted_at[32];
	bool objects_kept;
	char stamp[32]; /* the removed version's updated_at (catalog only) */
};

struct db_counts {
	int64_t spooled;
	int64_t uploaded;	/* images: what thumbfs draws (image/ and video/
				 * types, PDF, DICOM) */
	int64_t uploaded_other; /* other files: empty or of other types */
	int64_t thumb_errors;
	int64_t jobs_ingest;
	int64_t jobs_delete;
	int64_t jobs_retrying; /* jobs that failed at least once */
	int64_t jobs_sync;     /* PostgreSQL upserts and deletes waiting */
	int64_t jobs_backfill; /* thumbnails to make for stored rows */
	int64_t jobs_move;     /* stored images to copy to their new keys */
	int64_t jobs_parked;   /* failed for good, until retried */
	int64_t oldest_queued; /* unix seconds the oldest waiting job was
				* queued at, 0 when none waits */
	int64_t oldest_sync;   /* the same of the PostgreSQL jobs */
};

/* Whether the last mount of this catalog ended cleanly (its loop over,
 * its runners stopped): 1, 0 (it crashed, or never ran), or -errno. A
 * mount says it is running (false) before it answers, and ended (true)
 * last; each is synced. */
int db_ended_clean(struct db *db);
int db_set_ended_clean(struct db *db, bool clean);

/* The image (patient, date, name) was written: create or update its row as
 * spooled, bump its gen, and queue its ingest, in one transaction. */
int db_image_written(struct db *db, const char *patient, const char *date,
		     const char *name, int64_t size, const char *uploaded_by);

/* The image is open for writing and its writer has not been told it is
 * saved: recorded, so that a daemon that dies now leaves it whole or
 * absent (db_writing_abort), and any ingest on its way is discarded.
 * db_image_written (close, fsync) ends it. -EEXIST if the name is a
 * thumbnail's (db_thumb_named): claimed since the writer looked. */
int db_image_writing(struct db *db, const char *patient, const char *date,
		     const char *name);

/* The change db_image_writing announced did not happen (the truncate
 * after it failed): the mark goes, the content as it was stays due (its
 * ingest queued again if it was not uploaded), and evicted as it was. */
int db_writing_undo(struct db *db, const char *patient, const char *date,
		    const char *name, bool evicted);

/* The next row still spooled (written here, not uploaded yet) after the
 * one whose id is after ("" for the first), into out; after becomes its
 * id. -ENOENT when there is no more. */
int db_spooled_next(struct db *db, char *after, size_t after_len,
		    struct db_image *out);

/* At mount: the first image left open for writing by a daemon that died
 * (patient_id, batch_date and name set), or -ENOENT. */
int db_writing_first(struct db *db, struct db_image *out);

/* Forget that write, once its spool file is gone: a row whose content was
 * uploaded keeps it (*kept: the store has it whole); any other row is
 * removed as by db_image_removed. */
int db_writing_abort(struct db *db, const char *patient, const char *date,
		     const char *name, bool *kept);

/* The image was removed from the mount by who (NULL: thumbfs itself):
 * delete its row and, if it had objects in the store, record its tombstone
 * and queue their deletion - after the tombstone reaches PostgreSQL when
 * sync is on, never when objects are kept. -ENOENT if there was none. */
int db_image_removed(struct db *db, const char *patient, const char *date,
		     const char *name, const char *who);

/* The tombstone id (-ENOENT: none). */
int db_tombstone_get(struct db *db, const char *id, struct db_tombstone *out);

int db_image_get(struct db *db, const char *patient, const char *date,
		 const char *name, struct db_image *out);
int db_image_get_by_id(struct db *db, const char *id, struct db_image *out);
/* An object gone from key while it was read may have moved: its folder
 * renamed, the move job copies it to its new key, sets the row's key,
 * then deletes the old one. Row id's s3_key now into key (n bytes): true
 * when it is another. */
bool db_key_moved(struct db *db, const char *id, char *key, size_t n);

/* The row of rowid: 0, -ENOENT or -EIO. */
int db_image_get_by_rowid(struct db *db, int64_t rowid, struct db_image *out);
/* Whether the catalog has an image in the patient's folder (date NULL), or
 * in its date's: 1, 0, or -errno. */
int db_folder_used(struct db *db, const char *patient, const char *date);
/* One name, the spelling first written. db_name_key: the NFC form
 * (Unicode's composed normalization, libunistring) of a name that is not
 * ASCII, into out: 1, or 0 for an ASCII name (its own key) or one that
 * is no UTF-8 or does not fit. db_name_spelling: the name of the
 * patient's date whose key is key, as its first writer spelled it: 0,
 * -ENOENT, or -errno. */
int db_name_key(const char *name, char *out, size_t n);
int db_name_spelling(struct db *db, const char *patient, const char *date,
		     const char *key, char *out, size_t n);

/* Whether name is a thumbnail's in the patient's date, by record: a row
 * has it as its thumbnail or claims it, and no image has it as its own
 * name. 1, 0, or -errno. */
int db_thumb_named(struct db *db, const char *patient, const char *date,
		   const char *name);
int db_image_get_by_thumb(struct db *db, const char *patient, const char *date,
			  const char *thumb_name, struct db_image *out);

/* At mount: queue an ingest for a spool file the catalog does not know,
 * whose size differs from its row, or that is spooled with no job.
 * Returns 1 if it queued one, 0 if not, or -errno. */
int db_reconcile(struct db *db, const char *patient, const char *date,
		 const char *name, int64_t size, const char *uploaded_by);

int db_counts(struct db *db, struct db_counts *out);

/* What the catalog keeps of what went wrong, whoever mounted it: images
 * without a thumbnail for a reason, and jobs failed for good; at most n of
 * each, newest first. A problem goes with its file (its row). fn(arg,
 * "ID/DATE/NAME" or the job's key, "no thumbnail: why" or "failed for
 * good: why"). 0 or -EIO. */
int db_problems(struct db *db, int n,
		void (*fn)(void *arg, const char *path, const char *what),
		void *arg);

/* An image's name and its thumbnail's ("" when none), malloc'd; and what
 * its row says of them: a listing gives these as the attributes of an
 * image that has no local file. */
struct db_name {
	int64_t rowid;
	char id[37];
	char *name;
	char *thumb;
	bool uploaded;	   /* state 'uploaded' */
	bool thumb_stored; /* a thumbnail key, and the only row of its name */
	int64_t size, thumb_size;
	char updated_at[32];
};

/* The images of the batch, sorted by name as strcmp() sorts, into *out (a
 * malloc'd array; free with db_names_free()). Returns how many, or
 * -errno (then *out is untouched). */
int db_list_batch(struct db *db, const char *patient, const char *date,
		  struct db_name **out);
void db_names_free(struct db_name *v, int n);

/* Set the image's category and filemaker_id (from its user.* xattrs) and,
 * if it is uploaded, queue its PostgreSQL upsert. -ENOENT: no such row. */
int db_image_meta(struct db *db, const char *patient, const char *date,
		  const char *name, const char *category,
		  const char *filemaker_id);

/* Now, as ISO 8601 UTC with microseconds (a row's updated_at), into
 * out[32]. */
void db_now(char out[32]);

/* An image's name as a job and a key's owner give it: "patient/date/name"
 * (the SQL of queue.c and move.c writes the same), into out[400]. */
void db_image_name(char out[400], const char *patient, const char *date,
		   const char *name);

#endif
