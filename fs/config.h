/*
 * config.h - the mount's INI file (parsed by inih), checked whole before
 * anything is mounted.
 */
#ifndef FS_CONFIG_H
#define FS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CFG_STR 1024

struct cfg {
	/* [store] */
	char store_url[CFG_STR];
	char endpoint[CFG_STR];
	char region[64];
	char access_key_id[256];
	char secret_access_key[256];
	bool path_style;
	char key_template[CFG_STR];
	char delete_policy[16]; /* "delete" or "keep" (the objects) */
	char sse[16];		/* "", "AES256" or "aws:kms" */
	char sse_kms_key_id[256];
	char ca_file[CFG_STR];
	bool insecure_skip_verify;
	int timeout_s;
	uint64_t multipart_threshold;
	uint64_t part_size;
	/* [catalog] */
	char catalog_dir[CFG_STR];
	/* [postgres] */
	char pg_dsn[CFG_STR];
	char batch_name[256];
	int changes_kept_days; /* PostgreSQL's record of changes is pruned */
	int held_back_warn_s;  /* the sync bound held back this long: said */
	/* [thumbnail] */
	int max_width;
	int max_height;
	int jpeg_quality;
	uint64_t max_pixels;
	uint64_t max_bytes;
	uint64_t worker_memory; /* a thumbnail worker's bound, 0: none */
	int worker_cpu_s;	/* its CPU seconds per file */
	/* [fs] */
	char patient_id_pattern[256];
	char uploaded_by[256];
	int workers;
	int retry_max_s;     /* the cap of the backoff between tries of a job */
	int unmount_drain_s; /* work on after the unmount, at most this */
	char ignore[CFG_STR]; /* comma-separated globs */
	bool allow_other;     /* users other than the mounter may enter */
	char uid_name[64];    /* as written: a user name or number, or "" */
	char gid_name[64];
	char umask_text[16];
	/* resolved by cfg_load: what the mount shows (-1: the file's own) */
	long long show_uid;
	long long show_gid;
	unsigned show_umask; /* permission bits taken from every mode shown */
	/* [cache] */
	uint64_t cache_max_bytes; /* 0: no bound */
	/* [audit] */
	char audit_file[CFG_STR]; /* "": no audit log */
	uint64_t audit_max_bytes;
	int audit_keep;
	/* [metrics] */
	char metrics_listen[256]; /* "": no metrics served; else HOST:PORT */

	/* [log] */
	char log_file[CFG_STR]; /* "": syslog when daemonised, else stderr */
};

/* The most an error report of cfg_load can say (every error, a line
 * each); callers give err at least this many bytes. */
#define CFG_ERR_MAX 4096

/* Fill cfg with the defaults mount.conf.example documents. */
void cfg_init(struct cfg *cfg);

/* Read path into cfg. On bad or missing keys, unknown sections, bad
 * values or lines, returns -EINVAL and writes every one of them into err,
 * a line each: "PATH:LINE: what is wrong with which key" (with "did you
 * mean" for a near miss); -errno if the file cannot be read. Sizes take
 * K, M, G or T (powers of 1024). */
int cfg_load(struct cfg *cfg, const char *path, char *err, size_t errlen);

/* fn(section, name, arg) for every key whose value differs between old
 * and now, in the file's order. */
void cfg_changes(const struct cfg *old, const struct cfg *now,
		 void (*fn)(const char *section, const char *name, void *arg),
		 void *arg);

#endif
