/* bucket.c - the S3 store: its endpoint, credentials, TLS and encryption
 * settings, and each object operation as S3 requests (http.c). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "s3/internal.h"

static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static int global_refs; /* guarded by global_lock */

/* ---- credentials ---- */

static void creds_free(struct s3_creds *c)
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

struct s3_creds *s3_creds_get(struct s3_store *st)
{
	pthread_mutex_lock(&st->lock);
	struct s3_creds *c = st->creds;
	if (c)
		c->refs++;
	pthread_mutex_unlock(&st->lock);
	return c;
}

void s3_creds_put(struct s3_store *st, struct s3_creds *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&st->lock);
	bool last = --c->refs == 0;
	pthread_mutex_unlock(&st->lock);
	if (last)
		creds_free(c);
}

static char *dup_or_env(const char *v, const char *env)
{
	if (v && *v)
		return strdup(v);
	const char *e = getenv(env);
	return e && *e ? strdup(e) : NULL;
}

static int bucket_set_credentials(struct s3_store *st, const char *key_id,
				  const char *secret, const char *token)
{
	struct s3_creds *c = calloc(1, sizeof(*c));
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
	struct s3_creds *old = st->creds;
	st->creds = c;
	pthread_mutex_unlock(&st->lock);
	s3_creds_put(st, old);
	return 0;
}

/* ---- open and release ---- */

/* The endpoint, the bucket's place in it, the credentials, and libcurl. */
static int open_endpoint(struct s3_store *st, const struct s3_config *cfg,
			 const char *bucket, char *err, size_t errlen)
{
	const char *region =
	    cfg->region && *cfg->region ? cfg->region : "us-east-1";
	st->region = strdup(region);
	st->bucket = strdup(bucket);
	int ret = bucket_set_credentials(
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

/* Server-side encryption, the TLS checks, the timeout and the parts. */
static int open_settings(struct s3_store *st, const struct s3_config *cfg,
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
	    dup_opt(&st->ca_file, cfg->ca_file)) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int bucket_open(struct s3_store *st, const struct s3_config *cfg,
		       char *err, size_t errlen)
{
	const char *bucket = cfg->url + 5;
	size_t n = strcspn(bucket, "/");
	if (n == 0 || bucket[n]) {
		snprintf(err, errlen, "store url '%s' must be s3://bucket",
			 cfg->url);
		return -EINVAL;
	}
	int ret = open_endpoint(st, cfg, bucket, err, errlen);
	if (ret == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	return ret ? ret : open_settings(st, cfg, err, errlen);
}

static void bucket_release(struct s3_store *st)
{
	for (int i = 0; i < st->n_pool; i++)
		curl_easy_cleanup(st->pool[i]);
	s3_creds_put(st, st->creds);
	free(st->base);
	free(st->host);
	free(st->prefix);
	free(st->region);
	free(st->sse);
	free(st->sse_kms);
	free(st->ca_file);
	if (st->curl_ref) {
		pthread_mutex_lock(&global_lock);
		if (--global_refs == 0)
			curl_global_cleanup();
		pthread_mutex_unlock(&global_lock);
	}
}

/* ---- objects ---- */

/* A single PUT of r's body, whose SHA-256 is sha and MD5 r->md5. */
void s3_unencrypted(struct s3_store *st, const char *key)
{
	char ignored[256];
	struct http_req r;
	s3_http_init(&r, "DELETE", key);
	s3_http_do(st, &r, ignored, sizeof(ignored));
}

static int put(struct s3_store *st, struct http_req *r, const char *sha,
	       const char *content_type, char *err, size_t errlen)
{
	r->payload_hash = sha;
	r->content_type = content_type;
	r->check_md5 = true;
	r->sse = true;
	r->check_sse = true;
	int ret = s3_http_do(st, r, err, errlen);
	if (ret == -EPROTO)
		s3_unencrypted(st, r->key);
	return ret;
}

static int bucket_put_buf(struct s3_store *st, const char *key, const void *buf,
			  size_t len, const char *content_type, char *err,
			  size_t errlen)
{
	struct http_req r;
	struct s3_digest d;
	int ret = s3_digest_buf(st, buf, len, &d);
	if (ret) {
		snprintf(err, errlen, "cannot hash '%s': %s", key,
			 strerror(-ret));
		return ret;
	}
	if (d.n_parts) {
		ret = s3_put_multipart(st, key, -1, buf, &d, content_type, err,
				       errlen);
	} else {
		s3_http_init(&r, "PUT", key);
		memcpy(r.md5, d.md5, 16);
		r.body = buf;
		r.body_len = (curl_off_t)len;
		ret = put(st, &r, d.sha256, content_type, err, errlen);
	}
	s3_digest_release(&d);
	return ret;
}

static int bucket_put_fd(struct s3_store *st, const char *key, int fd,
			 const struct s3_digest *d, const char *content_type,
			 char *err, size_t errlen)
{
	struct http_req r;
	if (d->n_parts)
		return s3_put_multipart(st, key, fd, NULL, d, content_type, err,
					errlen);
	s3_http_init(&r, "PUT", key);
	memcpy(r.md5, d->md5, 16);
	r.body_fd = fd;
	r.body_len = (curl_off_t)d->size;
	return put(st, &r, d->sha256, content_type, err, errlen);
}

static int bucket_ping(struct s3_store *st, char *err, size_t errlen)
{
	struct http_req r;
	s3_http_init(&r, "HEAD", NULL);
	return s3_http_do(st, &r, err, errlen);
}

static int bucket_check(struct s3_store *st, char *err, size_t errlen)
{
	int ret = bucket_ping(st, err, errlen);
	if (ret || !st->sse)
		return ret;
	/* encryption asked for: a probe object shows the store applies it,
	 * before any patient image is written */
	char key[64], rnd[9];
	unsigned char b[4];
	if (getentropy(b, sizeof(b)))
		memset(b, 0, sizeof(b));
	s3_hex(b, sizeof(b), rnd);
	snprintf(key, sizeof(key), "thumbfs-probe/sse-%s", rnd);
	ret = bucket_put_buf(st, key, "probe", 5, "text/plain", err, errlen);
	if (ret == 0)
		s3_unencrypted(st, key); /* (the probe's job is done) */
	return ret;
}

static int bucket_get_fd(struct s3_store *st, const char *key, int fd,
			 char *err, size_t errlen)
{
	struct http_req r;
	s3_http_init(&r, "GET", key);
	r.out_fd = fd;
	return s3_http_do(st, &r, err, errlen);
}

static int bucket_get_range(struct s3_store *st, const char *key, uint64_t off,
			    size_t len, void *buf, size_t *got, char *err,
			    size_t errlen)
{
	struct http_req r;
	s3_http_init(&r, "GET", key);
	r.ranged = true;
	r.range_off = off;
	r.out_buf = buf;
	r.out_cap = len;
	int ret = s3_http_do(st, &r, err, errlen);
	if (ret == -EINVAL && r.status == 416)
		return 0; /* from the object's end on: nothing */
	if (!ret)
		*got = r.out_len;
	return ret;
}

static int bucket_delete(struct s3_store *st, const char *key, char *err,
			 size_t errlen)
{
	struct http_req r;
	s3_http_init(&r, "DELETE", key);
	int ret = s3_http_do(st, &r, err, errlen);
	return ret == -ENOENT ? 0 : ret;
}

static int bucket_copy(struct s3_store *st, const char *from, const char *to,
		       char *err, size_t errlen)
{
	struct http_req r;
	char *src = NULL, *enc = s3_uri_encode(from, true);
	int ret = -ENOMEM;
	if (enc && asprintf(&src, "/%s/%s", st->bucket, enc) < 0)
		src = NULL;
	if (src) {
		s3_http_init(&r, "PUT", to);
		r.copy_source = src;
		r.sse = true;
		r.check_sse = true;
		ret = s3_http_do(st, &r, err, errlen);
		if (ret == -EPROTO)
			s3_unencrypted(st, to);
		/* a 200 can still say it failed, in its body */
		if (ret == 0 && strstr(r.errbody, "<Error>")) {
			char code[128];
			s3_xml_value(r.errbody, "Code", code, sizeof(code));
			snprintf(err, errlen, "copy of '%s' to '%s' failed: %s",
				 from, to, code);
			ret = -EAGAIN;
		}
	} else {
		snprintf(err, errlen, "out of memory");
	}
	free(src);
	free(enc);
	return ret;
}

static char *bucket_presign(struct s3_store *st, const char *key, int expires,
			    time_t now)
{
	char *out = NULL, *ekey = NULL, *uri = NULL, *params = NULL,
	     *query = NULL, *sig = NULL, *h_host = NULL;
	struct s3_creds *cr = s3_creds_get(st);
	ekey = s3_uri_encode(key, true);
	if (asprintf(&h_host, "host:%s", st->host) < 0)
		h_host = NULL;
	if (!cr || !ekey || !h_host ||
	    asprintf(&uri, "%s/%s", st->prefix, ekey) < 0) {
		uri = NULL;
		goto out_free;
	}
	const char *headers[1] = {h_host};
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
	s3_creds_put(st, cr);
	free(h_host);
	free(ekey);
	free(uri);
	free(params);
	free(query);
	free(sig);
	return out;
}

const struct s3_backend s3_bucket_backend = {
    .open = bucket_open,
    .release = bucket_release,
    .check = bucket_check,
    .ping = bucket_ping,
    .set_credentials = bucket_set_credentials,
    .put_fd = bucket_put_fd,
    .put_buf = bucket_put_buf,
    .get_fd = bucket_get_fd,
    .get_range = bucket_get_range,
    .delete = bucket_delete,
    .copy = bucket_copy,
    .presign = bucket_presign,
    .list = s3_bucket_list,
};
