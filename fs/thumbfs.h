/*
 * thumbfs.h - the state of one mount, shared by the FUSE operations, the
 * job runners and the sync runner. What lives on its disk is in spool.h.
 *
 * Threads: FS_FUSE_THREADS at most serve FUSE requests (ops.c, handle.c,
 * xattr.c, remote.c); [fs] workers job runners (jobs.c, ingest.c); the
 * catalog's checkpointer (jobs.c); one sync runner when PostgreSQL is
 * configured (sync.c).
 *
 * Locks, and what each guards:
 *   fs->lock            stop, pg_state, store_refused, and the runners'
 *                       wake-up (cond); nothing is called while it is held
 *   fs->cache->lock     the cache's table of open files, its figures and
 *                       the files being restored (one restore per file;
 *                       no lock is held across the GET)
 *   handle->win_lock    a remote handle's read window (remote.c)
 *   handle.c's open_lock  the list of open handles, freed after the loop
 *   db's ckpt_lock, lock   the catalog (db/internal.h)
 *   store's lock        its credentials and curl handles (s3/internal.h)
 *   the log's and the audit log's own locks
 * Lock order: cache->lock, then the catalog's; a
 * handle's win_lock, then the store's. fs->lock and the log's locks are
 * taken last and alone. Everything else here is set before the mount
 * starts and only read after.
 */
#ifndef FS_THUMBFS_H
#define FS_THUMBFS_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "fs/config.h"
#include "fs/path.h"
#include "thumb/thumb.h"

struct db;
struct db_pg;
struct s3_store;
struct audit;
struct fs_cache;
struct fs_ll;

/* The largest write one FUSE request carries (at most libfuse's own 1 MiB
 * bound), and the st_blksize every file shows, by which cp and the like
 * size their writes. */
#define FS_IO_SIZE (1 << 20)

/* FUSE requests are served by up to this many threads (libfuse's
 * max_threads; -o max_threads=N sets another), each kept when idle. */
#define FS_FUSE_THREADS 10

struct thumbfs {
	/* cfg's retry_max_s, unmount_drain_s, credentials and log_file, and
	 * thumb, change on SIGHUP under lock (read them with fs_live()) */
	struct cfg cfg;
	struct fs_rules rules;
	bool rules_ready;
	struct thumb_opts thumb;
	struct db *db;
	struct s3_store *store;
	struct db_pg *pg;    /* NULL: no [postgres] dsn, no sync */
	struct audit *audit; /* NULL: no [audit] file */
	struct fs_cache *cache;
	struct fs_ll *ll; /* the kernel's requests (lowlevel.h) */
	char spool[PATH_MAX];
	char thumbs[PATH_MAX];
	char tmp[PATH_MAX];
	const char *config_path; /* re-read on SIGHUP */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;		   /* guarded by lock */
	char pg_state[512];	   /* guarded by lock: "ok", or why it waits */
	char pg_held[512];	   /* guarded by lock: "", or how long and by
				    * what the sync bound is held back */
	long long pg_held_s;	   /* guarded by lock: for how long, 0 */
	bool pg_caught_up;	   /* the sync runner's: said it had */
	atomic_bool walk_spool;	   /* a file the catalog missed is in it */
	char store_refused[512];   /* guarded by lock: "", or the store's
				    * refusal (403) that holds the uploads */
	atomic_bool store_failing; /* a store request failed in a way that
				    * may pass, and none succeeded since */
	/* the runners (jobs.c), started and joined by one thread */
	int n_threads;
	pthread_t *threads;
	bool sync_running;
	pthread_t sync_thread;
	bool ckpt_running; /* the catalog's checkpointer (jobs.c) */
	pthread_t ckpt_thread;
};

#endif
