/* config.c - the mount's INI file, read by inih into struct cfg. */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "size.h"
#include "template.h"

enum kind { K_STR, K_BOOL, K_INT, K_U64, K_SIZE };

struct key {
	const char *section;
	const char *name;
	enum kind kind;
	size_t offset;
	size_t size;   /* K_STR: the buffer's size */
	long long min; /* K_INT, K_U64 */
	long long max;
	bool required;
};

#define STR(sec, nm, field, req)                                               \
	{                                                                      \
		sec, nm, K_STR, offsetof(struct cfg, field),                   \
		    sizeof(((struct cfg *)0)->field), 0, 0, req                \
	}
#define NUM(sec, nm, kind, field, lo, hi)                                      \
	{                                                                      \
		sec, nm, kind, offsetof(struct cfg, field), 0, lo, hi, false   \
	}

static const struct key keys[] = {
    STR("store", "url", store_url, true),
    STR("store", "endpoint", endpoint, false),
    STR("store", "region", region, false),
    STR("store", "access_key_id", access_key_id, false),
    STR("store", "secret_access_key", secret_access_key, false),
    NUM("store", "path_style", K_BOOL, path_style, 0, 1),
    STR("store", "key_template", key_template, false),
    STR("store", "delete", delete_policy, false),
    STR("store", "sse", sse, false),
    STR("store", "sse_kms_key_id", sse_kms_key_id, false),
    STR("store", "ca_file", ca_file, false),
    NUM("store", "insecure_skip_verify", K_BOOL, insecure_skip_verify, 0, 1),
    NUM("store", "timeout_s", K_INT, timeout_s, 1, 3600),
    NUM("store", "multipart_threshold", K_SIZE, multipart_threshold, 5LL << 20,
	5LL << 30),
    NUM("store", "part_size", K_SIZE, part_size, 5LL << 20, 5LL << 30),
    STR("catalog", "dir", catalog_dir, true),
    STR("postgres", "dsn", pg_dsn, false),
    STR("postgres", "batch_name", batch_name, false),
    NUM("postgres", "changes_kept_days", K_INT, changes_kept_days, 1, 3650),
    NUM("postgres", "held_back_warn_s", K_INT, held_back_warn_s, 1, 86400),
    NUM("thumbnail", "max_width", K_INT, max_width, 1, 10000),
    NUM("thumbnail", "max_height", K_INT, max_height, 1, 10000),
    NUM("thumbnail", "jpeg_quality", K_INT, jpeg_quality, 1, 100),
    NUM("thumbnail", "max_pixels", K_U64, max_pixels, 1, 1000000000000LL),
    NUM("thumbnail", "max_bytes", K_SIZE, max_bytes, 1, 1LL << 50),
    NUM("thumbnail", "worker_memory", K_SIZE, worker_memory, 0, 1LL << 40),
    NUM("thumbnail", "worker_cpu_s", K_INT, worker_cpu_s, 1, 3600),
    STR("fs", "patient_id_pattern", patient_id_pattern, false),
    STR("fs", "uploaded_by", uploaded_by, false),
    NUM("fs", "workers", K_INT, workers, 1, 64),
    NUM("fs", "retry_max_s", K_INT, retry_max_s, 1, 86400),
    NUM("fs", "unmount_drain_s", K_INT, unmount_drain_s, 0, 86400),
    STR("fs", "ignore", ignore, false),
    NUM("fs", "allow_other", K_BOOL, allow_other, 0, 1),
    STR("fs", "uid", uid_name, false),
    STR("fs", "gid", gid_name, false),
    STR("fs", "umask", umask_text, false),
    NUM("cache", "max_bytes", K_SIZE, cache_max_bytes, 0, 1LL << 50),
    STR("audit", "file", audit_file, false),
    NUM("audit", "max_bytes", K_SIZE, audit_max_bytes, 4096, 1LL << 40),
    NUM("audit", "keep", K_INT, audit_keep, 0, 1000),
    STR("metrics", "listen", metrics_listen, false),
    STR("log", "file", log_file, false),
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

void cfg_init(struct cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->region, sizeof(cfg->region), "us-east-1");
	cfg->path_style = true;
	snprintf(cfg->key_template, sizeof(cfg->key_template),
		 "patients/filemaker-import/images/{patient}/{date}/{name}");
	snprintf(cfg->batch_name, sizeof(cfg->batch_name), "{patient} {date}");
	snprintf(cfg->delete_policy, sizeof(cfg->delete_policy), "delete");
	cfg->timeout_s = 30;
	cfg->multipart_threshold = 64ULL << 20;
	cfg->part_size = 16ULL << 20;
	cfg->max_width = 300;
	cfg->max_height = 300;
	cfg->jpeg_quality = 85;
	cfg->max_pixels = 100000000ULL;
	cfg->max_bytes = 256ULL << 20;
	cfg->worker_memory = 2ULL << 30;
	cfg->worker_cpu_s = 60;
	snprintf(cfg->patient_id_pattern, sizeof(cfg->patient_id_pattern),
		 "^[A-Za-z0-9_-]{1,64}$");
	snprintf(cfg->uploaded_by, sizeof(cfg->uploaded_by), "thumbfs");
	/* two per core: while one waits on the store, the other decodes */
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	cfg->workers = cores < 1 ? 2 : cores > 32 ? 64 : (int)cores * 2;
	cfg->retry_max_s = 300;
	cfg->changes_kept_days = 14;
	cfg->held_back_warn_s = 60;
	cfg->unmount_drain_s = 30;
	snprintf(cfg->ignore, sizeof(cfg->ignore),
		 ".DS_Store,Thumbs.db,desktop.ini,~$*");
	cfg->show_uid = -1;
	cfg->show_gid = -1;
	cfg->cache_max_bytes = 10ULL << 30;
	cfg->audit_max_bytes = 10ULL << 20;
	cfg->audit_keep = 10;
}

/* Sections, in the order a config file has them. */
static const char *const sections[] = {"store",	    "catalog", "postgres",
				       "thumbnail", "fs",      "cache",
				       "audit",	    "metrics", "log"};

#define N_SECTIONS (sizeof(sections) / sizeof(sections[0]))

/* One read of a file: every error it has is kept, each with its line. */
struct parse {
	struct cfg *cfg;
	const char *path;
	FILE *f;
	int line;	      /* the line inih is at */
	int section_line;     /* the line of the last section header */
	int key_line[N_KEYS]; /* where each key was set; 0: not set */
	char bad_section[64]; /* the last unknown section, said once */
	struct {
		int line; /* 0: of the whole file */
		char msg[600];
	} errors[32];
	int n_errors; /* errors found; more than kept are counted */
};

static void add_error(struct parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_error(struct parse *p, int line, const char *fmt, ...)
{
	va_list ap;
	int max = (int)(sizeof(p->errors) / sizeof(p->errors[0]));
	if (p->n_errors < max) {
		p->errors[p->n_errors].line = line;
		va_start(ap, fmt);
		vsnprintf(p->errors[p->n_errors].msg, sizeof(p->errors[0].msg),
			  fmt, ap);
		va_end(ap);
	}
	p->n_errors++;
}

static int by_line(const void *a, const void *b)
{
	int la = *(const int *)a, lb = *(const int *)b;
	la = la ? la : INT_MAX; /* the whole file's last */
	lb = lb ? lb : INT_MAX;
	return (la > lb) - (la < lb);
}

/* Every error, in the file's order, a line each, into err. */
static void report(struct parse *p, char *err, size_t errlen)
{
	int max = (int)(sizeof(p->errors) / sizeof(p->errors[0]));
	int n = p->n_errors < max ? p->n_errors : max;
	size_t used = 0;
	/* insertion sort: stable, so a line's errors keep their order */
	for (int i = 1; i < n; i++) {
		__typeof__(p->errors[0]) t = p->errors[i];
		int j = i;
		for (; j > 0 && by_line(&p->errors[j - 1].line, &t.line) > 0;
		     j--)
			p->errors[j] = p->errors[j - 1];
		p->errors[j] = t;
	}
	for (int i = 0; i < n && used + 1 < errlen; i++) {
		int w =
		    p->errors[i].line
			? snprintf(err + used, errlen - used, "%s%s:%d: %s",
				   i ? "\n" : "", p->path, p->errors[i].line,
				   p->errors[i].msg)
			: snprintf(err + used, errlen - used, "%s%s: %s",
				   i ? "\n" : "", p->path, p->errors[i].msg);
		if (w < 0)
			break;
		used +=
		    (size_t)w < errlen - used ? (size_t)w : errlen - used - 1;
	}
	if (p->n_errors > n && used + 1 < errlen)
		snprintf(err + used, errlen - used, "\n%s: and %d more",
			 p->path, p->n_errors - n);
}

/* Levenshtein distance of a and b, capped (for "did you mean"). */
static int distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int row[65];
	if (la > 64 || lb > 64)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		int diag = row[0];
		row[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int up = row[j];
			int sub = diag + (tolower((unsigned char)a[i - 1]) !=
					  tolower((unsigned char)b[j - 1]));
			int best =
			    up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
			row[j] = sub < best ? sub : best;
			diag = up;
		}
	}
	return row[lb];
}

/* A near miss: at most 2 edits, and fewer than half the word. */
static bool near(const char *typed, const char *known)
{
	int d = distance(typed, known);
	return d <= 2 && (size_t)d * 2 < strlen(known);
}

static const struct key *find_key(const char *section, const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (!strcmp(keys[i].section, section) &&
		    !strcmp(keys[i].name, name))
			return &keys[i];
	return NULL;
}

static void unknown_key(struct parse *p, const char *section, const char *name)
{
	const struct key *other = NULL, *close = NULL;
	for (size_t i = 0; i < N_KEYS; i++) {
		if (!strcmp(keys[i].name, name) && !other)
			other = &keys[i];
		if (!strcmp(keys[i].section, section) && !close &&
		    near(name, keys[i].name))
			close = &keys[i];
	}
	if (close)
		add_error(p, p->line,
			  "unknown key '%s' in [%s]; did you mean '%s'?", name,
			  section, close->name);
	else if (other)
		add_error(p, p->line,
			  "'%s' is not a key of [%s]; it belongs in [%s]", name,
			  section, other->section);
	else
		add_error(p, p->line, "unknown key '%s' in [%s]", name,
			  section);
}

static bool known_section(struct parse *p, const char *section)
{
	const char *close = NULL;
	for (size_t i = 0; i < N_SECTIONS; i++) {
		if (!strcmp(sections[i], section))
			return true;
		if (!close && near(section, sections[i]))
			close = sections[i];
	}
	if (strcmp(p->bad_section, section)) { /* once per section */
		snprintf(p->bad_section, sizeof(p->bad_section), "%s", section);
		if (close)
			add_error(p, p->section_line,
				  "unknown section [%s]; did you mean [%s]?",
				  section, close);
		else
			add_error(p, p->section_line,
				  "unknown section [%s] (the sections are "
				  "[store], [catalog], [postgres], "
				  "[thumbnail], [fs], [cache], [audit], "
				  "[metrics] and [log])",
				  section);
	}
	return false;
}

static void set_value(struct parse *p, const struct key *k, const char *value)
{
	char *base = (char *)p->cfg + k->offset;
	char *end = NULL;
	long long v = 0;
	switch (k->kind) {
	case K_STR:
		if (strlen(value) >= k->size) {
			add_error(p, p->line,
				  "value of '%s' in [%s] is longer than %zu "
				  "bytes",
				  k->name, k->section, k->size - 1);
			return;
		}
		memcpy(base, value, strlen(value) + 1);
		return;
	case K_BOOL:
		if (!strcasecmp(value, "true") || !strcasecmp(value, "yes") ||
		    !strcmp(value, "1")) {
			*(bool *)base = true;
			return;
		}
		if (!strcasecmp(value, "false") || !strcasecmp(value, "no") ||
		    !strcmp(value, "0")) {
			*(bool *)base = false;
			return;
		}
		add_error(p, p->line,
			  "'%s' in [%s] must be true or false, not '%s'",
			  k->name, k->section, value);
		return;
	case K_SIZE: {
		char lo[32], hi[32];
		if (cfg_parse_size(value, &v) || v < k->min || v > k->max) {
			cfg_show_size(k->min, lo, sizeof(lo));
			cfg_show_size(k->max, hi, sizeof(hi));
			add_error(p, p->line,
				  "'%s' in [%s] must be a size from %s to %s "
				  "(bytes, or with K, M, G or T), not '%s'",
				  k->name, k->section, lo, hi, value);
			return;
		}
		*(uint64_t *)base = (uint64_t)v;
		return;
	}
	case K_INT:
	case K_U64:
		errno = 0;
		v = strtoll(value, &end, 10);
		if (errno || end == value || *end || v < k->min || v > k->max) {
			add_error(p, p->line,
				  "'%s' in [%s] must be a whole number from "
				  "%lld to %lld, not '%s'",
				  k->name, k->section, k->min, k->max, value);
			return;
		}
		if (k->kind == K_INT)
			*(int *)base = (int)v;
		else
			*(uint64_t *)base = (uint64_t)v;
		return;
	}
}

static int on_key(void *user, const char *section, const char *name,
		  const char *value)
{
	struct parse *p = user;
	if (!known_section(p, section))
		return 1;
	const struct key *k = find_key(section, name);
	if (!k) {
		unknown_key(p, section, name);
		return 1;
	}
	p->key_line[k - keys] = p->line;
	set_value(p, k, value);
	return 1; /* errors are kept here; inih reads on */
}

/* inih's reader: one line, counted; a line inih would refuse is reported
 * here (so that every one is) and handed on blank. */
static char *read_line(char *buf, int size, void *user)
{
	struct parse *p = user;
	if (!fgets(buf, size, p->f))
		return NULL;
	p->line++;
	size_t len = strlen(buf);
	if (len && buf[len - 1] != '\n' && !feof(p->f)) {
		int c;
		while ((c = fgetc(p->f)) != EOF && c != '\n')
			;
		add_error(p, p->line, "line is longer than %d bytes", size - 2);
		strcpy(buf, "\n");
		return buf;
	}
	const char *t = buf;
	if (p->line == 1 && !strncmp(t, "\xef\xbb\xbf", 3))
		t += 3; /* a byte-order mark */
	bool indented = isspace((unsigned char)*t);
	while (isspace((unsigned char)*t))
		t++;
	if (!*t || *t == ';' || *t == '#' || indented)
		return buf; /* blank, a comment, or a value going on */
	if (*t == '[') {
		const char *close = strchr(t, ']');
		if (close) {
			p->section_line = p->line;
			return buf;
		}
		add_error(p, p->line, "a section header needs its ']'");
	} else if (!strpbrk(t, "=:")) {
		add_error(p, p->line, "not an INI line (want key = value)");
	} else {
		return buf;
	}
	strcpy(buf, "\n");
	return buf;
}

static int key_index(const char *section, const char *name)
{
	const struct key *k = find_key(section, name);
	return k ? (int)(k - keys) : 0;
}

/* The line of a key in this file, 0 if it was not set (a default). */
static int line_of(const struct parse *p, const char *section, const char *name)
{
	return p->key_line[key_index(section, name)];
}

/* A user or group by name or number into *id; -1 if there is none. */
static int owner_id(const char *text, bool group, long long *id)
{
	char buf[4096], *end = NULL;
	if (!text[0])
		return 0;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (!errno && end != text && !*end && v >= 0 && v < 4294967295LL) {
		*id = v;
		return 0;
	}
	if (group) {
		struct group gr, *res = NULL;
		if (getgrnam_r(text, &gr, buf, sizeof(buf), &res) || !res)
			return -1;
		*id = res->gr_gid;
	} else {
		struct passwd pw, *res = NULL;
		if (getpwnam_r(text, &pw, buf, sizeof(buf), &res) || !res)
			return -1;
		*id = res->pw_uid;
	}
	return 0;
}

/* [fs] uid, gid and umask into the numbers the mount shows. */
static void check_owner(struct parse *p)
{
	struct cfg *cfg = p->cfg;
	char *end = NULL;
	if (owner_id(cfg->uid_name, false, &cfg->show_uid))
		add_error(p, line_of(p, "fs", "uid"),
			  "'uid' in [fs] must be a user name or number; "
			  "there is no user '%s'",
			  cfg->uid_name);
	if (owner_id(cfg->gid_name, true, &cfg->show_gid))
		add_error(p, line_of(p, "fs", "gid"),
			  "'gid' in [fs] must be a group name or number; "
			  "there is no group '%s'",
			  cfg->gid_name);
	if (!cfg->umask_text[0])
		return;
	unsigned long m = strtoul(cfg->umask_text, &end, 8);
	if (*end || end == cfg->umask_text || cfg->umask_text[0] == '-' ||
	    m > 0777) {
		add_error(p, line_of(p, "fs", "umask"),
			  "'umask' in [fs] must be octal from 000 to 777, "
			  "not '%s'",
			  cfg->umask_text);
		return;
	}
	cfg->show_umask = (unsigned)m;
}

/* The values that each key's own type cannot check. */
static void check(struct parse *p)
{
	struct cfg *cfg = p->cfg;
	const char *why;
	regex_t re;
	if (line_of(p, "store", "url") &&
	    strncmp(cfg->store_url, "file:///", 8) &&
	    strncmp(cfg->store_url, "s3://", 5))
		add_error(p, line_of(p, "store", "url"),
			  "'url' in [store] must be file:///DIR or "
			  "s3://BUCKET, not '%s'",
			  cfg->store_url);
	if (line_of(p, "catalog", "dir") && cfg->catalog_dir[0] != '/')
		add_error(p, line_of(p, "catalog", "dir"),
			  "'dir' in [catalog] must be an absolute path, not "
			  "'%s'",
			  cfg->catalog_dir);
	if (strcmp(cfg->delete_policy, "delete") &&
	    strcmp(cfg->delete_policy, "keep"))
		add_error(p, line_of(p, "store", "delete"),
			  "'delete' in [store] must be delete or keep, not "
			  "'%s'",
			  cfg->delete_policy);
	if (cfg->sse[0] && strcmp(cfg->sse, "AES256") &&
	    strcmp(cfg->sse, "aws:kms"))
		add_error(p, line_of(p, "store", "sse"),
			  "'sse' in [store] must be AES256 or aws:kms, not "
			  "'%s'",
			  cfg->sse);
	if (cfg->audit_file[0] && cfg->audit_file[0] != '/')
		add_error(p, line_of(p, "audit", "file"),
			  "'file' in [audit] must be an absolute path, not "
			  "'%s'",
			  cfg->audit_file);
	if (cfg->log_file[0] && cfg->log_file[0] != '/')
		add_error(p, line_of(p, "log", "file"),
			  "'file' in [log] must be an absolute path, not '%s'",
			  cfg->log_file);
	if ((why = cfg_template_error(cfg->key_template)))
		add_error(p, line_of(p, "store", "key_template"),
			  "'key_template' in [store] %s", why);
	if (regcomp(&re, cfg->patient_id_pattern, REG_EXTENDED | REG_NOSUB))
		add_error(p, line_of(p, "fs", "patient_id_pattern"),
			  "'patient_id_pattern' in [fs] is not a valid "
			  "extended regular expression: '%s'",
			  cfg->patient_id_pattern);
	else
		regfree(&re);
	if (cfg->part_size > cfg->multipart_threshold)
		add_error(p, line_of(p, "store", "part_size"),
			  "'part_size' in [store] (%llu) must not be over "
			  "'multipart_threshold' (%llu)",
			  (unsigned long long)cfg->part_size,
			  (unsigned long long)cfg->multipart_threshold);
	check_owner(p);
}

int cfg_load(struct cfg *cfg, const char *path, char *err, size_t errlen)
{
	struct parse p = {.cfg = cfg, .path = path};
	if (errlen)
		err[0] = '\0';
	p.f = fopen(path, "r");
	if (!p.f) {
		int e = errno;
		snprintf(err, errlen, "cannot read config '%s': %s", path,
			 strerror(e));
		return -e;
	}
	int ret = ini_parse_stream(read_line, &p, on_key, &p);
	fclose(p.f);
	if (ret > 0 && !p.n_errors) /* what read_line let through */
		add_error(&p, ret, "not an INI line");
	else if (ret < 0)
		add_error(&p, 0, "out of memory reading the file");
	for (size_t i = 0; i < N_KEYS; i++)
		if (keys[i].required && !p.key_line[i])
			add_error(&p, 0, "missing required key '%s' in [%s]",
				  keys[i].name, keys[i].section);
	check(&p);
	if (!p.n_errors)
		return 0;
	report(&p, err, errlen);
	return -EINVAL;
}

void cfg_changes(const struct cfg *old, const struct cfg *now,
		 void (*fn)(const char *section, const char *name, void *arg),
		 void *arg)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key *k = &keys[i];
		const char *a = (const char *)old + k->offset,
			   *b = (const char *)now + k->offset;
		bool same;
		switch (k->kind) {
		case K_STR:
			same = !strcmp(a, b);
			break;
		case K_BOOL:
			same = *(const bool *)a == *(const bool *)b;
			break;
		case K_INT:
			same = *(const int *)a == *(const int *)b;
			break;
		default:
			same = *(const uint64_t *)a == *(const uint64_t *)b;
			break;
		}
		if (!same)
			fn(k->section, k->name, arg);
	}
}
