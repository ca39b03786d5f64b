/* path.c - the path model: patients/<id>/<YYYY-MM-DD>/<name>. */
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "path.h"

int fs_rules_init(struct fs_rules *r, const char *patient_pattern,
		  const char *ignore)
{
	snprintf(r->ignore, sizeof(r->ignore), "%s", ignore);
	snprintf(r->pattern, sizeof(r->pattern), "%s", patient_pattern);
	if (regcomp(&r->patient_re, patient_pattern, REG_EXTENDED | REG_NOSUB))
		return -EINVAL;
	return 0;
}

void fs_rules_release(struct fs_rules *r)
{
	regfree(&r->patient_re);
}

int fs_scope_parse(const char *path, struct fs_scope *out, char *err, size_t n)
{
	const char *p = strstr(path, "patients/");
	char *const part[] = {out->patient, out->date, out->name};
	const size_t size[] = {sizeof(out->patient), sizeof(out->date),
			       sizeof(out->name)};
	memset(out, 0, sizeof(*out));
	if (!p || (p != path && p[-1] != '/')) {
		snprintf(err, n,
			 "'%s' is not a path of the tree "
			 "(patients/ID[/DATE[/NAME]])",
			 path);
		return -EINVAL;
	}
	for (p += 9; *p && out->parts < 3; out->parts++) {
		size_t len = strcspn(p, "/");
		if (len == 0 || len >= size[out->parts]) {
			snprintf(err, n,
				 "'%s': its %s is %s (at most %zu bytes)", path,
				 out->parts == 0   ? "patient id"
				 : out->parts == 1 ? "date"
						   : "name",
				 len ? "too long" : "empty",
				 size[out->parts] - 1);
			return -EINVAL;
		}
		memcpy(part[out->parts], p, len);
		p += len + (p[len] == '/');
	}
	if (*p || !out->parts) {
		snprintf(err, n,
			 "'%s' is not a path of the tree "
			 "(patients/ID[/DATE[/NAME]])",
			 path);
		return -EINVAL;
	}
	return 0;
}

bool fs_valid_date(const char *s)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30,
				     31, 31, 30, 31, 30, 31};
	for (int i = 0; i < 10; i++) {
		if (i == 4 || i == 7) {
			if (s[i] != '-')
				return false;
		} else if (s[i] < '0' || s[i] > '9') {
			return false;
		}
	}
	if (s[10])
		return false;
	int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 +
		(s[3] - '0');
	int m = (s[5] - '0') * 10 + (s[6] - '0');
	int d = (s[8] - '0') * 10 + (s[9] - '0');
	if (y < 1 || m < 1 || m > 12 || d < 1)
		return false;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return d <= days[m - 1] + (m == 2 && leap);
}

static bool ignored(const struct fs_rules *r, const char *name)
{
	char pat[256];
	for (const char *p = r->ignore; *p;) {
		size_t n = strcspn(p, ",");
		if (n > 0 && n < sizeof(pat)) {
			memcpy(pat, p, n);
			pat[n] = '\0';
			if (fnmatch(pat, name, 0) == 0)
				return true;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return false;
}

bool fs_name_local(const struct fs_rules *r, const char *name)
{
	return name[0] == '.' || ignored(r, name);
}

bool fs_is_thumb_name(const char *name)
{
	const char *dot = strrchr(name, '.');
	size_t stem = dot ? (size_t)(dot - name) : strlen(name);
	return stem >= 6 && memcmp(name + stem - 6, "_thumb", 6) == 0;
}

void fs_thumb_name(const char *name, const char *ext, char *out, size_t n)
{
	const char *dot = strrchr(name, '.');
	int stem = dot && dot != name ? (int)(dot - name) : (int)strlen(name);
	snprintf(out, n, "%.*s_thumb%s", stem, name, ext);
}

int fs_thumb_candidate(const char *name, const char *ext, int k, char *out,
		       size_t n)
{
	int len;
	if (k == 0) {
		fs_thumb_name(name, ext, out, n);
		len = (int)strlen(out);
	} else if (k == 1) {
		len = snprintf(out, n, "%s_thumb%s", name, ext);
	} else {
		len = snprintf(out, n, "%s~%d_thumb%s", name, k, ext);
	}
	return len < 0 || (size_t)len >= n || len > 255 ? -ENAMETOOLONG : 0;
}

size_t fs_utf8_char(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned c = *p, n, min;
	if (c < 0x80)
		return c ? 1 : 0;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 1; /* continuation bytes */
		min = 0x80;
		c &= 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2;
		min = 0x800;
		c &= 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3;
		min = 0x10000;
		c &= 0x07;
	} else {
		return 0;
	}
	for (unsigned i = 1; i <= n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return n + 1;
}

/* Names become S3 keys and PostgreSQL text, which must be UTF-8: one
 * that is not (or holds a control character, which would break a log
 * line) is refused. */
static int name_error(const char *s)
{
	while (*s) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f)
			return -EINVAL;
		size_t n = fs_utf8_char(s);
		if (!n)
			return -EILSEQ;
		s += n;
	}
	return 0;
}

static void invalid(struct fs_path *out, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void invalid(struct fs_path *out, int err, const char *fmt, ...)
{
	va_list ap;
	out->kind = FS_INVALID;
	out->err = err;
	out->rule = fmt;
	va_start(ap, fmt);
	vsnprintf(out->why, sizeof(out->why), fmt, ap);
	va_end(ap);
}

/* A path inside a held folder (or the folder itself, at held_at): kept in
 * the spool as a hidden file is, never uploaded. */
static void held(struct fs_path *out, const char *leaf, int n)
{
	out->kind = n == out->held_at ? FS_HELD : FS_FILE;
	out->held = true;
	out->local = true;
	snprintf(out->name, sizeof(out->name), "%s", leaf);
}

void fs_path_parse(const struct fs_rules *r, const char *path,
		   struct fs_path *out)
{
	char comp[4][256], leaf[256];
	int n = 0;

	memset(out, 0, sizeof(*out));
	if (path[0] != '/')
		return invalid(out, -EINVAL, "path is not absolute");
	for (const char *p = path + 1; *p;) {
		size_t len = strcspn(p, "/");
		if (len == 0) {
			p++;
			continue;
		}
		if (len > 255)
			return invalid(out, -ENAMETOOLONG,
				       "a name is longer than 255 bytes");
		out->depth = n + 1;
		memcpy(leaf, p, len);
		leaf[len] = '\0';
		if (n < 4)
			memcpy(comp[n], leaf, len + 1);
		if (!strcmp(leaf, ".") || !strcmp(leaf, ".."))
			return invalid(out, -EINVAL,
				       "'.' and '..' are not names");
		int bad = n >= 1 ? name_error(leaf) : 0;
		if (bad ==
		    -EILSEQ) /* (each its own rule, said once a minute) */
			return invalid(out, bad,
				       "a file name must be valid UTF-8");
		if (bad)
			return invalid(
			    out, bad,
			    "a file name may not hold control characters");
		n++;
		p += len;
	}
	if (n == 0) {
		out->kind = FS_ROOT;
		return;
	}
	if (!strcmp(comp[0], ".thumbfs")) {
		if (n == 1)
			out->kind = FS_META;
		else if (n == 2 && (!strcmp(comp[1], "status") ||
				    !strcmp(comp[1], "status.json"))) {
			out->kind = FS_STATUS;
			out->json = comp[1][6] != '\0';
		} else
			invalid(out, -ENOENT, "not a thumbfs status file");
		return;
	}
	if (strcmp(comp[0], "patients"))
		return invalid(
		    out, -EPERM,
		    "only 'patients' may be at the top of the mount, "
		    "not '%.64s'",
		    comp[0]);
	if (n == 1) {
		out->kind = FS_PATIENTS;
		return;
	}
	/* A folder named as neither a patient id nor a date where one goes,
	 * or one below a date, is held (db/held.h): Explorer and Finder make
	 * "New folder" before the person types its name. */
	if (regexec(&r->patient_re, comp[1], 0, NULL, 0) ||
	    strlen(comp[1]) >= sizeof(out->patient)) {
		snprintf(out->why, sizeof(out->why),
			 "patient id '%.64s' does not match "
			 "patient_id_pattern %s",
			 comp[1], r->pattern);
		out->held_at = 2;
		return held(out, leaf, n);
	}
	snprintf(out->patient, sizeof(out->patient), "%s", comp[1]);
	if (n == 2) {
		out->kind = FS_PATIENT;
		return;
	}
	if (!fs_valid_date(comp[2])) {
		snprintf(out->why, sizeof(out->why),
			 "batch directory '%.64s' is not a real date "
			 "YYYY-MM-DD",
			 comp[2]);
		out->held_at = 3;
		return held(out, leaf, n);
	}
	memcpy(out->date, comp[2], 11);
	if (n == 3) {
		out->kind = FS_BATCH;
		return;
	}
	if (n > 4) {
		snprintf(out->why, sizeof(out->why),
			 "'%.64s' is a folder in a date's folder", comp[3]);
		out->held_at = 4;
		return held(out, leaf, n);
	}
	out->kind = FS_FILE;
	snprintf(out->name, sizeof(out->name), "%s", comp[3]);
	out->local = fs_name_local(r, comp[3]);
	out->thumb = !out->local && fs_is_thumb_name(comp[3]);
}
