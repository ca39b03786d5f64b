/* main.c - thumbfs CONFIG MOUNTPOINT [-o opts] [-f]: check everything, then
 * mount, then serve until unmounted. */
#define FUSE_USE_VERSION 314
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "db/catalog.h"
#include "db/conn.h"
#include "db/queue.h"
#include "db/pg.h"
#include "fs/audit.h"
#include "fs/audited.h"
#include "fs/nfc.h"
#include "fs/backfill.h"
#include "fs/cache.h"
#include "fs/commands.h"
#include "fs/jobs.h"
#include "fs/handle.h"
#include "fs/log.h"
#include "fs/owner.h"
#include "fs/reload.h"
#include "fs/verify.h"
#include "fs/metrics_http.h"
#include "fs/lowlevel.h"
#include "fs/ops.h"
#include "fs/reconcile.h"
#include "fs/setup.h"
#include "fs/thumbfs.h"
#include "s3/s3.h"
#include "thumb/worker.h"

#ifndef THUMBFS_VERSION
#define THUMBFS_VERSION "0"
#endif

struct args {
	char *config;
	char *log_file; /* -o log=FILE: over [log] file */
	char *metrics;	/* -o metrics=HOST:PORT: over [metrics] listen */
	int show_help;
	int show_version;
};

static const struct fuse_opt spec[] = {
    {"log=%s", offsetof(struct args, log_file), 0},
    {"metrics=%s", offsetof(struct args, metrics), 0},
    {"-h", offsetof(struct args, show_help), 1},
    {"--help", offsetof(struct args, show_help), 1},
    {"-V", offsetof(struct args, show_version), 1},
    {"--version", offsetof(struct args, show_version), 1},
    FUSE_OPT_END,
};

/* The first argument that is not an option is the config file; the second,
 * the mount point, is left for fuse_parse_cmdline(). */
static int on_arg(void *data, const char *arg, int key,
		  struct fuse_args *outargs)
{
	struct args *a = data;
	(void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT && !a->config) {
		a->config = strdup(arg);
		return 0;
	}
	return 1;
}

static void usage(const char *prog)
{
	printf("usage: %s CONFIG MOUNTPOINT [-o opts] [-f]\n"
	       "       %s schema     print the PostgreSQL DDL "
	       "(schema/postgres.sql)\n"
	       "       %s presign CONFIG KEY [SECONDS]   a GET link to an "
	       "object\n"
	       "       %s backfill CONFIG   make the missing thumbnails of "
	       "stored rows\n"
	       "       %s retry CONFIG [PATH]   try again what failed for "
	       "good\n\n"
	       "Mount the patient-image archive described by CONFIG (an INI "
	       "file;\nsee mount.conf.example) on MOUNTPOINT.\n\n"
	       "    -f             stay in the foreground, log to stderr\n"
	       "    -d             FUSE debug output (implies -f)\n"
	       "    -s             one thread for FUSE requests\n"
	       "    -o log=FILE    log to FILE (over [log] file in CONFIG)\n"
	       "    -o metrics=HOST:PORT  serve Prometheus metrics there "
	       "(over\n"
	       "                   [metrics] listen in CONFIG)\n"
	       "    -o opt[,opt]   FUSE mount options (allow_other, ...)\n"
	       "    -h, --help     this text\n"
	       "    -V, --version  the version\n",
	       prog, prog, prog, prog, prog);
}

/* Where the log goes, said before daemonising: -o log=FILE, else [log]
 * file, else syslog; a daemon whose syslog cannot be reached keeps the
 * stderr it was started with rather than log nowhere. */
static int start_log(struct thumbfs *fs, const char *arg, bool foreground)
{
	const char *file = arg && *arg ? arg : fs->cfg.log_file;
	if (*file) {
		if (*file != '/') {
			fprintf(stderr,
				"thumbfs: -o log=%s: the log file must be an "
				"absolute path\n",
				file);
			return -1;
		}
		int ret = log_to_file(file);
		if (ret) {
			fprintf(stderr,
				"thumbfs: cannot open log file '%s': %s\n",
				file, strerror(-ret));
			return -1;
		}
		return 0;
	}
	if (foreground || log_syslog_reachable())
		return 0;
	fprintf(stderr, "thumbfs: syslog cannot be reached (nothing answers on "
			"/dev/log): the log goes to this stderr; set [log] "
			"file or -o log=FILE to keep it in a file\n");
	return log_keep_stderr() ? -1 : 0;
}

static void on_sighup(int sig)
{
	(void)sig;
	fs_reload_pending = 1;
}

static void log_catalog(int code, const char *msg)
{
	log_warn("catalog (SQLite %d): %s", code, msg);
}

static void on_stop(int sig)
{
	(void)sig;
	fs_drain_stop = 1;
}

/* Ctrl-C or SIGTERM before the FUSE loop runs: the mount, if it is made,
 * ends as soon as it is, and the process exits 0. */
static atomic_int early_stop;

static void on_early_stop(int sig)
{
	(void)sig;
	early_stop = 1;
}

/* Set SIGINT's and SIGTERM's handler to fn (SIG_DFL: libfuse's are set
 * next), with both blocked meanwhile, so that none meets the default
 * (the process killed, exit status 130) between two handlers. */
static void stop_signals(sigset_t *blocked, void (*fn)(int))
{
	struct sigaction sa = {.sa_handler = fn, .sa_flags = SA_RESTART};
	sigemptyset(&sa.sa_mask);
	sigemptyset(blocked);
	sigaddset(blocked, SIGINT);
	sigaddset(blocked, SIGTERM);
	pthread_sigmask(SIG_BLOCK, blocked, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* Whether -o allow_other came on the command line. */
static bool allow_other_given(const struct fuse_args *args)
{
	for (int i = 0; i < args->argc; i++)
		if (strstr(args->argv[i], "allow_other"))
			return true;
	return false;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts opts = {0};
	struct args a = {0};
	struct thumbfs fs;
	struct fuse_session *se = NULL;
	struct fuse_loop_config *loop = NULL;
	char err[1024];
	int status = 1, owner = -1, metrics = -1;
	bool mounted = false;

	/* a thumbnail worker (thumb/worker.h): nothing else of the mount */
	if (argc > 1 && !strcmp(argv[1], THUMB_WORKER_ARG))
		return thumb_worker_main(argc, argv);
	int cmd = fs_command(argc, argv);
	if (cmd >= 0)
		return cmd;
	/* Image buffers come and go per file: keep them in the heap rather
	 * than mapping and faulting fresh pages for each (bounded). */
	db_set_logger(log_catalog);
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 128 << 20);
	memset(&fs, 0, sizeof(fs));
	pthread_mutex_init(&fs.lock, NULL);
	pthread_cond_init(&fs.cond, NULL);
	if (fuse_opt_parse(&args, &a, spec, on_arg))
		goto out_args;
	if (a.show_help) {
		usage(argv[0]);
		status = 0;
		goto out_args;
	}
	if (a.show_version) {
		printf("thumbfs %s (libfuse %s)\n", THUMBFS_VERSION,
		       fuse_pkgversion());
		status = 0;
		goto out_args;
	}
	/* the FUSE threads: ours, unless the command line says otherwise */
	char threads[64];
	snprintf(threads, sizeof(threads), "-omax_threads=%d", FS_FUSE_THREADS);
	if (fuse_opt_insert_arg(&args, 1, threads) ||
	    fuse_parse_cmdline(&args, &opts))
		goto out_args;
	if (!a.config || !opts.mountpoint) {
		usage(argv[0]);
		goto out_args;
	}

	sigset_t blocked;
	stop_signals(&blocked, on_early_stop);
	pthread_sigmask(SIG_UNBLOCK, &blocked, NULL);
	/* Everything is checked before mounting, so a mistake reaches the
	 * terminal (as sshfs connects first). */
	if (fs_prepare(&fs, a.config))
		goto out_rules;
	/* One owner per catalog: a mount still finishing its uploads is
	 * waited for; a live mount or a backfill is an error. */
	owner = fs_owner_take(fs.cfg.catalog_dir, true, &early_stop, NULL, 0,
			      err, sizeof(err));
	if (owner == -EINTR) { /* Ctrl-C while it waited */
		status = 0;
		goto out_rules;
	}
	if (owner < 0) {
		fprintf(stderr, "thumbfs: %s\n", err);
		goto out_rules;
	}
	/* Open the catalog once to check it; it is opened again after
	 * daemonising, since an SQLite connection must not cross fork(). */
	fs.db = db_open(fs.cfg.catalog_dir, err, sizeof(err));
	if (!fs.db) {
		fprintf(stderr, "thumbfs: %s\n", err);
		goto out_rules;
	}
	db_free(fs.db);
	fs.db = NULL;
	fs.store = fs_open_store(&fs.cfg);
	if (!fs.store)
		goto out_rules;
	if (fs.cfg.audit_file[0] &&
	    !(fs.audit = audit_open(fs.cfg.audit_file, fs.cfg.audit_max_bytes,
				    fs.cfg.audit_keep, err, sizeof(err)))) {
		fprintf(stderr, "thumbfs: %s\n", err);
		goto out_store;
	}

	/* the metrics' port is taken now, so that a port in use or a bad
	 * address stops the mount at the terminal */
	const char *listen_on = a.metrics ? a.metrics : fs.cfg.metrics_listen;
	if (*listen_on &&
	    (metrics = fs_metrics_listen(listen_on, err, sizeof(err))) < 0) {
		fprintf(stderr, "thumbfs: %s\n", err);
		goto out_audit;
	}

	fuse_opt_add_arg(&args, "-osubtype=thumbfs");
	/* mount and df show the config as the source (sshfs shows
	 * user@host:path), commas and backslashes escaped for FUSE */
	char fsname[PATH_MAX * 2 + 16], *o = fsname;
	o += snprintf(fsname, sizeof(fsname), "-ofsname=");
	for (const char *c = fs.config_path ? fs.config_path : a.config;
	     *c && o < fsname + sizeof(fsname) - 3; c++) {
		if (*c == ',' || *c == '\\')
			*o++ = '\\';
		*o++ = *c;
	}
	*o = '\0';
	fuse_opt_add_arg(&args, fsname);
	/* the kernel checks modes and owners, as on a local disk; other
	 * users come in only when the config says so */
	fuse_opt_add_arg(&args, "-odefault_permissions");
	if (fs.cfg.allow_other)
		fuse_opt_add_arg(&args, "-oallow_other");
	se = fs_ll_new(&fs, &args, fs_nfc_ops(fs_audited(fs_operations())));
	if (!se)
		goto out_audit;
	if (fuse_session_mount(se, opts.mountpoint))
		goto out_destroy;
	mounted = true;
	if (start_log(&fs, a.log_file, opts.foreground))
		goto out_unmount;
	if (fuse_daemonize(opts.foreground))
		goto out_unmount;
	if (!opts.foreground)
		log_use_syslog(true);
	fs_owner_say(owner, "mounted on %s", opts.mountpoint);
	fs.db = db_open(fs.cfg.catalog_dir, err, sizeof(err));
	if (!fs.db) {
		log_error("%s", err);
		goto out_unmount;
	}
	db_set_keep_objects(fs.db, !strcmp(fs.cfg.delete_policy, "keep"));
	if (fs.cfg.pg_dsn[0]) {
		fs.pg = db_pg_new(fs.cfg.pg_dsn);
		if (!fs.pg) {
			log_error("out of memory");
			goto out_db;
		}
		db_set_pg_sync(fs.db, true);
	}
	/* libfuse sets its handlers where they are the default */
	stop_signals(&blocked, SIG_DFL);
	if (fuse_set_signal_handlers(se)) {
		pthread_sigmask(SIG_UNBLOCK, &blocked, NULL);
		goto out_db;
	}
	if (early_stop)
		fuse_session_exit(se);
	pthread_sigmask(SIG_UNBLOCK, &blocked, NULL);
	/* SIGHUP re-reads the store's credentials (libfuse's handler would
	 * unmount) */
	struct sigaction hup = {.sa_handler = on_sighup,
				.sa_flags = SA_RESTART};
	sigemptyset(&hup.sa_mask);
	sigaction(SIGHUP, &hup, NULL);
	/* the spool is walked only after a crash: a clean end left in it
	 * nothing the catalog does not know (at 1M rows, 40k folders) */
	int clean = db_ended_clean(fs.db);
	if (clean == 1)
		log_info("the last mount ended cleanly: the spool is not "
			 "walked");
	int queued = fs_reconcile(&fs, clean != 1);
	if (db_set_ended_clean(fs.db, false))
		log_warn("cannot record that the catalog is in use: the next "
			 "mount walks the spool");
	if (queued < 0)
		log_error("reconcile of the spool failed: %s",
			  strerror(-queued));
	else if (queued > 0)
		log_info("resuming %d file(s) the catalog had not uploaded",
			 queued);
	if (fs_jobs_start(&fs)) {
		log_error("cannot start the workers");
		goto out_signals;
	}
	if (metrics >= 0) {
		int fd = metrics;
		metrics = -1; /* the server's now, working or not */
		if (fs_metrics_serve(&fs, fd, err, sizeof(err)))
			log_error("%s", err);
		else
			log_info("metrics at http://%s/metrics", listen_on);
	}
	log_info("mounted %s on %s (store %s)", a.config, opts.mountpoint,
		 s3_bucket(fs.store));
	if (!fs.cfg.allow_other && !allow_other_given(&args))
		log_info("only uid %u may use the mount: [fs] allow_other = "
			 "true lets other users in (Samba needs it: it acts as "
			 "each user)",
			 (unsigned)getuid());
	if (fs.cfg.insecure_skip_verify)
		log_warn("%s", INSECURE_WARNING);
	int ret;
	if (opts.singlethread) {
		ret = fuse_session_loop(se);
	} else {
		loop = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(loop, opts.clone_fd);
		fuse_loop_cfg_set_max_threads(loop, opts.max_threads);
		fuse_loop_cfg_set_idle_threads(loop, opts.max_threads);
		ret = fuse_session_loop_mt(se, loop);
		fuse_loop_cfg_destroy(loop);
	}
	/* Ctrl-C and SIGTERM are how a mount is stopped: not a failure */
	status = ret == 0 || ret == SIGINT || ret == SIGTERM ? 0 : 1;
	/* The mount point is given back at once; what is still queued is
	 * worked on here, in the background, and a second Ctrl-C or
	 * SIGTERM leaves it for the next mount. */
	stop_signals(&blocked, on_stop);
	fuse_remove_signal_handlers(se); /* (ours stay) */
	pthread_sigmask(SIG_UNBLOCK, &blocked, NULL);
	fs_ll_unmount(&fs);
	mounted = false;
	log_info("unmounted %s", opts.mountpoint);
	fs_owner_say(owner, "finishing the uploads of %s", opts.mountpoint);
	fs_handles_release_all(&fs); /* the loop is over: no request comes */
	fs_jobs_drain(&fs, fs_live(&fs).unmount_drain_s);
	fs_jobs_stop(&fs);
	if (atomic_load(&fs.walk_spool))
		log_warn("a file the catalog could not take is in the spool: "
			 "the next mount walks it");
	else if (db_set_ended_clean(fs.db, true))
		log_warn("cannot record the clean end: the next mount walks "
			 "the spool");
	goto out_db;
out_signals:
	fuse_remove_signal_handlers(se);
out_db:
	fs_metrics_stop(); /* it reads the catalog */
	db_pg_free(fs.pg);
	db_free(fs.db);
out_unmount:
	if (mounted)
		fs_ll_unmount(&fs);
out_destroy:
	fuse_session_destroy(se);
	fs_ll_free(&fs);
out_audit:
	if (metrics >= 0)
		close(metrics);
	audit_close(fs.audit);
out_store:
	s3_free(fs.store);
out_rules:
	fs_cache_free(fs.cache);
	if (fs.rules_ready)
		fs_rules_release(&fs.rules);
out_args:
	free(opts.mountpoint);
	free((char *)fs.config_path);
	free(a.config);
	free(a.log_file);
	free(a.metrics);
	if (owner >= 0)
		close(owner);
	fuse_opt_free_args(&args);
	pthread_cond_destroy(&fs.cond);
	pthread_mutex_destroy(&fs.lock);
	return status;
}
