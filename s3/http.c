/* http.c - one signed exchange with S3: the headers (signed from the list
 * that is sent), a pooled curl handle, the body in and out, and the one
 * place an HTTP status or a curl error becomes an errno. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "s3/internal.h"

/* ---- the pool of curl handles ---- */

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

/* ---- the body and the answer ---- */

/* The value of header name in line ("Name: value\r\n") into out,
 * without quotes; false if line is another header. */
static bool header_value(const char *line, size_t len, const char *name,
			 char *out, size_t n)
{
	size_t nl = strlen(name), k = 0;
	if (len <= nl || strncasecmp(line, name, nl) || line[nl] != ':')
		return false;
	const char *v = line + nl + 1, *end = line + len;
	while (v < end && (*v == ' ' || *v == '"'))
		v++;
	while (v + k < end && v[k] != '"' && v[k] != '\r' && v[k] != '\n' &&
	       k + 1 < n)
		k++;
	memcpy(out, v, k);
	out[k] = '\0';
	return true;
}

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
	struct http_req *r = arg;
	size_t len = size * n;
	char num[32];
	if (len > 5 && !strncmp(line, "HTTP/", 5)) { /* a new answer */
		/* "HTTP/1.1 400 Bad Request": the reason after the code */
		const char *sp = memchr(line, ' ', len), *end = line + len;
		sp = sp ? memchr(sp + 1, ' ', (size_t)(end - sp - 1)) : NULL;
		size_t k = 0;
		while (sp && sp + 1 + k < end && sp[1 + k] != '\r' &&
		       sp[1 + k] != '\n' && k + 1 < sizeof(r->reason))
			k++;
		memcpy(r->reason, sp ? sp + 1 : "", k);
		r->reason[k] = '\0';
		r->sse_got[0] = r->kms_got[0] = '\0';
		r->length = -1;
	}
	header_value(line, len, "ETag", r->etag, sizeof(r->etag));
	header_value(line, len, "x-amz-server-side-encryption", r->sse_got,
		     sizeof(r->sse_got));
	header_value(line, len, "x-amz-server-side-encryption-aws-kms-key-id",
		     r->kms_got, sizeof(r->kms_got));
	if (header_value(line, len, "Content-Length", num, sizeof(num)))
		r->length = strtoll(num, NULL, 10);
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

/* curl rewinds the body to send it again (a connection that was reused
 * and dropped, a redirect): from the part's start. */
static int seek_body(void *arg, curl_off_t off, int origin)
{
	struct http_req *r = arg;
	if (origin != SEEK_SET || off < 0 || off > r->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	r->body_pos = off;
	return CURL_SEEKFUNC_OK;
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

void s3_xml_value(const char *xml, const char *name, char *out, size_t n)
{
	size_t len = strlen(name);
	const char *b = xml, *e;
	out[0] = '\0';
	while ((b = strchr(b, '<'))) {
		b++;
		if (!strncmp(b, name, len) && b[len] == '>')
			break;
	}
	if (!b)
		return;
	b += len + 1;
	for (e = strstr(b, "</"); e; e = strstr(e + 2, "</"))
		if (!strncmp(e + 2, name, len) && e[len + 2] == '>')
			break;
	if (e && (size_t)(e - b) < n)
		snprintf(out, n, "%.*s", (int)(e - b), b);
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
	case CURLE_SEND_FAIL_REWIND:
	/* an answer that is no HTTP (our URLs are always http or https, so
	 * "unsupported protocol" is curl meeting an HTTP/0.9 reply): a
	 * connection left in a bad state, tried again on a fresh one */
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EAGAIN;
	default:
		return -EIO;
	}
	if (status >= 200 && status < 300)
		return 0;
	if (strcmp(code, "SlowDown") == 0 ||
	    strcmp(code, "RequestTimeout") == 0)
		return -EAGAIN;
	/* the body the store got is not what was signed: sent again */
	if (strcmp(code, "BadDigest") == 0 ||
	    strcmp(code, "InvalidDigest") == 0 ||
	    strcmp(code, "XAmzContentSHA256Mismatch") == 0)
		return -EBADMSG;
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

/* ---- the headers ---- */

/* One header of a request: sent as "name: value", and signed as
 * "name:value" when sign is set. Names are lower case, as SigV4 wants
 * them (HTTP's names are not case-sensitive). */
struct hdr {
	const char *name;
	const char *value;
	bool sign;
};

#define HDR_MAX 12

struct hdrs {
	struct hdr v[HDR_MAX];
	size_t n;
};

static void add(struct hdrs *h, const char *name, const char *value, bool sign)
{
	if (h->n < HDR_MAX)
		h->v[h->n++] = (struct hdr){name, value, sign};
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct hdr *)a)->name,
		      ((const struct hdr *)b)->name);
}

/* Free a formatted header, which may hold a secret. */
static void wipe(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* The value of the Authorization header for r's signed headers h (sorted
 * by name), or NULL on out of memory. */
static char *sign(struct s3_store *st, const struct http_req *r,
		  const struct hdrs *h, const char *uri, time_t now,
		  const struct s3_creds *cr)
{
	const char *lines[HDR_MAX];
	char *owned[HDR_MAX] = {0}, *auth = NULL;
	size_t n = 0;
	bool ok = true;
	for (size_t i = 0; i < h->n; i++) {
		if (!h->v[i].sign)
			continue;
		if (asprintf(&owned[n], "%s:%s", h->v[i].name, h->v[i].value) <
		    0) {
			owned[n] = NULL;
			ok = false;
		}
		lines[n] = owned[n];
		n++;
	}
	struct s3_sigv4 sig = {
	    .method = r->method,
	    .uri = uri,
	    .query = r->query ? r->query : "",
	    .headers = lines,
	    .n_headers = n,
	    .payload_hash = r->payload_hash,
	    .region = st->region,
	    .service = "s3",
	    .now = now,
	    .access_key_id = cr->key_id,
	    .secret_access_key = cr->secret,
	};
	if (ok)
		auth = s3_sigv4_authorization(&sig);
	for (size_t i = 0; i < n; i++)
		wipe(owned[i]);
	return auth;
}

/* The curl list of the headers h, and Authorization: auth. */
static struct curl_slist *header_list(const struct hdrs *h, const char *auth)
{
	struct curl_slist *hl = NULL, *next;
	char *line = NULL;
	for (size_t i = 0; i <= h->n; i++) {
		const char *name = i < h->n ? h->v[i].name : "authorization";
		const char *value = i < h->n ? h->v[i].value : auth;
		if (asprintf(&line, "%s: %s", name, value) < 0)
			line = NULL;
		next = line ? curl_slist_append(hl, line) : NULL;
		wipe(line);
		if (!next)
			goto out_fail;
		hl = next;
	}
	/* no "Expect: 100-continue": one round trip less per PUT */
	if ((next = curl_slist_append(hl, "Expect:")))
		return next;
out_fail:
	curl_slist_free_all(hl);
	return NULL;
}

/* The KMS key the store answered is the one asked for: the same, or an
 * ARN that ends with it (S3 answers the key's ARN for its id). */
static bool kms_is(const char *got, const char *want)
{
	size_t g = strlen(got), w = strlen(want);
	return g >= w && !strcmp(got + g - w, want) &&
	       (g == w || got[g - w - 1] == '/');
}

/* The reason for a failed request, or for a body stored wrong. */
static int explain(struct s3_store *st, struct http_req *r, int ret,
		   CURLcode cc, const char *cerr, const char *code, char *err,
		   size_t errlen)
{
	const char *what = r->key ? r->key : st->bucket;
	char md5[33] = "";
	if (r->check_md5)
		s3_hex(r->md5, 16, md5);
	if (ret && cc != CURLE_OK) { /* curl's detail, e.g. which check */
		snprintf(err, errlen, "%s of '%s' failed: %s%s%s%s", r->method,
			 what, curl_easy_strerror(cc), cerr[0] ? " (" : "",
			 cerr, cerr[0] ? ")" : "");
	} else if (ret) {
		/* the server's code and message, or the HTTP reason */
		char msg[256];
		s3_xml_value(r->errbody, "Message", msg, sizeof(msg));
		snprintf(err, errlen, "%s of '%s' failed: HTTP %ld %s%s%s",
			 r->method, what, r->status, *code ? code : r->reason,
			 *msg ? ": " : "", msg);
	} else if (r->check_sse && st->sse && strcasecmp(r->sse_got, st->sse)) {
		snprintf(err, errlen,
			 "store did not encrypt '%s': asked for %s, it "
			 "answered %s",
			 what, st->sse, r->sse_got[0] ? r->sse_got : "none");
		ret = -EPROTO;
	} else if (r->check_sse && st->sse_kms &&
		   !kms_is(r->kms_got, st->sse_kms)) {
		snprintf(err, errlen,
			 "store did not encrypt '%s' with the KMS key %s: it "
			 "answered %s",
			 what, st->sse_kms,
			 r->kms_got[0] ? r->kms_got : "none");
		ret = -EPROTO;
	} else if (r->check_md5 && strcmp(r->etag, md5) &&
		   !(st->sse && !strcmp(st->sse, "aws:kms"))) {
		/* (with SSE-KMS the ETag is not the MD5; S3 still checks
		 * Content-MD5 and the signed SHA-256) */
		snprintf(err, errlen,
			 "PUT of '%s': the store's ETag '%s' is not the MD5 %s "
			 "of what was sent",
			 r->key, r->etag, md5);
		ret = -EBADMSG; /* stored wrong: it is sent again */
	}
	return ret;
}

static void set_method(CURL *c, struct http_req *r)
{
	if (strcmp(r->method, "PUT") == 0) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, read_body);
		curl_easy_setopt(c, CURLOPT_READDATA, r);
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, seek_body);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, r);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, r->body_len);
	} else if (strcmp(r->method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS,
				 r->body ? (const void *)r->body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, r->body_len);
	} else if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
	}
}

/* A request's whole time, however the server trickles (curl's low-speed
 * limit alone is defeated by one byte a second): timeout_s twice, and the
 * body's bytes at no less than 64 KiB/s; a GET of unknown size gets ten
 * times timeout_s. */
static long deadline_s(const struct s3_store *st, const struct http_req *r)
{
	long s = 2L * st->timeout_s;
	curl_off_t bytes = r->body_len > 0 ? r->body_len
			   : r->ranged	   ? (curl_off_t)r->out_cap
					   : -1;
	if (bytes < 0 && r->out_fd >= 0)
		return 10L * st->timeout_s;
	return s + (long)((bytes > 0 ? bytes : 0) / (64 << 10));
}

/* Send r with headers hl to url on a pooled handle: the errno. */
static int perform(struct s3_store *st, struct http_req *r, const char *url,
		   struct curl_slist *hl, char *err, size_t errlen)
{
	char cerr[CURL_ERROR_SIZE] = "", code[128] = "";
	CURL *c = r->curl = take_handle(st);
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT,
			 st->timeout_s < 10 ? st->timeout_s : 10L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, st->timeout_s);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, deadline_s(st, r));
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
	set_method(c, r);
	CURLcode cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	s3_xml_value(r->errbody, "Code", code, sizeof(code));
	int ret = http_errno(cc, r->status, code);
	if (!ret && r->out_err)
		ret = -r->out_err;
	ret = explain(st, r, ret, cc, cerr, code, err, errlen);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
	if (cc == CURLE_OK)
		give_handle(st, c);
	else /* its connection is not to be trusted again */
		curl_easy_cleanup(c);
	return ret;
}

void s3_http_init(struct http_req *r, const char *method, const char *key)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->key = key;
	r->body_fd = -1;
	r->out_fd = -1;
	r->length = -1;
	/* the SHA-256 of an empty body */
	r->payload_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca49"
			  "5991b7852b855";
}

int s3_http_do(struct s3_store *st, struct http_req *r, char *err,
	       size_t errlen)
{
	char date[17], range[64], md5[32];
	char *ekey = NULL, *uri = NULL, *url = NULL, *auth = NULL;
	struct curl_slist *hl = NULL;
	struct hdrs h = {.n = 0};
	int ret = -ENOMEM;
	time_t now = time(NULL);
	struct tm tm;
	struct s3_creds *cr = s3_creds_get(st);

	if (!cr)
		goto out_free;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &tm);
	ekey = s3_uri_encode(r->key ? r->key : "", true);
	if (!ekey || asprintf(&uri, "%s/%s", st->prefix, ekey) < 0) {
		uri = NULL;
		goto out_free;
	}
	if (asprintf(&url, "%s%s%s%s", st->base, uri, r->query ? "?" : "",
		     r->query ? r->query : "") < 0) {
		url = NULL;
		goto out_free;
	}
	add(&h, "host", st->host, true);
	add(&h, "x-amz-content-sha256", r->payload_hash, true);
	add(&h, "x-amz-date", date, true);
	if (cr->token)
		add(&h, "x-amz-security-token", cr->token, true);
	if (r->copy_source)
		add(&h, "x-amz-copy-source", r->copy_source, true);
	if (r->sse && st->sse) /* applies to what is written */
		add(&h, "x-amz-server-side-encryption", st->sse, true);
	if (r->sse && st->sse_kms)
		add(&h, "x-amz-server-side-encryption-aws-kms-key-id",
		    st->sse_kms, true);
	if (r->content_type)
		add(&h, "content-type", r->content_type, false);
	if (r->ranged) {
		snprintf(range, sizeof(range), "bytes=%llu-%llu",
			 (unsigned long long)r->range_off,
			 (unsigned long long)(r->range_off + r->out_cap - 1));
		add(&h, "range", range, false);
	}
	if (r->check_md5) {
		EVP_EncodeBlock((unsigned char *)md5, r->md5, 16);
		add(&h, "content-md5", md5, false);
	}
	qsort(h.v, h.n, sizeof(h.v[0]), by_name); /* SigV4's order */
	if (!(auth = sign(st, r, &h, uri, now, cr)) ||
	    !(hl = header_list(&h, auth)))
		goto out_free;
	ret = perform(st, r, url, hl, err, errlen);
out_free:
	if (ret == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	curl_slist_free_all(hl);
	wipe(auth);
	free(ekey);
	free(uri);
	free(url);
	s3_creds_put(st, cr);
	return ret;
}
