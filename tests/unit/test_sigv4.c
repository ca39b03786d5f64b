/* test_sigv4.c - every SigV4 step, header and presigned-query forms,
 * against the cases in tests/unit/sigv4/cases.txt (requests written from
 * the specification and AWS's published S3 examples, signed by botocore:
 * see make_cases.py there), or against a directory laid out as AWS's own
 * test suite is (one directory per case), given as the argument. */
#include <ctype.h>
#include <dirent.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "s3/s3.h"
#include "tests/unit/check.h"

#define CASES SRCDIR "/tests/unit/sigv4/cases.txt"

static const char *suite_dir; /* NULL: the cases file */
static char *cases_text;

/* Section "--- file" of case "### name" in the cases file, malloc'd. */
static char *case_section(const char *name, const char *file)
{
	char mark[256];
	snprintf(mark, sizeof(mark), "### %s\n", name);
	const char *c = strstr(cases_text, mark);
	while (c && c != cases_text && c[-1] != '\n')
		c = strstr(c + 1, mark);
	if (!c)
		return NULL;
	const char *end = strstr(c + 1, "\n### ");
	snprintf(mark, sizeof(mark), "\n--- %s\n", file);
	const char *p = strstr(c, mark);
	if (!p || (end && p > end))
		return NULL;
	p += strlen(mark);
	const char *q = strstr(p, "\n--- "), *q2 = strstr(p, "\n### ");
	if (!q || (q2 && q2 < q))
		q = q2;
	if (!q)
		q = p + strlen(p) - 1; /* the file's last newline */
	return strndup(p, (size_t)(q - p));
}

static char *slurp_case(const char *name, const char *file)
{
	char path[1024];
	size_t len;
	if (!suite_dir)
		return case_section(name, file);
	snprintf(path, sizeof(path), "%s/%s/%s", suite_dir, name, file);
	return (char *)check_slurp(path, &len);
}

/* The string value of "key" in context.json (flat enough for this). */
static void json_str(const char *json, const char *key, char *out, size_t n)
{
	char pat[64];
	out[0] = '\0';
	snprintf(pat, sizeof(pat), "\"%s\": \"", key);
	const char *p = strstr(json, pat);
	if (p) {
		p += strlen(pat);
		snprintf(out, n, "%.*s", (int)strcspn(p, "\""), p);
	}
}

static bool json_true(const char *json, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\": true", key);
	return strstr(json, pat) != NULL;
}

struct header {
	char name[64];
	char value[1024];
};

static int cmp_header(const void *a, const void *b)
{
	return strcmp(((const struct header *)a)->name,
		      ((const struct header *)b)->name);
}

/* Trim, and fold runs of spaces into one, as SigV4 canonicalises. */
static void add_value(char *dst, size_t n, const char *v, size_t vlen)
{
	size_t len = strlen(dst);
	while (vlen && isspace((unsigned char)*v))
		v++, vlen--;
	while (vlen && isspace((unsigned char)v[vlen - 1]))
		vlen--;
	bool space = false;
	for (size_t i = 0; i < vlen && len + 1 < n; i++) {
		if (v[i] == ' ') {
			space = true;
			continue;
		}
		if (space && len > 0 && len + 1 < n)
			dst[len++] = ' ';
		space = false;
		dst[len++] = v[i];
	}
	dst[len] = '\0';
}

struct request {
	char method[16];
	char path[512];
	char query[512];
	struct header h[16];
	int nh;
	const char *body;
};

/* request.txt: the request line, headers (continuation lines folded,
 * repeated names joined with ','), a blank line, the body. */
static void parse_request(char *text, struct request *r)
{
	memset(r, 0, sizeof(*r));
	char *line = text, *next;
	char target[1024];
	next = strchr(line, '\n');
	if (next)
		*next++ = '\0';
	sscanf(line, "%15s %1023s", r->method, target);
	/* the target may hold a space: take up to " HTTP/" */
	char *http = strstr(line, " HTTP/");
	size_t tlen = http ? (size_t)(http - line) - strlen(r->method) - 1
			   : strlen(target);
	snprintf(target, sizeof(target), "%.*s", (int)tlen,
		 line + strlen(r->method) + 1);
	char *q = strchr(target, '?');
	if (q)
		*q++ = '\0';
	snprintf(r->path, sizeof(r->path), "%s", target);
	snprintf(r->query, sizeof(r->query), "%s", q ? q : "");
	struct header *last = NULL;
	for (line = next; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (!*line) {
			r->body = next ? next : "";
			break;
		}
		if (isspace((unsigned char)*line) && last) {
			size_t l = strlen(last->value);
			if (l + 1 < sizeof(last->value))
				last->value[l++] = ' ';
			last->value[l] = '\0';
			add_value(last->value + l, sizeof(last->value) - l,
				  line, strlen(line));
			continue;
		}
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		char name[64];
		snprintf(name, sizeof(name), "%.*s", (int)(colon - line), line);
		for (char *c = name; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		last = NULL;
		for (int i = 0; i < r->nh; i++)
			if (!strcmp(r->h[i].name, name))
				last = &r->h[i];
		if (last) {
			add_value(last->value, sizeof(last->value), ",", 1);
			size_t l = strlen(last->value);
			add_value(last->value + l, sizeof(last->value) - l,
				  colon + 1, strlen(colon + 1));
		} else if (r->nh < 16) {
			last = &r->h[r->nh++];
			snprintf(last->name, sizeof(last->name), "%s", name);
			add_value(last->value, sizeof(last->value), colon + 1,
				  strlen(colon + 1));
		}
	}
	if (!r->body)
		r->body = "";
}

static void add_header(struct request *r, const char *name, const char *v)
{
	snprintf(r->h[r->nh].name, sizeof(r->h[0].name), "%s", name);
	snprintf(r->h[r->nh].value, sizeof(r->h[0].value), "%s", v);
	r->nh++;
}

static bool same(const char *what, const char *name, const char *got,
		 const char *want)
{
	bool ok = got && want && !strcmp(got, want);
	if (!ok)
		fprintf(stderr, "%s %s:\ngot\n%s\nwant\n%s\n", name, what,
			got ? got : "(null)", want ? want : "(missing)");
	return ok;
}

static void check_case(const char *name)
{
	char *ctx = slurp_case(name, "context.json");
	char *text = slurp_case(name, "request.txt");
	char key_id[64], secret[128], region[32], service[32], stamp[32],
	    token[1024], date[17], hash[65];
	struct request r;
	struct tm tm = {0};
	CHECK(ctx && text);
	if (!ctx || !text)
		goto out_free;
	json_str(ctx, "access_key_id", key_id, sizeof(key_id));
	json_str(ctx, "secret_access_key", secret, sizeof(secret));
	json_str(ctx, "region", region, sizeof(region));
	json_str(ctx, "service", service, sizeof(service));
	json_str(ctx, "timestamp", stamp, sizeof(stamp));
	json_str(ctx, "token", token, sizeof(token));
	strptime(stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
	time_t now = timegm(&tm);
	strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &tm);
	bool normalize = json_true(ctx, "normalize");
	bool sign_body = json_true(ctx, "sign_body");
	bool unsigned_payload = json_true(ctx, "unsigned_payload");
	char expires_s[16];
	json_str(ctx, "expires", expires_s, sizeof(expires_s));
	int expires = *expires_s ? atoi(expires_s) : 3600;
	if (json_true(ctx, "omit_session_token"))
		token[0] = '\0'; /* added after signing, so not signed */
	parse_request(text, &r);
	s3_sha256_hex(r.body, strlen(r.body), hash);

	for (int form = 0; form < 2; form++) { /* header, then query */
		struct request q = r;
		const char *pre = form ? "query-" : "header-";
		char file[64], *params = NULL, *raw = NULL;
		snprintf(file, sizeof(file), "%ssignature.txt", pre);
		char *has_form = slurp_case(name, file);
		free(has_form);
		if (!has_form)
			continue; /* a case of one form only */
		if (!form) {
			add_header(&q, "x-amz-date", date);
			if (*token)
				add_header(&q, "x-amz-security-token", token);
			if (sign_body)
				add_header(&q, "x-amz-content-sha256", hash);
		}
		qsort(q.h, (size_t)q.nh, sizeof(q.h[0]), cmp_header);
		char lines[16][1100];
		const char *hp[16];
		for (int i = 0; i < q.nh; i++) {
			snprintf(lines[i], sizeof(lines[i]), "%s:%s",
				 q.h[i].name, q.h[i].value);
			hp[i] = lines[i];
		}
		struct s3_sigv4 req = {
		    .method = q.method,
		    .headers = hp,
		    .n_headers = (size_t)q.nh,
		    .payload_hash =
			form && unsigned_payload ? "UNSIGNED-PAYLOAD" : hash,
		    .region = region,
		    .service = service,
		    .now = now,
		    .access_key_id = key_id,
		    .secret_access_key = secret,
		};
		char *uri = s3_sigv4_canonical_uri(q.path, normalize);
		if (form) {
			params = s3_sigv4_presign_params(&req, expires,
							 *token ? token : NULL);
			if (asprintf(&raw, "%s%s%s", q.query,
				     *q.query ? "&" : "",
				     params ? params : "") < 0)
				raw = NULL;
		}
		char *query = s3_sigv4_canonical_query(form ? raw : q.query);
		req.uri = uri;
		req.query = query;
		char *creq = s3_sigv4_canonical_request(&req);
		char *sts = s3_sigv4_string_to_sign(&req);
		char *sig = s3_sigv4_signature(&req);
		char *auth = form ? NULL : s3_sigv4_authorization(&req);
		snprintf(file, sizeof(file), "%scanonical-request.txt", pre);
		char *want_creq = slurp_case(name, file);
		snprintf(file, sizeof(file), "%sstring-to-sign.txt", pre);
		char *want_sts = slurp_case(name, file);
		snprintf(file, sizeof(file), "%ssignature.txt", pre);
		char *want_sig = slurp_case(name, file);
		snprintf(file, sizeof(file), "%ssigned-request.txt", pre);
		char *want_req = slurp_case(name, file);
		CHECK(same("canonical request", name, creq, want_creq));
		CHECK(same("string to sign", name, sts, want_sts));
		CHECK(same("signature", name, sig, want_sig));
		/* the signed request carries exactly this signature */
		char line[1500];
		if (form)
			snprintf(line, sizeof(line), "X-Amz-Signature=%s",
				 sig ? sig : "");
		else
			snprintf(line, sizeof(line), "Authorization:%s\n",
				 auth ? auth : "");
		CHECK(want_req && strstr(want_req, line) != NULL);
		free(uri);
		free(params);
		free(raw);
		free(query);
		free(creq);
		free(sts);
		free(sig);
		free(auth);
		free(want_creq);
		free(want_sts);
		free(want_sig);
		free(want_req);
	}
out_free:
	free(ctx);
	free(text);
}

static void test_s3_paths(void)
{
	/* S3 neither normalises nor double-encodes: keys keep their dots
	 * and slashes, and the rest is encoded once */
	char *s = s3_uri_encode("patients/P 1/2025-11-10/Ünï~x_y.jpg", true);
	CHECK(s &&
	      !strcmp(s, "patients/P%201/2025-11-10/%C3%9Cn%C3%AF~x_y.jpg"));
	free(s);
	s = s3_sigv4_canonical_uri("/bucket/a/../b//c.jpg", false);
	CHECK(s && !strcmp(s, "/bucket/a/../b//c.jpg"));
	free(s);
	s = s3_uri_encode("a/b", false);
	CHECK(s && !strcmp(s, "a%2Fb"));
	free(s);
}

/* The names of the cases: the cases file's "### " lines, or the suite
 * directory's entries. */
static int for_each_case(void (*fn)(const char *))
{
	int n = 0;
	if (!suite_dir) {
		for (const char *p = cases_text; (p = strstr(p, "### "));
		     p += 4) {
			if (p != cases_text && p[-1] != '\n')
				continue;
			char name[128];
			snprintf(name, sizeof(name), "%.*s",
				 (int)strcspn(p + 4, "\n"), p + 4);
			fn(name);
			n++;
		}
		return n;
	}
	DIR *d = opendir(suite_dir);
	struct dirent *e;
	CHECK(d != NULL);
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		fn(e->d_name);
		n++;
	}
	if (d)
		closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	size_t len;
	if (argc > 1) {
		suite_dir = argv[1];
	} else {
		cases_text = (char *)check_slurp(CASES, &len);
		CHECK(cases_text != NULL);
		if (!cases_text)
			return check_report("test_sigv4");
	}
	int cases = for_each_case(check_case);
	CHECK(cases >= 25);
	test_s3_paths();
	free(cases_text);
	printf("%d cases\n", cases);
	return check_report("test_sigv4");
}
