/* commands.c - the subcommands: schema, presign, backfill, retry, check and
 * verify, each with its own arguments, checked before it runs. */
#include "fs/commands.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db/conn.h"
#include "db/pg.h"
#include "db/queue.h"
#include "fs/audit.h"
#include "fs/backfill.h"
#include "fs/check.h"
#include "fs/owner.h"
#include "fs/path.h"
#include "fs/setup.h"
#include "fs/thumbfs.h"
#include "fs/verify.h"
#include "s3/s3.h"

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
	struct s3_config sc = fs_store_config(&cfg);
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
	if (fs_prepare(&fs, config) || !(fs.store = fs_open_store(&fs.cfg)))
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
	fs_setup_release(&fs, owner);
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
static int verify_command(int argc, char **argv)
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
	if (fs_prepare(&fs, config) || !(fs.store = fs_open_store(&fs.cfg)))
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
	fs_setup_release(&fs, owner);
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
    {"check", 1, 7, " CONFIG [--queue-age W,C] [--failed W,C] [--sync-lag W,C]",
     "The running mount's state in one line, exit 0 OK, 1 WARNING, 2\n"
     "CRITICAL, 3 UNKNOWN (the monitoring-plugins conventions). WARNING "
     "and\nCRITICAL at W and C: the oldest waiting job's age (seconds, "
     "3600,14400),\nimages failed for good (1,50), the sync from "
     "PostgreSQL held back (seconds,\n300,1800). CRITICAL too when no "
     "mount runs on CONFIG, the store refuses\nor PostgreSQL is away."},
};

static const struct subcommand *find_subcommand(const char *name)
{
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(*subcommands); i++)
		if (!strcmp(name, subcommands[i].name))
			return &subcommands[i];
	return NULL;
}

int fs_command(int argc, char **argv)
{
	const struct subcommand *sub =
	    argc > 1 ? find_subcommand(argv[1]) : NULL;
	if (!sub)
		return -1;
	int n = argc - 2; /* its own arguments */
	if (n == 1 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
		printf("usage: %s %s%s\n%s\n", argv[0], sub->name, sub->args,
		       sub->help);
		return 0;
	}
	if (n < sub->min || n > sub->max) {
		fprintf(stderr, "thumbfs %s: %s\nusage: %s %s%s\n", sub->name,
			n < sub->min ? "missing arguments"
				     : "too many arguments",
			argv[0], sub->name, sub->args);
		return strcmp(sub->name, "check") ? 2 : 3; /* UNKNOWN */
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
		return verify_command(n, argv + 2);
	if (!strcmp(sub->name, "check"))
		return fs_check_command(n, argv + 2);
	return presign(argv[2], argv[3], n == 3 ? argv[4] : "3600");
}
