/* store.c - the object store: an S3 client over libcurl, and file://. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "s3.h"

#define POOL_MAX    8
#define ERRBODY_MAX 4096

struct s3_store {
	bool is_file;
	bool curl_ref; /* holds a reference on curl_global_init() */
	char *root;    /* file://: the directory */
	char *bucket;  /* s3://: the bucket; file://: the URL */
	char *base;    /* s3://: scheme://authority, no trailing slash */
	char *host;    /* s3://: the Host header's value */
	char *prefix;  /* s3://: "/bucket" (path style) or "" */
	char *region;
	struct creds *creds; /* guarded by lock; replaced by a reload */
	char *sse;	     /* NULL: none */
	char *sse_kms;	     /* NULL: the bucket's default KMS key */
	char *ca_file;	     /* NULL: the system's CA store */
	bool insecure;	     /* no peer or host name check */
	long timeout_s;	     /* a stalled request fails after this long */
	uint64_t multipart_threshold; /* larger objects go in parts */
	uint64_t part_size;

	pthread_mutex_t lock; /* guards pool and n_pool */
	CURL *pool[POOL_MAX];
	int n_pool;
};

/* The credentials one request signs with: shared, counted, so that a
 * reload (s3_set_credentials) never pulls them from under a request. */
struct creds {
	int refs; /* guarded by the store's lock */
	char *key_id;
	char *secret;
	char *token; /* NULL: none */
};

static void creds_free(struct creds *c)
{
	if (!c)
		return;
	if (c->secret)
		OPENSSL_cleanse(c->secret, strlen(c->secret));
	if (c->token)
		OPENSSL_cleanse(c->token, strlen(c->token));
	free(c->key_id);
	free(c->secret);
	free(c->token);
	free(c);
}

static struct creds *creds_get(struct s3_store *st)
{
	pthread_mutex_lock(&st->lock);
	struct creds *c = st->creds;
	if (c)
		c->refs++;
	pthread_mutex_unlock(&st->lock);
	return c;
}

static void creds_put(struct s3_store *st, struct creds *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&st->lock);
	bool last = --c->refs == 0;
	pthread_mutex_unlock(&st->lock);
	if (last)
		creds_free(c);
}

static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static int global_refs; /* guarded by global_lock */

/* A key is built from validated parts; this is the last line of defence. */
static bool key_ok(const char *key)
{
	if (!*key || *key == '/' || strlen(key) > 1024)
		return false;
	for (const char *p = key; *p;) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

static char *dup_or_env(const char *v, const char *env)
{
	if (v && *v)
		return strdup(v);
	const char *e = getenv(env);
	return e && *e ? strdup(e) : NULL;
}

void s3_free(struct s3_store *st)
{
	if (!st)
		return;
	for (int i = 0; i < st->n_pool; i++)
		curl_easy_cleanup(st->pool[i]);
	if (st->creds && --st->creds->refs == 0)
		creds_free(st->creds);
	free(st->root);
	free(st->bucket);
	free(st->base);
	free(st->host);
	free(st->prefix);
	free(st->region);
	free(st->sse);
	free(st->sse_kms);
	free(st->ca_file);
	pthread_mutex_destroy(&st->lock);
	if (st->curl_ref) {
		pthread_mutex_lock(&global_lock);
		if (--global_refs == 0)
			curl_global_cleanup();
		pthread_mutex_unlock(&global_lock);
	}
	free(st);
}

static int mkdir_p(const char *dir, mode_t mode)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

int s3_set_credentials(struct s3_store *st, const char *key_id,
		       const char *secret, const char *token)
{
	if (st->is_file)
		return 0;
	struct creds *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->refs = 1;
	c->key_id = dup_or_env(key_id, "AWS_ACCESS_KEY_ID");
	c->secret = dup_or_env(secret, "AWS_SECRET_ACCESS_KEY");
	c->token = dup_or_env(token, "AWS_SESSION_TOKEN");
	if (!c->key_id || !c->secret) {
		creds_free(c);
		return -EINVAL;
	}
	pthread_mutex_lock(&st->lock);
	struct creds *old = st->creds;
	st->creds = c;
	bool last = old && --old->refs == 0;
	pthread_mutex_unlock(&st->lock);
	if (last)
		creds_free(old);
	return 0;
}

static int open_s3(struct s3_store *st, const struct s3_config *cfg,
		   const char *bucket, char *err, size_t errlen)
{
	const char *region =
	    cfg->region && *cfg->region ? cfg->region : "us-east-1";
	st->region = strdup(region);
	st->bucket = strdup(bucket);
	int ret = s3_set_credentials(
	    st, cfg->access_key_id, cfg->secret_access_key, cfg->session_token);
	if (ret) {
		snprintf(err, errlen,
			 ret == -ENOMEM
			     ? "out of memory"
			     : "no S3 credentials: set access_key_id and "
			       "secret_access_key in [store], or "
			       "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
		return ret;
	}
	char *ep = NULL;
	if (cfg->endpoint && *cfg->endpoint)
		ep = strdup(cfg->endpoint);
	else if (asprintf(&ep, "https://s3.%s.amazonaws.com", region) < 0)
		ep = NULL;
	if (!ep)
		return -ENOMEM;
	size_t n = strlen(ep);
	while (n && ep[n - 1] == '/')
		ep[--n] = '\0';
	const char *auth = strstr(ep, "://");
	if (!auth ||
	    (strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8)) ||
	    !auth[3] || strchr(auth + 3, '/')) {
		snprintf(err, errlen,
			 "endpoint '%s' is not http(s)://host[:port]", ep);
		free(ep);
		return -EINVAL;
	}
	auth += 3;
	if (cfg->path_style) {
		st->base = ep;
		st->host = strdup(auth);
		if (asprintf(&st->prefix, "/%s", bucket) < 0)
			st->prefix = NULL;
	} else {
		size_t scheme = (size_t)(auth - ep);
		if (asprintf(&st->base, "%.*s%s.%s", (int)scheme, ep, bucket,
			     auth) < 0)
			st->base = NULL;
		if (asprintf(&st->host, "%s.%s", bucket, auth) < 0)
			st->host = NULL;
		st->prefix = strdup("");
		free(ep);
	}
	if (!st->base || !st->host || !st->prefix || !st->region || !st->bucket)
		return -ENOMEM;
	pthread_mutex_lock(&global_lock);
	if (global_refs > 0 ||
	    curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK) {
		global_refs++;
		st->curl_ref = true;
	}
	pthread_mutex_unlock(&global_lock);
	if (!st->curl_ref) {
		snprintf(err, errlen, "libcurl failed to initialise");
		return -EIO;
	}
	return 0;
}

static int dup_opt(char **out, const char *s)
{
	if (!s || !*s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

/* Server-side encryption and the TLS checks, S3 only. */
static int open_tls_sse(struct s3_store *st, const struct s3_config *cfg,
			char *err, size_t errlen)
{
	const char *sse = cfg->sse ? cfg->sse : "";
	if (*sse && strcmp(sse, "AES256") && strcmp(sse, "aws:kms")) {
		snprintf(err, errlen,
			 "server-side encryption must be AES256 or aws:kms, "
			 "not '%s'",
			 sse);
		return -EINVAL;
	}
	if (cfg->sse_kms_key_id && *cfg->sse_kms_key_id &&
	    strcmp(sse, "aws:kms")) {
		snprintf(err, errlen, "a KMS key id needs sse = aws:kms");
		return -EINVAL;
	}
	if (cfg->ca_file && *cfg->ca_file && access(cfg->ca_file, R_OK)) {
		snprintf(err, errlen, "cannot read CA file '%s': %s",
			 cfg->ca_file, strerror(errno));
		return -EINVAL;
	}
	st->insecure = cfg->insecure_skip_verify;
	st->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : 30;
	st->part_size =
	    cfg->part_size >= S3_PART_MIN ? cfg->part_size : 16ULL << 20;
	st->multipart_threshold =
	    cfg->multipart_threshold ? cfg->multipart_threshold : 64ULL << 20;
	if (dup_opt(&st->sse, sse) ||
	    dup_opt(&st->sse_kms, cfg->sse_kms_key_id) ||
	    dup_opt(&st->ca_file, cfg->ca_file))
		return -ENOMEM;
	return 0;
}

struct s3_store *s3_open(const struct s3_config *cfg, char *err, size_t errlen)
{
	struct s3_store *st = calloc(1, sizeof(*st));
	int ret = -ENOMEM;
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&st->lock, NULL);
	const char *url = cfg->url ? cfg->url : "";
	if (strncmp(url, "file://", 7) == 0) {
		st->is_file = true;
		const char *dir = url + 7;
		if (*dir != '/') {
			snprintf(err, errlen,
				 "store url '%s' needs an absolute path "
				 "(file:///dir)",
				 url);
			ret = -EINVAL;
			goto out_fail;
		}
		st->root = strdup(dir);
		st->bucket = strdup(url);
		if (!st->root || !st->bucket)
			goto out_fail;
		ret = mkdir_p(st->root, 0700);
		if (ret) {
			snprintf(err, errlen, "cannot create store '%s': %s",
				 st->root, strerror(-ret));
			goto out_fail;
		}
	} else if (strncmp(url, "s3://", 5) == 0) {
		const char *bucket = url + 5;
		size_t n = strcspn(bucket, "/");
		if (n == 0 || bucket[n]) {
			snprintf(err, errlen,
				 "store url '%s' must be s3://bucket", url);
			ret = -EINVAL;
			goto out_fail;
		}
		ret = open_s3(st, cfg, bucket, err, errlen);
		if (ret)
			goto out_fail;
		ret = open_tls_sse(st, cfg, err, errlen);
		if (ret)
			goto out_fail;
	} else {
		snprintf(
		    err, errlen,
		    "store url '%s' is neither file:///dir nor s3://bucket",
		    url);
		ret = -EINVAL;
		goto out_fail;
	}
	return st;
out_fail:
	if (ret == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	s3_free(st);
	return NULL;
}

const char *s3_bucket(const struct s3_store *st)
{
	return st->bucket;
}

/* ---- file:// ---- */

static int file_path(struct s3_store *st, const char *key, char *out, size_t n)
{
	if (snprintf(out, n, "%s/%s", st->root, key) >= (int)n)
		return -ENAMETOOLONG;
	return 0;
}

/* Write whole or not at all: a temporary file beside dest, fsync, rename. */
static int write_atomic(const char *dest, int (*fill)(int fd, void *arg),
			void *arg)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	int fd, ret;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", dest) >=
	    (int)sizeof(tmp))
		return -ENAMETOOLONG;
	snprintf(dir, sizeof(dir), "%s", dest);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		ret = mkdir_p(dir, 0700);
		if (ret)
			return ret;
	}
	fd = mkstemp(tmp);
	if (fd < 0)
		return -errno;
	ret = fill(fd, arg);
	if (!ret && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, dest))
		ret = -errno;
	if (ret)
		unlink(tmp);
	else if (slash && slash != dir) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	return ret;
}

struct buf_arg {
	const unsigned char *buf;
	size_t len;
};

static int fill_buf(int fd, void *arg)
{
	struct buf_arg *b = arg;
	size_t off = 0;
	while (off < b->len) {
		ssize_t n = write(fd, b->buf + off, b->len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)n;
	}
	return 0;
}

static int fill_copy(int fd, void *arg)
{
	int in = *(int *)arg;
	char buf[1 << 16];
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return 0;
		struct buf_arg b = {(unsigned char *)buf, (size_t)n};
		int ret = fill_buf(fd, &b);
		if (ret)
			return ret;
	}
}

static int copy_file(const char *src, const char *dest)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	int ret = write_atomic(dest, fill_copy, &in);
	close(in);
	return ret;
}

/* ---- S3 over HTTP ---- */

static CURL *take_handle(struct s3_store *st)
{
	CURL *c = NULL;
	pthread_mutex_lock(&st->lock);
	if (st->n_pool > 0)
		c = st->pool[--st->n_pool];
	pthread_mutex_unlock(&st->lock);
	if (c)
		curl_easy_reset(c);
	else
		c = curl_easy_init();
	return c;
}

static void give_handle(struct s3_store *st, CURL *c)
{
	pthread_mutex_lock(&st->lock);
	if (st->n_pool < POOL_MAX) {
		st->pool[st->n_pool++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&st->lock);
	if (c)
		curl_easy_cleanup(c);
}

struct http_req {
	const char *method;
	const char *key;	  /* NULL: the bucket itself */
	const char *payload_hash; /* hex SHA-256 of the body */
	const char *content_type;
	/* body: from a file descriptor or a buffer */
	int body_fd;
	const unsigned char *body;
	curl_off_t body_len;
	curl_off_t body_pos;
	/* response: to a file descriptor, the error body to errbody */
	int out_fd;
	int out_err;
	char errbody[ERRBODY_MAX];
	size_t errbody_len;
	long status;
	CURL *curl;
	const char *query; /* canonical query string, or NULL */
	bool sse; /* send the SSE headers (PUT, CreateMultipartUpload) */
	curl_off_t body_off; /* body_fd: where the body starts in the file */
	/* integrity: Content-MD5 sent, and the ETag S3 answers (the MD5 of
	 * what it stored, for a single PUT) compared */
	bool check_md5;
	unsigned char md5[16];
	char etag[64];
	/* a ranged GET into out_buf: bytes range_off .. + out_cap; a server
	 * that ignores Range answers 200 with the whole object, whose first
	 * range_off bytes are skipped */
	bool ranged;
	uint64_t range_off;
	unsigned char *out_buf;
	size_t out_cap;
	size_t out_len;
	uint64_t seen; /* body bytes of a 200 answer so far */
};

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
	struct http_req *r = arg;
	size_t len = size * n;
	if (len > 5 && !strncasecmp(line, "ETag:", 5)) {
		const char *v = line + 5;
		size_t k = 0;
		while (v < line + len && (*v == ' ' || *v == '"'))
			v++;
		while (v + k < line + len && v[k] != '"' && v[k] != '\r' &&
		       v[k] != '\n' && k + 1 < sizeof(r->etag))
			k++;
		memcpy(r->etag, v, k);
		r->etag[k] = '\0';
	}
	return len;
}

static size_t read_body(char *ptr, size_t size, size_t n, void *arg)
{
	struct http_req *r = arg;
	size_t want = size * n;
	curl_off_t left = r->body_len - r->body_pos;
	if ((curl_off_t)want > left)
		want = (size_t)left;
	if (r->body_fd >= 0) { /* a part of a file: its own range */
		ssize_t got = pread(r->body_fd, ptr, want,
				    (off_t)(r->body_off + r->body_pos));
		if (got < 0)
			return CURL_READFUNC_ABORT;
		r->body_pos += got;
		return (size_t)got;
	}
	memcpy(ptr, r->body + r->body_pos, want);
	r->body_pos += (curl_off_t)want;
	return want;
}

static size_t write_body(char *ptr, size_t size, size_t n, void *arg)
{
	struct http_req *r = arg;
	size_t len = size * n;
	long status = 0;
	curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 200 && status < 300 && r->out_buf) {
		size_t skip = 0;
		if (status == 200) { /* the whole object: find the range */
			if (r->seen < r->range_off)
				skip = r->range_off - r->seen < len
					   ? (size_t)(r->range_off - r->seen)
					   : len;
			r->seen += len;
		}
		size_t take = len - skip;
		if (take > r->out_cap - r->out_len)
			take = r->out_cap - r->out_len;
		memcpy(r->out_buf + r->out_len, ptr + skip, take);
		r->out_len += take;
		return len;
	}
	if (status >= 200 && status < 300 && r->out_fd >= 0) {
		size_t off = 0;
		while (off < len) {
			ssize_t w = write(r->out_fd, ptr + off, len - off);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				r->out_err = errno;
				return 0;
			}
			off += (size_t)w;
		}
		return len;
	}
	size_t room = sizeof(r->errbody) - 1 - r->errbody_len;
	size_t take = len < room ? len : room;
	memcpy(r->errbody + r->errbody_len, ptr, take);
	r->errbody_len += take;
	r->errbody[r->errbody_len] = '\0';
	return len;
}

/* The <Code> of an S3 error reply, or "". */
static void error_code(const char *body, char *out, size_t n)
{
	const char *b = strstr(body, "<Code>"), *e;
	out[0] = '\0';
	if (b && (e = strstr(b + 6, "</Code>")) && (size_t)(e - b - 6) < n)
		snprintf(out, n, "%.*s", (int)(e - b - 6), b + 6);
}

/* The one place an HTTP status or a curl error becomes an errno. */
static int http_errno(CURLcode cc, long status, const char *code)
{
	switch (cc) {
	case CURLE_OK:
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return -EAGAIN;
	default:
		return -EIO;
	}
	if (status >= 200 && status < 300)
		return 0;
	if (strcmp(code, "SlowDown") == 0 ||
	    strcmp(code, "RequestTimeout") == 0)
		return -EAGAIN;
	switch (status) {
	case 403:
	case 401:
		return -EACCES;
	case 404:
		return -ENOENT;
	case 408:
	case 429:
	case 500:
	case 502:
	case 503:
	case 504:
		return -EAGAIN;
	default:
		return status >= 400 && status < 500 ? -EINVAL : -EIO;
	}
}

static int http_do(struct s3_store *st, struct http_req *r, char *err,
		   size_t errlen)
{
	char date[17], *ekey = NULL, *uri = NULL, *url = NULL, *auth = NULL;
	char h_host[512], h_sha[128], h_date[64], *h_token = NULL;
	char h_sse[64], h_kms[600], cerr[CURL_ERROR_SIZE] = "";
	char code[128] = "";
	struct curl_slist *hl = NULL;
	int ret = -ENOMEM;
	time_t now = time(NULL);
	struct tm tm;
	struct creds *cr = creds_get(st);

	if (!cr)
		goto out_free;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &tm);
	ekey = s3_uri_encode(r->key ? r->key : "", true);
	if (!ekey)
		goto out_free;
	if (asprintf(&uri, "%s/%s", st->prefix, ekey) < 0) {
		uri = NULL;
		goto out_free;
	}
	if (asprintf(&url, "%s%s%s%s", st->base, uri, r->query ? "?" : "",
		     r->query ? r->query : "") < 0) {
		url = NULL;
		goto out_free;
	}
	snprintf(h_host, sizeof(h_host), "host:%s", st->host);
	snprintf(h_sha, sizeof(h_sha), "x-amz-content-sha256:%s",
		 r->payload_hash);
	snprintf(h_date, sizeof(h_date), "x-amz-date:%s", date);
	if (cr->token &&
	    asprintf(&h_token, "x-amz-security-token:%s", cr->token) < 0) {
		h_token = NULL;
		goto out_free;
	}
	/* signed headers, sorted by name; SSE applies to what is written */
	bool put = strcmp(r->method, "PUT") == 0;
	bool post = strcmp(r->method, "POST") == 0;
	const char *headers[6];
	size_t nh = 0;
	headers[nh++] = h_host;
	headers[nh++] = h_sha;
	headers[nh++] = h_date;
	if (h_token)
		headers[nh++] = h_token;
	if (r->sse && st->sse) {
		snprintf(h_sse, sizeof(h_sse),
			 "x-amz-server-side-encryption:%s", st->sse);
		headers[nh++] = h_sse;
	}
	if (r->sse && st->sse_kms) {
		snprintf(h_kms, sizeof(h_kms),
			 "x-amz-server-side-encryption-aws-kms-key-id:%s",
			 st->sse_kms);
		headers[nh++] = h_kms;
	}
	struct s3_sigv4 sig = {
	    .method = r->method,
	    .uri = uri,
	    .query = r->query ? r->query : "",
	    .headers = headers,
	    .n_headers = nh,
	    .payload_hash = r->payload_hash,
	    .region = st->region,
	    .service = "s3",
	    .now = now,
	    .access_key_id = cr->key_id,
	    .secret_access_key = cr->secret,
	};
	char *a = s3_sigv4_authorization(&sig);
	if (!a || asprintf(&auth, "Authorization: %s", a) < 0)
		auth = NULL;
	free(a);
	if (!auth)
		goto out_free;

	char hv[600];
	snprintf(hv, sizeof(hv), "Host: %s", st->host);
	hl = curl_slist_append(hl, hv);
	snprintf(hv, sizeof(hv), "x-amz-content-sha256: %s", r->payload_hash);
	hl = curl_slist_append(hl, hv);
	snprintf(hv, sizeof(hv), "x-amz-date: %s", date);
	hl = curl_slist_append(hl, hv);
	if (h_token) {
		char *t = NULL;
		if (asprintf(&t, "x-amz-security-token: %s", cr->token) >= 0) {
			hl = curl_slist_append(hl, t);
			OPENSSL_cleanse(t, strlen(t));
			free(t);
		}
	}
	for (size_t i = h_token ? 4 : 3; i < nh; i++) {
		/* "name:value" as signed, sent as "name: value" */
		const char *colon = strchr(headers[i], ':');
		snprintf(hv, sizeof(hv), "%.*s: %s", (int)(colon - headers[i]),
			 headers[i], colon + 1);
		hl = curl_slist_append(hl, hv);
	}
	hl = curl_slist_append(hl, auth);
	hl = curl_slist_append(hl, "Expect:");
	if (r->content_type) {
		snprintf(hv, sizeof(hv), "Content-Type: %s", r->content_type);
		hl = curl_slist_append(hl, hv);
	}
	if (r->ranged) {
		snprintf(hv, sizeof(hv), "Range: bytes=%llu-%llu",
			 (unsigned long long)r->range_off,
			 (unsigned long long)(r->range_off + r->out_cap - 1));
		hl = curl_slist_append(hl, hv);
	}
	if (r->check_md5) {
		unsigned char b64[32];
		EVP_EncodeBlock(b64, r->md5, 16);
		snprintf(hv, sizeof(hv), "Content-MD5: %s", b64);
		hl = curl_slist_append(hl, hv);
	}
	if (!hl)
		goto out_free;

	r->curl = take_handle(st);
	if (!r->curl)
		goto out_free;
	CURL *c = r->curl;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT,
			 st->timeout_s < 10 ? st->timeout_s : 10L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, st->timeout_s);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	if (st->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, st->ca_file);
	if (st->insecure) {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (put) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, read_body);
		curl_easy_setopt(c, CURLOPT_READDATA, r);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, r->body_len);
	} else if (post) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS,
				 r->body ? (const void *)r->body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, r->body_len);
	} else if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
	}
	CURLcode cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	error_code(r->errbody, code, sizeof(code));
	ret = http_errno(cc, r->status, code);
	if (!ret && r->out_err)
		ret = -r->out_err;
	char md5[33] = "";
	if (r->check_md5)
		s3_hex(r->md5, 16, md5);
	if (ret && cc != CURLE_OK) { /* curl's detail, e.g. which check */
		snprintf(err, errlen, "%s of '%s' failed: %s%s%s%s", r->method,
			 r->key ? r->key : st->bucket, curl_easy_strerror(cc),
			 cerr[0] ? " (" : "", cerr, cerr[0] ? ")" : "");
	} else if (ret) {
		snprintf(err, errlen, "%s of '%s' failed: HTTP %ld%s%s",
			 r->method, r->key ? r->key : st->bucket, r->status,
			 *code ? " " : "", code);
	} else if (r->check_md5 && strcmp(r->etag, md5) &&
		   !(st->sse && !strcmp(st->sse, "aws:kms"))) {
		/* (with SSE-KMS the ETag is not the MD5; S3 still checks
		 * Content-MD5 and the signed SHA-256) */
		snprintf(err, errlen,
			 "PUT of '%s': the store's ETag '%s' is not the MD5 %s "
			 "of what was sent",
			 r->key, r->etag, md5);
		ret = -EIO; /* stored wrong: it is sent again */
	}
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
	give_handle(st, c);
out_free:
	if (ret == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	curl_slist_free_all(hl);
	if (auth)
		OPENSSL_cleanse(auth, strlen(auth));
	free(auth);
	if (h_token)
		OPENSSL_cleanse(h_token, strlen(h_token));
	free(h_token);
	free(ekey);
	free(uri);
	free(url);
	creds_put(st, cr);
	return ret;
}

static void http_req_init(struct http_req *r, const char *method,
			  const char *key)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->key = key;
	r->body_fd = -1;
	r->out_fd = -1;
	/* the SHA-256 of an empty body */
	r->payload_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca49"
			  "5991b7852b855";
}

/* The hex SHA-256 (for the signature) and, when md5 is given, the MD5
 * (for Content-MD5 and the ETag check) of len bytes of fd from off (len
 * -1: to its end), in one pass. */
static int digest_range(int fd, off_t off, int64_t len, char sha[65],
			unsigned char md5[16])
{
	unsigned char md[32];
	unsigned int n = 0;
	char buf[1 << 16];
	int ret = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new(), *m5 = md5 ? EVP_MD_CTX_new() : NULL;
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
	    (md5 && (!m5 || !EVP_DigestInit_ex(m5, EVP_md5(), NULL)))) {
		EVP_MD_CTX_free(ctx);
		EVP_MD_CTX_free(m5);
		return -ENOMEM;
	}
	for (;;) {
		size_t want = sizeof(buf);
		if (len >= 0 && (int64_t)want > len)
			want = (size_t)len;
		ssize_t got = want ? pread(fd, buf, want, off) : 0;
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			ret = -errno;
			break;
		}
		if (got == 0)
			break;
		off += got;
		if (len >= 0)
			len -= got;
		EVP_DigestUpdate(ctx, buf, (size_t)got);
		if (m5)
			EVP_DigestUpdate(m5, buf, (size_t)got);
	}
	EVP_DigestFinal_ex(ctx, md, &n);
	EVP_MD_CTX_free(ctx);
	s3_hex(md, 32, sha);
	if (m5) {
		EVP_DigestFinal_ex(m5, md5, &n);
		EVP_MD_CTX_free(m5);
	}
	return ret;
}

int s3_sha256_file(const char *path, char out[65])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int ret = digest_range(fd, 0, -1, out, NULL);
	close(fd);
	return ret;
}

/* ---- the interface ---- */

int s3_check(struct s3_store *st, char *err, size_t errlen)
{
	if (st->is_file) {
		if (access(st->root, W_OK | X_OK)) {
			snprintf(err, errlen, "store '%s' is not writable: %s",
				 st->root, strerror(errno));
			return -errno;
		}
		return 0;
	}
	struct http_req r;
	http_req_init(&r, "HEAD", NULL);
	return http_do(st, &r, err, errlen);
}

/* The text of the first <name> element of xml into out ("" if none). */
static void xml_value(const char *xml, const char *name, char *out, size_t n)
{
	char open[64], close[64];
	snprintf(open, sizeof(open), "<%s>", name);
	snprintf(close, sizeof(close), "</%s>", name);
	const char *b = strstr(xml, open), *e;
	out[0] = '\0';
	if (b && (e = strstr(b += strlen(open), close)) && (size_t)(e - b) < n)
		snprintf(out, n, "%.*s", (int)(e - b), b);
}

/* AbortMultipartUpload, so the parts stored so far are not kept (and
 * billed); best effort: a failed abort is what the bucket's lifecycle
 * rule for incomplete uploads is for. */
static void abort_multipart(struct s3_store *st, const char *key,
			    const char *query_id)
{
	char q[600], ignored[256];
	struct http_req r;
	snprintf(q, sizeof(q), "uploadId=%s", query_id);
	http_req_init(&r, "DELETE", key);
	r.query = q;
	http_do(st, &r, ignored, sizeof(ignored));
}

/* One part, up to three tries (a part is cheap to send again; the whole
 * upload is retried later by the caller's queue). */
static int put_part(struct s3_store *st, const char *key, int n,
		    const char *query_id, int fd, const unsigned char *buf,
		    uint64_t off, uint64_t len, unsigned char md5[16],
		    char *err, size_t errlen)
{
	char q[700], sha[65];
	struct http_req r;
	int ret = 0;
	snprintf(q, sizeof(q), "partNumber=%d&uploadId=%s", n, query_id);
	http_req_init(&r, "PUT", key);
	if (fd >= 0) {
		ret = digest_range(fd, (off_t)off, (int64_t)len, sha, r.md5);
		if (ret) {
			snprintf(err, errlen, "cannot read part %d: %s", n,
				 strerror(-ret));
			return ret;
		}
	} else {
		s3_sha256_hex(buf + off, len, sha);
		EVP_Digest(buf + off, len, r.md5, NULL, EVP_md5(), NULL);
	}
	memcpy(md5, r.md5, 16);
	for (int attempt = 0; attempt < 3; attempt++) {
		http_req_init(&r, "PUT", key);
		memcpy(r.md5, md5, 16);
		r.query = q;
		r.payload_hash = sha;
		r.check_md5 = true;
		r.body_fd = fd;
		r.body_off = (curl_off_t)off;
		r.body = fd >= 0 ? NULL : buf + off;
		r.body_len = (curl_off_t)len;
		ret = http_do(st, &r, err, errlen);
		if (ret != -EAGAIN && ret != -EIO)
			break;
	}
	return ret;
}

/* Some S3-compatible stores (s3rver among them) answer a multipart
 * object's ETag with the MD5 of the whole object, not of its parts. */
static bool whole_md5_is(int fd, const unsigned char *buf, uint64_t size,
			 const char *etag)
{
	unsigned char md5[16];
	char sha[65], h[33];
	if (fd >= 0 ? digest_range(fd, 0, (int64_t)size, sha, md5) != 0
		    : !EVP_Digest(buf, size, md5, NULL, EVP_md5(), NULL))
		return false;
	s3_hex(md5, 16, h);
	return !strncmp(etag, h, 32);
}

/* An object over multipart_threshold, in part_size parts read from fd (or
 * buf) as they are sent, so memory does not grow with the object. */
static int put_multipart(struct s3_store *st, const char *key, int fd,
			 const unsigned char *buf, uint64_t size,
			 const char *content_type, char *err, size_t errlen)
{
	char id[512] = "", *qid = NULL, *xml = NULL, want[48], got[64];
	uint64_t n_parts = (size + st->part_size - 1) / st->part_size;
	unsigned char(*md5)[16] = calloc(n_parts ? n_parts : 1, 16);
	struct http_req r;
	int ret = -ENOMEM;
	if (!md5)
		goto out;
	if (n_parts > 10000) {
		snprintf(err, errlen,
			 "'%s' needs %llu parts, over S3's 10000: raise "
			 "part_size",
			 key, (unsigned long long)n_parts);
		ret = -EFBIG;
		goto out;
	}
	http_req_init(&r, "POST", key);
	r.query = "uploads=";
	r.content_type = content_type;
	r.sse = true;
	ret = http_do(st, &r, err, errlen);
	if (ret)
		goto out;
	xml_value(r.errbody, "UploadId", id, sizeof(id));
	if (!id[0] || !(qid = s3_uri_encode(id, false))) {
		snprintf(err, errlen, "no UploadId for '%s'", key);
		ret = -EIO;
		goto out;
	}
	size_t cap = 128 + n_parts * 96, len = 0;
	if (!(xml = malloc(cap))) {
		ret = -ENOMEM;
		goto out_abort;
	}
	len += (size_t)snprintf(xml, cap, "<CompleteMultipartUpload>");
	EVP_MD_CTX *all = EVP_MD_CTX_new();
	if (!all || !EVP_DigestInit_ex(all, EVP_md5(), NULL)) {
		EVP_MD_CTX_free(all);
		ret = -ENOMEM;
		goto out_abort;
	}
	for (uint64_t i = 0; i < n_parts && !ret; i++) {
		uint64_t off = i * st->part_size;
		uint64_t plen =
		    size - off < st->part_size ? size - off : st->part_size;
		ret = put_part(st, key, (int)i + 1, qid, fd, buf, off, plen,
			       md5[i], err, errlen);
		if (ret)
			break;
		char h[33];
		s3_hex(md5[i], 16, h);
		EVP_DigestUpdate(all, md5[i], 16);
		len += (size_t)snprintf(xml + len, cap - len,
					"<Part><PartNumber>%llu</PartNumber>"
					"<ETag>\"%s\"</ETag></Part>",
					(unsigned long long)i + 1, h);
	}
	unsigned char whole[16];
	EVP_DigestFinal_ex(all, whole, NULL);
	EVP_MD_CTX_free(all);
	if (ret)
		goto out_abort;
	len += (size_t)snprintf(xml + len, cap - len,
				"</CompleteMultipartUpload>");
	char q[600];
	snprintf(q, sizeof(q), "uploadId=%s", qid);
	http_req_init(&r, "POST", key);
	r.query = q;
	r.content_type = "application/xml";
	r.body = (const unsigned char *)xml;
	r.body_len = (curl_off_t)len;
	char sha[65];
	s3_sha256_hex(xml, len, sha);
	r.payload_hash = sha;
	ret = http_do(st, &r, err, errlen);
	if (!ret && strstr(r.errbody, "<Error>")) { /* a 200 can say so */
		char code[128];
		error_code(r.errbody, code, sizeof(code));
		snprintf(err, errlen, "completing '%s' failed: %s", key, code);
		ret = -EAGAIN;
	}
	if (ret)
		goto out_abort;
	/* S3's ETag of a multipart object: the MD5 of the parts' MD5s, a
	 * dash and their number */
	char hw[33];
	s3_hex(whole, 16, hw);
	snprintf(want, sizeof(want), "%s-%llu", hw,
		 (unsigned long long)n_parts);
	xml_value(r.errbody, "ETag", got, sizeof(got));
	char *g = got;
	while (*g == '"' || *g == '&') { /* "..." or &quot;...&quot; */
		if (!strncmp(g, "&quot;", 6))
			g += 6;
		else
			g++;
	}
	if (strncmp(g, want, strlen(want)) && !whole_md5_is(fd, buf, size, g) &&
	    !(st->sse && !strcmp(st->sse, "aws:kms"))) {
		snprintf(
		    err, errlen,
		    "PUT of '%s': the store's ETag '%s' is neither %s, the "
		    "MD5 of the parts sent, nor the MD5 of the object",
		    key, got, want);
		ret = -EIO;
		goto out; /* complete: nothing to abort; sent again later */
	}
	goto out;
out_abort:
	abort_multipart(st, key, qid);
out:
	free(xml);
	free(qid);
	free(md5);
	return ret;
}

int s3_put_buf(struct s3_store *st, const char *key, const void *buf,
	       size_t len, const char *content_type, char *err, size_t errlen)
{
	char path[PATH_MAX], hash[65];
	int ret;
	if (!key_ok(key)) {
		snprintf(err, errlen, "refused key '%s'", key);
		return -EINVAL;
	}
	if (st->is_file) {
		struct buf_arg b = {buf, len};
		ret = file_path(st, key, path, sizeof(path));
		if (!ret)
			ret = write_atomic(path, fill_buf, &b);
		if (ret)
			snprintf(err, errlen, "store of '%s' failed: %s", key,
				 strerror(-ret));
		return ret;
	}
	struct http_req r;
	http_req_init(&r, "PUT", key);
	s3_sha256_hex(buf, len, hash);
	if (len > st->multipart_threshold)
		return put_multipart(st, key, -1, buf, len, content_type, err,
				     errlen);
	EVP_Digest(buf, len, r.md5, NULL, EVP_md5(), NULL);
	r.check_md5 = true;
	r.sse = true;
	r.payload_hash = hash;
	r.content_type = content_type;
	r.body = buf;
	r.body_len = (curl_off_t)len;
	return http_do(st, &r, err, errlen);
}

int s3_put_file(struct s3_store *st, const char *key, const char *path,
		const char *content_type, char *err, size_t errlen)
{
	char dest[PATH_MAX], hash[65];
	struct stat sb;
	int ret, fd;
	if (!key_ok(key)) {
		snprintf(err, errlen, "refused key '%s'", key);
		return -EINVAL;
	}
	if (st->is_file) {
		ret = file_path(st, key, dest, sizeof(dest));
		if (!ret)
			ret = copy_file(path, dest);
		if (ret)
			snprintf(err, errlen, "store of '%s' failed: %s", key,
				 strerror(-ret));
		return ret;
	}
	struct http_req r;
	http_req_init(&r, "PUT", key);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb)) {
		ret = -errno;
		snprintf(err, errlen, "cannot read '%s': %s", path,
			 strerror(errno));
		goto out_close;
	}
	if ((uint64_t)sb.st_size > st->multipart_threshold) {
		ret = put_multipart(st, key, fd, NULL, (uint64_t)sb.st_size,
				    content_type, err, errlen);
		goto out_close;
	}
	ret = digest_range(fd, 0, -1, hash, r.md5);
	if (ret) {
		snprintf(err, errlen, "cannot read '%s': %s", path,
			 strerror(-ret));
		goto out_close;
	}
	r.payload_hash = hash;
	r.content_type = content_type;
	r.check_md5 = true;
	r.sse = true;
	r.body_fd = fd;
	r.body_len = (curl_off_t)sb.st_size;
	ret = http_do(st, &r, err, errlen);
out_close:
	if (fd >= 0)
		close(fd);
	return ret;
}

/* file://: the object key opened to read, or -errno with err set. */
static int open_object(struct s3_store *st, const char *key, char *err,
		       size_t errlen)
{
	char src[PATH_MAX];
	int ret = file_path(st, key, src, sizeof(src));
	int fd = ret ? -1 : open(src, O_RDONLY | O_CLOEXEC);
	if (!ret && fd < 0)
		ret = -errno;
	if (ret)
		snprintf(err, errlen, "GET of '%s' failed: %s", key,
			 strerror(-ret));
	return ret ? ret : fd;
}

int s3_get_fd(struct s3_store *st, const char *key, int fd, char *err,
	      size_t errlen)
{
	int ret;
	if (!key_ok(key)) {
		snprintf(err, errlen, "refused key '%s'", key);
		return -EINVAL;
	}
	if (st->is_file) {
		int in = open_object(st, key, err, errlen);
		if (in < 0)
			return in;
		ret = fill_copy(fd, &in);
		close(in);
		if (ret)
			snprintf(err, errlen, "GET of '%s' failed: %s", key,
				 strerror(-ret));
		return ret;
	}
	struct http_req r;
	http_req_init(&r, "GET", key);
	r.out_fd = fd;
	return http_do(st, &r, err, errlen);
}

struct get_arg {
	struct s3_store *st;
	const char *key;
	char *err;
	size_t errlen;
};

static int fill_get(int fd, void *arg)
{
	struct get_arg *g = arg;
	return s3_get_fd(g->st, g->key, fd, g->err, g->errlen);
}

int s3_get_file(struct s3_store *st, const char *key, const char *dest,
		char *err, size_t errlen)
{
	struct get_arg g = {st, key, err, errlen};
	return write_atomic(dest, fill_get, &g);
}

int s3_get_range(struct s3_store *st, const char *key, uint64_t off, size_t len,
		 void *buf, size_t *got, char *err, size_t errlen)
{
	int ret;
	*got = 0;
	if (!key_ok(key)) {
		snprintf(err, errlen, "refused key '%s'", key);
		return -EINVAL;
	}
	if (len == 0)
		return 0;
	if (st->is_file) {
		int fd = open_object(st, key, err, errlen);
		if (fd < 0)
			return fd;
		ret = 0;
		while (!ret && *got < len) {
			ssize_t n = pread(fd, (char *)buf + *got, len - *got,
					  (off_t)(off + *got));
			if (n < 0 && errno != EINTR)
				ret = -errno;
			else if (n == 0)
				break;
			else if (n > 0)
				*got += (size_t)n;
		}
		close(fd);
		if (ret)
			snprintf(err, errlen, "GET of '%s' failed: %s", key,
				 strerror(-ret));
		return ret;
	}
	struct http_req r;
	http_req_init(&r, "GET", key);
	r.ranged = true;
	r.range_off = off;
	r.out_buf = buf;
	r.out_cap = len;
	ret = http_do(st, &r, err, errlen);
	if (ret == -EINVAL && r.status == 416)
		return 0; /* from the object's end on: nothing */
	if (!ret)
		*got = r.out_len;
	return ret;
}

int s3_delete(struct s3_store *st, const char *key, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int ret;
	if (!key_ok(key)) {
		snprintf(err, errlen, "refused key '%s'", key);
		return -EINVAL;
	}
	if (st->is_file) {
		ret = file_path(st, key, path, sizeof(path));
		if (!ret && unlink(path) && errno != ENOENT)
			ret = -errno;
		if (ret)
			snprintf(err, errlen, "DELETE of '%s' failed: %s", key,
				 strerror(-ret));
		return ret;
	}
	struct http_req r;
	http_req_init(&r, "DELETE", key);
	ret = http_do(st, &r, err, errlen);
	return ret == -ENOENT ? 0 : ret;
}

char *s3_presign_url(struct s3_store *st, const char *key, int expires,
		     time_t now)
{
	char *out = NULL, *ekey = NULL, *uri = NULL, *params = NULL,
	     *query = NULL, *sig = NULL, h_host[512];
	if (!key_ok(key))
		return NULL;
	if (st->is_file) {
		if (asprintf(&out, "file://%s/%s", st->root, key) < 0)
			out = NULL;
		return out;
	}
	struct creds *cr = creds_get(st);
	snprintf(h_host, sizeof(h_host), "host:%s", st->host);
	const char *headers[1] = {h_host};
	ekey = s3_uri_encode(key, true);
	if (!cr || !ekey || asprintf(&uri, "%s/%s", st->prefix, ekey) < 0) {
		uri = NULL;
		goto out_free;
	}
	struct s3_sigv4 req = {
	    .method = "GET",
	    .uri = uri,
	    .headers = headers,
	    .n_headers = 1,
	    .payload_hash = "UNSIGNED-PAYLOAD",
	    .region = st->region,
	    .service = "s3",
	    .now = now,
	    .access_key_id = cr->key_id,
	    .secret_access_key = cr->secret,
	};
	params = s3_sigv4_presign_params(&req, expires, cr->token);
	query = params ? s3_sigv4_canonical_query(params) : NULL;
	if (!query)
		goto out_free;
	req.query = query;
	sig = s3_sigv4_signature(&req);
	if (sig && asprintf(&out, "%s%s?%s&X-Amz-Signature=%s", st->base, uri,
			    query, sig) < 0)
		out = NULL;
out_free:
	creds_put(st, cr);
	free(ekey);
	free(uri);
	free(params);
	free(query);
	free(sig);
	return out;
}
