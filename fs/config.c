/* config.c - the mount's INI file, read by inih into struct cfg. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <regex.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"

enum kind { K_STR, K_BOOL, K_INT, K_U64 };

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
    NUM("store", "multipart_threshold", K_U64, multipart_threshold, 5LL << 20,
	5LL << 30),
    NUM("store", "part_size", K_U64, part_size, 5LL << 20, 5LL << 30),
    STR("catalog", "dir", catalog_dir, true),
    STR("postgres", "dsn", pg_dsn, false),
    STR("postgres", "batch_name", batch_name, false),
    NUM("thumbnail", "max_width", K_INT, max_width, 1, 10000),
    NUM("thumbnail", "max_height", K_INT, max_height, 1, 10000),
    NUM("thumbnail", "jpeg_quality", K_INT, jpeg_quality, 1, 100),
    NUM("thumbnail", "max_pixels", K_U64, max_pixels, 1, 1000000000000LL),
    NUM("thumbnail", "max_bytes", K_U64, max_bytes, 1, 1LL << 50),
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
    NUM("cache", "max_bytes", K_U64, cache_max_bytes, 0, 1LL << 50),
    STR("audit", "file", audit_file, false),
    NUM("audit", "max_bytes", K_U64, audit_max_bytes, 4096, 1LL << 40),
    NUM("audit", "keep", K_INT, audit_keep, 0, 1000),
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
	snprintf(cfg->patient_id_pattern, sizeof(cfg->patient_id_pattern),
		 "^[A-Za-z0-9_-]{1,64}$");
	snprintf(cfg->uploaded_by, sizeof(cfg->uploaded_by), "thumbfs");
	/* two per core: while one waits on the store, the other decodes */
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	cfg->workers = cores < 1 ? 2 : cores > 32 ? 64 : (int)cores * 2;
	cfg->retry_max_s = 300;
	cfg->unmount_drain_s = 30;
	snprintf(cfg->ignore, sizeof(cfg->ignore),
		 ".DS_Store,Thumbs.db,desktop.ini,~$*");
	cfg->show_uid = -1;
	cfg->show_gid = -1;
	cfg->cache_max_bytes = 10ULL << 30;
	cfg->audit_max_bytes = 10ULL << 20;
	cfg->audit_keep = 10;
}

struct parse {
	struct cfg *cfg;
	bool seen[N_KEYS];
	char msg[512]; /* what the first bad line did wrong */
};

static int set_value(struct parse *p, const struct key *k, const char *value)
{
	char *base = (char *)p->cfg + k->offset;
	char *end = NULL;
	switch (k->kind) {
	case K_STR:
		if (strlen(value) >= k->size) {
			snprintf(p->msg, sizeof(p->msg),
				 "value of '%s' in [%s] is longer than %zu "
				 "bytes",
				 k->name, k->section, k->size - 1);
			return 0;
		}
		memcpy(base, value, strlen(value) + 1);
		return 1;
	case K_BOOL:
		if (!strcasecmp(value, "true") || !strcasecmp(value, "yes") ||
		    !strcmp(value, "1")) {
			*(bool *)base = true;
			return 1;
		}
		if (!strcasecmp(value, "false") || !strcasecmp(value, "no") ||
		    !strcmp(value, "0")) {
			*(bool *)base = false;
			return 1;
		}
		snprintf(p->msg, sizeof(p->msg),
			 "'%s' in [%s] must be true or false, not '%s'",
			 k->name, k->section, value);
		return 0;
	case K_INT:
	case K_U64: {
		errno = 0;
		long long v = strtoll(value, &end, 10);
		if (errno || end == value || *end || v < k->min || v > k->max) {
			snprintf(p->msg, sizeof(p->msg),
				 "'%s' in [%s] must be a whole number from "
				 "%lld to %lld, not '%s'",
				 k->name, k->section, k->min, k->max, value);
			return 0;
		}
		if (k->kind == K_INT)
			*(int *)base = (int)v;
		else
			*(uint64_t *)base = (uint64_t)v;
		return 1;
	}
	}
	return 0;
}

static int on_key(void *user, const char *section, const char *name,
		  const char *value)
{
	struct parse *p = user;
	if (p->msg[0])
		return 0; /* inih reports the first error's line only */
	for (size_t i = 0; i < N_KEYS; i++) {
		if (strcmp(keys[i].section, section) ||
		    strcmp(keys[i].name, name))
			continue;
		p->seen[i] = true;
		return set_value(p, &keys[i], value);
	}
	snprintf(p->msg, sizeof(p->msg), "unknown key '%s' in [%s]", name,
		 section);
	return 0;
}

/* The template's placeholders are {patient}, {date} and {name}; it must
 * name the file, and must not climb out of its prefix. */
static const char *template_error(const char *t)
{
	const char *name = strstr(t, "{name}");
	/* the thumbnail's key is the image's folder with its own name */
	if (!name || strcmp(name, "{name}") || (name != t && name[-1] != '/'))
		return "must end with /{name} (and name it once)";
	if (*t == '/' || strstr(t, "..") || strstr(t, "//"))
		return "must be a relative key without '..' or '//'";
	for (const char *p = strchr(t, '{'); p; p = strchr(p + 1, '{')) {
		if (strncmp(p, "{patient}", 9) && strncmp(p, "{date}", 6) &&
		    strncmp(p, "{name}", 6))
			return "knows only {patient}, {date} and {name}";
	}
	return NULL;
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
static int check_owner(struct cfg *cfg, const char *path, char *err,
		       size_t errlen)
{
	char *end = NULL;
	if (owner_id(cfg->uid_name, false, &cfg->show_uid)) {
		snprintf(err, errlen,
			 "%s: 'uid' in [fs] must be a user name or number; "
			 "there is no user '%s'",
			 path, cfg->uid_name);
		return -EINVAL;
	}
	if (owner_id(cfg->gid_name, true, &cfg->show_gid)) {
		snprintf(err, errlen,
			 "%s: 'gid' in [fs] must be a group name or number; "
			 "there is no group '%s'",
			 path, cfg->gid_name);
		return -EINVAL;
	}
	if (!cfg->umask_text[0])
		return 0;
	unsigned long m = strtoul(cfg->umask_text, &end, 8);
	if (*end || end == cfg->umask_text || cfg->umask_text[0] == '-' ||
	    m > 0777) {
		snprintf(err, errlen,
			 "%s: 'umask' in [fs] must be octal from 000 to 777, "
			 "not '%s'",
			 path, cfg->umask_text);
		return -EINVAL;
	}
	cfg->show_umask = (unsigned)m;
	return 0;
}

static int check(struct cfg *cfg, const char *path, char *err, size_t errlen)
{
	const char *why;
	regex_t re;
	if (strncmp(cfg->store_url, "file:///", 8) &&
	    strncmp(cfg->store_url, "s3://", 5)) {
		snprintf(err, errlen,
			 "%s: 'url' in [store] must be file:///DIR or "
			 "s3://BUCKET, not '%s'",
			 path, cfg->store_url);
		return -EINVAL;
	}
	if (cfg->catalog_dir[0] != '/') {
		snprintf(err, errlen,
			 "%s: 'dir' in [catalog] must be an absolute path",
			 path);
		return -EINVAL;
	}
	if (strcmp(cfg->delete_policy, "delete") &&
	    strcmp(cfg->delete_policy, "keep")) {
		snprintf(err, errlen,
			 "%s: 'delete' in [store] must be delete or keep, not "
			 "'%s'",
			 path, cfg->delete_policy);
		return -EINVAL;
	}
	if (cfg->audit_file[0] && cfg->audit_file[0] != '/') {
		snprintf(err, errlen,
			 "%s: 'file' in [audit] must be an absolute path",
			 path);
		return -EINVAL;
	}
	if ((why = template_error(cfg->key_template))) {
		snprintf(err, errlen, "%s: 'key_template' in [store] %s", path,
			 why);
		return -EINVAL;
	}
	if (regcomp(&re, cfg->patient_id_pattern, REG_EXTENDED | REG_NOSUB)) {
		snprintf(err, errlen,
			 "%s: 'patient_id_pattern' in [fs] is not a valid "
			 "extended regular expression",
			 path);
		return -EINVAL;
	}
	regfree(&re);
	return check_owner(cfg, path, err, errlen);
}

int cfg_load(struct cfg *cfg, const char *path, char *err, size_t errlen)
{
	struct parse p = {.cfg = cfg};
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = errno;
		snprintf(err, errlen, "cannot read config '%s': %s", path,
			 strerror(e));
		return -e;
	}
	int line = ini_parse_file(f, on_key, &p);
	fclose(f);
	if (line != 0) {
		snprintf(err, errlen, "%s:%d: %s", path, line,
			 p.msg[0] ? p.msg
				  : "not an INI line (want key = value)");
		return -EINVAL;
	}
	for (size_t i = 0; i < N_KEYS; i++) {
		if (keys[i].required && !p.seen[i]) {
			snprintf(err, errlen,
				 "%s: missing required key '%s' in [%s]", path,
				 keys[i].name, keys[i].section);
			return -EINVAL;
		}
	}
	return check(cfg, path, err, errlen);
}

int cfg_key(const struct cfg *cfg, const char *patient, const char *date,
	    const char *name, char *out, size_t n)
{
	return cfg_expand(cfg->key_template, patient, date, name, out, n);
}

int cfg_expand(const char *template, const char *patient, const char *date,
	       const char *name, char *out, size_t n)
{
	size_t len = 0;
	for (const char *t = template; *t;) {
		const char *part = NULL;
		size_t skip = 1, plen = 1;
		if (!strncmp(t, "{patient}", 9))
			part = patient, skip = 9;
		else if (!strncmp(t, "{date}", 6))
			part = date, skip = 6;
		else if (!strncmp(t, "{name}", 6))
			part = name, skip = 6;
		if (part)
			plen = strlen(part);
		else
			part = t;
		if (len + plen >= n)
			return -ENAMETOOLONG;
		memcpy(out + len, part, plen);
		len += plen;
		t += skip;
	}
	out[len] = '\0';
	return 0;
}

/* [fs] uploaded_by for the writer uid: "%u" is the user's name (the uid
 * itself when it has none), "%%" a percent sign. */
void cfg_user_name(uid_t uid, char *out, size_t n)
{
	char buf[1024];
	struct passwd pw, *res = NULL;
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res)
		snprintf(out, n, "%s", pw.pw_name);
	else
		snprintf(out, n, "%u", (unsigned)uid);
}

void cfg_uploaded_by(const struct cfg *cfg, uid_t uid, char *out, size_t n)
{
	char name[64];
	size_t len = 0;
	cfg_user_name(uid, name, sizeof(name));
	for (const char *t = cfg->uploaded_by; *t && len + 1 < n; t++) {
		if (t[0] == '%' && (t[1] == 'u' || t[1] == '%')) {
			const char *s = t[1] == 'u' ? name : "%";
			len += (size_t)snprintf(out + len, n - len, "%s", s);
			if (len >= n)
				len = n - 1;
			t++;
		} else {
			out[len++] = *t;
		}
	}
	out[len] = '\0';
}
