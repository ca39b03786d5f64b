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
#include "fs/backfill.h"
#include "fs/cache.h"
#include "fs/jobs.h"
#include "fs/handle.h"
#include "fs/log.h"
#include "fs/owner.h"
#include "fs/reload.h"
#include "fs/verify.h"
#include "fs/ops.h"
#include "fs/reconcile.h"
#include "fs/thumbfs.h"
#include "s3/s3.h"

#ifndef THUMBFS_VERSION
#define THUMBFS_VERSION "0"
#endif

struct args {
	char *config;
	char *log_file; /* -o log=FILE: over [log] file */
	int show_help;
	int show_version;
};

static const struct fuse_opt spec[] = {
    {"log=%s", offsetof(struct args, log_file), 0},
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
	       "    -o opt[,opt]   FUSE mount options (allow_other, ...)\n"
	       "    -h, --help     this text\n"
	       "    -V, --version  the version\n",
	       prog, prog, prog, prog, prog);
}

/* A directory for thumbfs alone: created 0700 if missing. */
static int make_dir(const char *path)
{
	if (mkdir(path, 0700) && errno != EEXIST) {
		fprintf(stderr, "thumbfs: cannot create '%s': %s\n", path,
			strerror(errno));
		return -1;
	}
	return 0;
}

static int prepare_dirs(struct thumbfs *fs)
{
	const char *dir = fs->cfg.catalog_dir;
	char p[PATH_MAX];
	if (snprintf(fs->spool, sizeof(fs->spool), "%s/spool", dir) >=
		(int)sizeof(fs->spool) ||
	    snprintf(fs->thumbs, sizeof(fs->thumbs), "%s/thumbs", dir) >=
		(int)sizeof(fs->thumbs) ||
	    snprintf(fs->tmp, sizeof(fs->tmp), "%s/tmp", dir) >=
		(int)sizeof(fs->tmp)) {
		fprintf(stderr, "thumbfs: [catalog] dir is too long\n");
		return -1;
	}
	snprintf(p, sizeof(p), "%s/patients", fs->spool);
	if (make_dir(dir) || make_dir(fs->spool) || make_dir(p) ||
	    make_dir(fs->thumbs) || make_dir(fs->tmp))
		return -1;
	/* patient data: the data directory and what holds it stay private */
	const char *const private[] = {dir, fs->spool, fs->thumbs, fs->tmp};
	for (size_t i = 0; i < sizeof(private) / sizeof(private[0]); i++) {
		struct stat st;
		if (stat(private[i], &st)) {
			fprintf(stderr, "thumbfs: cannot stat '%s': %s\n",
				private[i], strerror(errno));
			return -1;
		}
		if (st.st_mode & 077) {
			fprintf(stderr,
				"thumbfs: '%s' is open to group or others "
				"(mode %03o); patient data must be private: "
				"chmod 700 it\n",
				private[i], st.st_mode & 0777);
			return -1;
		}
	}
	return 0;
}

/* The store's settings from [store]; the strings stay cfg's. */
static struct s3_config store_config(const struct cfg *cfg)
{
	struct s3_config sc = {
	    .url = cfg->store_url,
	    .endpoint = cfg->endpoint,
	    .region = cfg->region,
	    .access_key_id = cfg->access_key_id,
	    .secret_access_key = cfg->secret_access_key,
	    .path_style = cfg->path_style,
	    .sse = cfg->sse,
	    .sse_kms_key_id = cfg->sse_kms_key_id,
	    .ca_file = cfg->ca_file,
	    .insecure_skip_verify = cfg->insecure_skip_verify,
	    .timeout_s = cfg->timeout_s,
	    .multipart_threshold = cfg->multipart_threshold,
	    .part_size = cfg->part_size,
	};
	return sc;
}

#define INSECURE_WARNING                                                       \
	"warning: [store] insecure_skip_verify = true: the store's TLS "       \
	"certificate and host name are NOT checked"

static struct s3_store *open_store(const struct cfg *cfg)
{
	char err[512];
	if (cfg->insecure_skip_verify)
		fprintf(stderr, "thumbfs: %s\n", INSECURE_WARNING);
	struct s3_config sc = store_config(cfg);
	struct s3_store *st = s3_open(&sc, err, sizeof(err));
	if (!st) {
		fprintf(stderr, "thumbfs: %s\n", err);
		return NULL;
	}
	int ret = s3_check(st, err, sizeof(err));
	if (ret == -EAGAIN) {
		fprintf(stderr,
			"thumbfs: warning: store not reachable now (%s); "
			"uploads wait for it\n",
			err);
	} else if (ret) {
		fprintf(stderr, "thumbfs: store check failed: %s\n", err);
		s3_free(st);
		return NULL;
	}
	return st;
}

/* With a dsn: the tables must have every column the sync writes. A server
 * that is away now only delays the sync; anything else stops the mount. */
static int check_postgres(const struct cfg *cfg)
{
	char err[1024];
	if (!cfg->pg_dsn[0])
		return 0;
	struct db_pg *pg = db_pg_new(cfg->pg_dsn);
	if (!pg) {
		fprintf(stderr, "thumbfs: out of memory\n");
		return -1;
	}
	int ret = db_pg_check_schema(pg, err, sizeof(err));
	db_pg_free(pg); /* a connection must not cross fork() either */
	if (ret == -EAGAIN) {
		fprintf(stderr,
			"thumbfs: warning: PostgreSQL not reachable now (%s); "
			"rows wait for it\n",
			err);
		return 0;
	}
	if (ret)
		fprintf(stderr, "thumbfs: PostgreSQL check failed: %s\n", err);
	return ret ? -1 : 0;
}

/* thumbfs presign CONFIG KEY [SECONDS]: a link to one object, as the web
 * app gives browsers. */
static int presign(const char *config, const char *key, const char *secs)
{
	struct cfg cfg;
	char err[CFG_ERR_MAX], *end = NULL;
	long expires = strtol(secs, &end, 10);
	if (!*secs || *end || expires < 1 || expires > 604800) {
		fprintf(stderr, "thumbfs: SECONDS must be 1 to 604800\n");
		return 2;
	}
	cfg_init(&cfg);
	if (cfg_load(&cfg, config, err, sizeof(err))) {
		fprintf(stderr, "thumbfs: %s\n", err);
		return 1;
	}
	struct s3_config sc = store_config(&cfg);
	struct s3_store *st = s3_open(&sc, err, sizeof(err));
	if (!st) {
		fprintf(stderr, "thumbfs: %s\n", err);
		return 1;
	}
	char *url = s3_presign_url(st, key, (int)expires, time(NULL));
	if (url)
		puts(url);
	else
		fprintf(stderr, "thumbfs: refused key '%s'\n", key);
	free(url);
	s3_free(st);
	return url ? 0 : 1;
}

/* The config and what follows from it, checked: for a mount and for a
 * backfill. -1 when something is wrong (said on stderr); fs_release()
 * frees what was made either way. */
static int prepare(struct thumbfs *fs, const char *config)
{
	char err[CFG_ERR_MAX];
	cfg_init(&fs->cfg);
	if (cfg_load(&fs->cfg, config, err, sizeof(err))) {
		fprintf(stderr, "thumbfs: %s\n", err);
		return -1;
	}
	/* absolute: SIGHUP re-reads it after the daemon left its directory */
	fs->config_path = realpath(config, NULL);
	thumb_opts_init(&fs->thumb);
	fs->thumb.max_width = fs->cfg.max_width;
	fs->thumb.max_height = fs->cfg.max_height;
	fs->thumb.jpeg_quality = fs->cfg.jpeg_quality;
	fs->thumb.max_pixels = fs->cfg.max_pixels;
	fs->thumb.max_bytes = fs->cfg.max_bytes;
	if (fs_rules_init(&fs->rules, fs->cfg.patient_id_pattern,
			  fs->cfg.ignore)) {
		fprintf(stderr, "thumbfs: bad patient_id_pattern\n");
		return -1;
	}
	fs->rules_ready = true;
	if (prepare_dirs(fs) || check_postgres(&fs->cfg))
		return -1;
	fs->cache = fs_cache_new(fs->cfg.cache_max_bytes);
	if (!fs->cache) {
		fprintf(stderr, "thumbfs: out of memory\n");
		return -1;
	}
	return 0;
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

/* What a subcommand that works on the archive (backfill, verify) made,
 * released, and the catalog's lock (owner, -1: none) given back. */
static void release_command(struct thumbfs *fs, int owner)
{
	if (owner >= 0)
		close(owner);
	audit_close(fs->audit);
	db_pg_free(fs->pg);
	db_free(fs->db);
	s3_free(fs->store);
	fs_cache_free(fs->cache);
	if (fs->rules_ready)
		fs_rules_release(&fs->rules);
	free((char *)fs->config_path);
	pthread_cond_destroy(&fs->cond);
	pthread_mutex_destroy(&fs->lock);
}

/* thumbfs backfill CONFIG: thumbnails for every stored row that has none,
 * in the catalog and in PostgreSQL (fs_backfill). */
static int backfill_command(const char *config)
{
	struct thumbfs fs;
	char err[1024];
	int status = 1;
	memset(&fs, 0, sizeof(fs));
	pthread_mutex_init(&fs.lock, NULL);
	pthread_cond_init(&fs.cond, NULL);
	char holder[512];
	int owner = -1;
	if (prepare(&fs, config) || !(fs.store = open_store(&fs.cfg)))
		goto out;
	/* Beside a mount, the mount owns the catalog and its runners do
	 * the work: this process queues it and follows it. */
	owner = fs_owner_take(fs.cfg.catalog_dir, false, NULL, holder,
			      sizeof(holder), err, sizeof(err));
	bool beside = owner == -EBUSY && !strncmp(holder, "mounted ", 8);
	if (owner < 0 && !beside) {
		fprintf(stderr, "thumbfs: %s\n", err);
		goto out;
	}
	if (owner >= 0)
		fs_owner_say(owner, "backfill");
	fs.db = beside ? db_open_beside(fs.cfg.catalog_dir, err, sizeof(err))
		       : db_open(fs.cfg.catalog_dir, err, sizeof(err));
	if (!fs.db) {
		fprintf(stderr, "thumbfs: %s\n", err);
		goto out;
	}
	if (beside)
		printf("backfill: the catalog is %s; its runners make the "
		       "thumbnails\n",
		       holder);
	db_set_keep_objects(fs.db, !strcmp(fs.cfg.delete_policy, "keep"));
	if (fs.cfg.pg_dsn[0] && !beside) {
		if (!(fs.pg = db_pg_new(fs.cfg.pg_dsn)))
			goto out;
		db_set_pg_sync(fs.db, true);
	}
	status = fs_backfill(&fs, beside);
out:
	release_command(&fs, owner);
	return status;
}

/* thumbfs retry CONFIG [PATH]: jobs that failed for good (parked) go
 * again, all or those under PATH (patients/ID[/DATE[/NAME]], on the mount
 * or not); a running mount takes them up within a second. */
static int retry_command(const char *config, const char *path)
{
	struct cfg cfg;
	struct db *db;
	char err[CFG_ERR_MAX];
	struct fs_scope sc = {0};
	cfg_init(&cfg);
	if (cfg_load(&cfg, config, err, sizeof(err))) {
		fprintf(stderr, "thumbfs: %s\n", err);
		return 1;
	}
	if (path && fs_scope_parse(path, &sc, err, sizeof(err))) {
		fprintf(stderr, "thumbfs: retry: %s\n", err);
		return 2;
	}
	if (!(db = db_open_beside(cfg.catalog_dir, err, sizeof(err)))) {
		fprintf(stderr, "thumbfs: %s\n", err);
		return 1;
	}
	int n = db_jobs_unpark(db, path ? sc.patient : NULL, sc.date, sc.name);
	db_free(db);
	if (n < 0) {
		fprintf(stderr, "thumbfs: retry: the catalog: %s\n",
			strerror(-n));
		return 1;
	}
	printf("%d job(s) that had failed for good will be tried again\n", n);
	return 0;
}

/* thumbfs verify CONFIG [PATH] [--content] [--json] (fs_verify): read
 * only, mounted or not. */
static int verify(int argc, char **argv)
{
	struct thumbfs fs;
	struct verify_opts o = {0};
	const char *config = NULL, *path = NULL;
	char err[1024];
	struct fs_scope sc = {0};
	int status = 2, owner = -1;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--content"))
			o.content = true;
		else if (!strcmp(argv[i], "--json"))
			o.json = true;
		else if (!strcmp(argv[i], "--repair"))
			o.repair = true;
		else if (!strcmp(argv[i], "--delete-orphans"))
			o.delete_orphans = true;
		else if (argv[i][0] == '-') {
			fprintf(stderr, "thumbfs verify: unknown option '%s'\n",
				argv[i]);
			return 2;
		} else if (!config)
			config = argv[i];
		else if (!path)
			path = argv[i];
		else {
			fprintf(stderr, "thumbfs verify: too many arguments\n");
			return 2;
		}
	}
	if (!config) {
		fprintf(stderr, "thumbfs verify: missing arguments\nusage: "
				"thumbfs verify CONFIG [PATH] [--content] "
				"[--json] [--repair [--delete-orphans]]\n");
		return 2;
	}
	if (o.delete_orphans && !o.repair) {
		fprintf(stderr, "thumbfs verify: --delete-orphans goes with "
				"--repair\n");
		return 2;
	}
	if (path && fs_scope_parse(path, &sc, err, sizeof(err))) {
		fprintf(stderr, "thumbfs verify: %s\n", err);
		return 2;
	}
	o.patient = sc.parts >= 1 ? sc.patient : NULL;
	o.date = sc.parts >= 2 ? sc.date : NULL;
	o.name = sc.parts >= 3 ? sc.name : NULL;
	memset(&fs, 0, sizeof(fs));
	pthread_mutex_init(&fs.lock, NULL);
	pthread_cond_init(&fs.cond, NULL);
	if (prepare(&fs, config) || !(fs.store = open_store(&fs.cfg)))
		goto out;
	/* Beside a mount or not. Reading changes nothing; a repair takes
	 * the catalog when no mount has it, else hands its jobs to it. */
	char holder[512];
	if (o.repair) {
		owner = fs_owner_take(fs.cfg.catalog_dir, false, NULL, holder,
				      sizeof(holder), err, sizeof(err));
		o.beside = owner == -EBUSY && !strncmp(holder, "mounted ", 8);
		if (owner < 0 && !o.beside) {
			fprintf(stderr, "thumbfs: %s\n", err);
			goto out;
		}
		if (owner >= 0)
			fs_owner_say(owner, "verify --repair");
	}
	fs.db = o.repair && !o.beside
		    ? db_open(fs.cfg.catalog_dir, err, sizeof(err))
		    : db_open_beside(fs.cfg.catalog_dir, err, sizeof(err));
	if (!fs.db) {
		fprintf(stderr, "thumbfs: %s\n", err);
		goto out;
	}
	db_set_keep_objects(fs.db, !strcmp(fs.cfg.delete_policy, "keep"));
	if (fs.cfg.pg_dsn[0]) {
		if (!(fs.pg = db_pg_new(fs.cfg.pg_dsn)))
			goto out;
		db_set_pg_sync(fs.db, true);
	}
	if (o.repair && fs.cfg.audit_file[0] &&
	    !(fs.audit = audit_open(fs.cfg.audit_file, fs.cfg.audit_max_bytes,
				    fs.cfg.audit_keep, err, sizeof(err)))) {
		fprintf(stderr, "thumbfs: %s\n", err);
		goto out;
	}
	status = fs_verify(&fs, &o);
out:
	release_command(&fs, owner);
	return status;
}

/* The subcommands, each with its own arguments (the mount takes CONFIG
 * MOUNTPOINT and FUSE's options instead). */
struct subcommand {
	const char *name;
	int min, max; /* how many arguments */
	const char *args, *help;
};

static const struct subcommand subcommands[] = {
    {"schema", 0, 0, "", "Print the PostgreSQL DDL (schema/postgres.sql)."},
    {"presign", 2, 3, " CONFIG KEY [SECONDS]",
     "Print a presigned GET link to one object (default 3600 s)."},
    {"backfill", 1, 1, " CONFIG",
     "Make the missing thumbnails of the rows the store has."},
    {"retry", 1, 2, " CONFIG [PATH]",
     "Try again what the store refused for good (all, or under PATH)."},
    {"verify", 1, 6,
     " CONFIG [PATH] [--content] [--json] [--repair [--delete-orphans]]",
     "Check that every row has its objects, thumbnail, width and height, "
     "and\nthat no object is left unnamed; exit 0 only when clean. "
     "--repair fixes\nwhat it safely can; --delete-orphans deletes "
     "unnamed objects."},
};

static const struct subcommand *find_subcommand(const char *name)
{
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(*subcommands); i++)
		if (!strcmp(name, subcommands[i].name))
			return &subcommands[i];
	return NULL;
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

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts opts = {0};
	struct args a = {0};
	struct thumbfs fs;
	struct fuse *fuse = NULL;
	struct fuse_loop_config *loop = NULL;
	char err[1024];
	int status = 1, owner = -1;
	bool mounted = false;

	const struct subcommand *sub =
	    argc > 1 ? find_subcommand(argv[1]) : NULL;
	if (sub) {
		int n = argc - 2; /* its own arguments */
		if (n == 1 &&
		    (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
			printf("usage: %s %s%s\n%s\n", argv[0], sub->name,
			       sub->args, sub->help);
			return 0;
		}
		if (n < sub->min || n > sub->max) {
			fprintf(stderr, "thumbfs %s: %s\nusage: %s %s%s\n",
				sub->name,
				n < sub->min ? "missing arguments"
					     : "too many arguments",
				argv[0], sub->name, sub->args);
			return 2;
		}
		if (!strcmp(sub->name, "schema")) {
			fputs(db_pg_schema, stdout); /* | psql DSN */
			return 0;
		}
		if (!strcmp(sub->name, "backfill"))
			return backfill_command(argv[2]);
		if (!strcmp(sub->name, "retry"))
			return retry_command(argv[2], n == 2 ? argv[3] : NULL);
		if (!strcmp(sub->name, "verify"))
			return verify(n, argv + 2);
		return presign(argv[2], argv[3], n == 3 ? argv[4] : "3600");
	}
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
	if (prepare(&fs, a.config))
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
	fs.store = open_store(&fs.cfg);
	if (!fs.store)
		goto out_rules;
	if (fs.cfg.audit_file[0] &&
	    !(fs.audit = audit_open(fs.cfg.audit_file, fs.cfg.audit_max_bytes,
				    fs.cfg.audit_keep, err, sizeof(err)))) {
		fprintf(stderr, "thumbfs: %s\n", err);
		goto out_store;
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
	fuse = fuse_new(&args, fs_audited(fs_operations()),
			sizeof(struct fuse_operations), &fs);
	if (!fuse)
		goto out_store;
	if (fuse_mount(fuse, opts.mountpoint))
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
	if (fuse_set_signal_handlers(fuse_get_session(fuse))) {
		pthread_sigmask(SIG_UNBLOCK, &blocked, NULL);
		goto out_db;
	}
	if (early_stop)
		fuse_session_exit(fuse_get_session(fuse));
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
	log_info("mounted %s on %s (store %s)", a.config, opts.mountpoint,
		 s3_bucket(fs.store));
	if (fs.cfg.insecure_skip_verify)
		log_warn("%s", INSECURE_WARNING);
	int ret;
	if (opts.singlethread) {
		ret = fuse_loop(fuse);
	} else {
		loop = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(loop, opts.clone_fd);
		fuse_loop_cfg_set_max_threads(loop, opts.max_threads);
		fuse_loop_cfg_set_idle_threads(loop, opts.max_threads);
		ret = fuse_loop_mt(fuse, loop);
		fuse_loop_cfg_destroy(loop);
	}
	/* Ctrl-C and SIGTERM are how a mount is stopped: not a failure */
	status = ret == 0 || ret == SIGINT || ret == SIGTERM ? 0 : 1;
	/* The mount point is given back at once; what is still queued is
	 * worked on here, in the background, and a second Ctrl-C or
	 * SIGTERM leaves it for the next mount. */
	stop_signals(&blocked, on_stop);
	fuse_remove_signal_handlers(fuse_get_session(fuse)); /* (ours stay) */
	pthread_sigmask(SIG_UNBLOCK, &blocked, NULL);
	fuse_unmount(fuse);
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
	fuse_remove_signal_handlers(fuse_get_session(fuse));
out_db:
	db_pg_free(fs.pg);
	db_free(fs.db);
out_unmount:
	if (mounted)
		fuse_unmount(fuse);
out_destroy:
	fuse_destroy(fuse);
out_store:
	audit_close(fs.audit);
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
	if (owner >= 0)
		close(owner);
	fuse_opt_free_args(&args);
	pthread_cond_destroy(&fs.cond);
	pthread_mutex_destroy(&fs.lock);
	return status;
}
