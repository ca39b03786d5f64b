/*
 * thumbfs.h - the state of one mount, shared by the FUSE operations and the
 * job runner, and the functions fs/ modules call on each other.
 *
 * The data directory ([catalog] dir) holds:
 *   catalog.db   the SQLite catalog and job queue (db/)
 *   spool/       the tree as written: spool/patients/<id>/<date>/<name>
 *   thumbs/      thumbnails: thumbs/<id>/<date>/<stem>_thumb.<ext>
 *   tmp/         files being written whole, renamed into place
 *
 * Locking: db and store lock themselves; pg is used by the sync thread
 * alone. lock guards stop, pg_state and the wake-up of the workers (cond);
 * nothing else here changes after the mount starts.
 * Lock order: fs->lock, then anything inside db/ or s3/.
 */
#ifndef FS_THUMBFS_H
#define FS_THUMBFS_H

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "db/catalog.h"
#include "db/pg.h"
#include "s3/s3.h"
#include "thumb/thumb.h"
#include "fs/audit.h"
#include "fs/cache.h"
#include "fs/config.h"
#include "fs/path.h"

/* The largest write one FUSE request carries (at most libfuse's own 1 MiB
 * bound), and the st_blksize every file shows, by which cp and the like
 * size their writes. */
#define FS_IO_SIZE (1 << 20)

struct thumbfs {
	struct cfg cfg;
	struct fs_rules rules;
	bool rules_ready;
	struct thumb_opts thumb;
	struct db *db;
	struct s3_store *store;
	struct db_pg *pg;    /* NULL: no [postgres] dsn, no sync */
	struct audit *audit; /* NULL: no [audit] file */
	struct fs_cache *cache;
	char spool[PATH_MAX];
	char thumbs[PATH_MAX];
	char tmp[PATH_MAX];

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;		 /* guarded by lock */
	char pg_state[512];	 /* guarded by lock: "ok", or why it waits */
	char store_refused[512]; /* guarded by lock: "", or the store's
				  * refusal (403) that holds the uploads */
	const char *config_path; /* re-read on SIGHUP */
	int n_threads;
	pthread_t *threads;
	bool sync_running;
	pthread_t sync_thread;
};

/* The FUSE operations (ops.c). */
const struct fuse_operations *fs_operations(void);

/* Start cfg.workers job runners, and the PostgreSQL sync runner when fs->pg
 * is set; stop (finishing the current jobs) and join them.
 * fs_worker_kick() wakes them after a job was queued. */
int fs_worker_start(struct thumbfs *fs);
/* After the unmount: let the runners work on for up to seconds while jobs
 * are queued, logging what is left for the next mount. */
void fs_worker_drain(struct thumbfs *fs, int seconds);
void fs_worker_stop(struct thumbfs *fs);
void fs_worker_kick(struct thumbfs *fs);

/* SIGHUP: set from the signal handler; a job runner re-reads the config's
 * [store] credentials and lets held uploads go. */
extern volatile sig_atomic_t fs_reload_pending;

/* Read all of PostgreSQL into the catalog (as the sync runner does first):
 * 0, or -errno with err set. */
int fs_read_postgres(struct thumbfs *fs, char *err, size_t errlen);

/* thumbfs backfill: queue a thumbnail for every stored row that has none
 * (PostgreSQL read first), run the job runners until they are made and
 * synced, printing progress; SIGINT or SIGTERM stops it after the jobs
 * under way, the rest staying queued for the next run or mount. Returns
 * the exit status. */
int fs_backfill(struct thumbfs *fs);

/* Walk the spool and queue whatever the catalog does not have uploaded.
 * Returns the number of files queued, or -errno. */
int fs_reconcile(struct thumbfs *fs);

/* The user.category and user.filemaker_id xattrs of the spool file at
 * path into img (empty when absent): the app's columns of those names. */
void fs_read_meta(const char *path, struct db_image *img);

/* The text of .thumbfs/status into a malloc'd string. */
char *fs_status_text(struct thumbfs *fs);

/* Call fn for each entry three levels below top, top/<patient>/<date>/
 * <name> (the spool's patients/ and the thumbnail cache are laid out so),
 * with its path; a missing directory has none, and a non-zero return
 * stops the walk and is returned. */
int fs_each_file(const char *top,
		 int (*fn)(const char *path, const char *patient,
			   const char *date, const char *name, void *arg),
		 void *arg);

/* The thumbnail cache path of (patient, date, thumb_name). */
int fs_thumb_path(const struct thumbfs *fs, const char *patient,
		  const char *date, const char *thumb_name, char *out,
		  size_t n);

#endif
