/* setup.c - what a mount and the subcommands that work on the archive
 * make from the config before anything else: its directories (private),
 * the thumbnail options and path rules, PostgreSQL's tables checked, the
 * store opened and checked, the cache; and all of it released. */
#include "fs/setup.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/conn.h"
#include "db/pg.h"
#include "fs/audit.h"
#include "fs/cache.h"
#include "fs/thumbfs.h"
#include "s3/s3.h"
#include "thumb/worker.h"

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
struct s3_config fs_store_config(const struct cfg *cfg)
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

struct s3_store *fs_open_store(const struct cfg *cfg)
{
	char err[512];
	if (cfg->insecure_skip_verify)
		fprintf(stderr, "thumbfs: %s\n", INSECURE_WARNING);
	struct s3_config sc = fs_store_config(cfg);
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

/* The config and what follows from it, checked: for a mount and for a
 * backfill. -1 when something is wrong (said on stderr); fs_release()
 * frees what was made either way. */
int fs_prepare(struct thumbfs *fs, const char *config)
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
	thumb_worker_setup("/proc/self/exe", fs->cfg.worker_memory,
			   fs->cfg.worker_cpu_s);
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

/* What a subcommand that works on the archive (backfill, verify) made,
 * released, and the catalog's lock (owner, -1: none) given back. */
void fs_setup_release(struct thumbfs *fs, int owner)
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
