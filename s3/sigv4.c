/* sigv4.c - AWS Signature Version 4, one function per step of the spec. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "s3.h"

/* printf into a new string; NULL on out of memory. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

void s3_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void s3_sha256_hex(const void *buf, size_t len, char out[65])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256(buf, len, md);
	s3_hex(md, sizeof(md), out);
}

char *s3_uri_encode(const char *s, bool keep_slash)
{
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1), *p = out;
	if (!out)
		return NULL;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		    (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' ||
		    *c == '.' || *c == '~' || (keep_slash && *c == '/')) {
			*p++ = (char)*c;
		} else {
			snprintf(p, 4, "%%%02X", *c);
			p += 3;
		}
	}
	*p = '\0';
	return out;
}

static void amz_date(time_t now, char date[17], char day[9])
{
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, 17, "%Y%m%dT%H%M%SZ", &tm);
	strftime(day, 9, "%Y%m%d", &tm);
}

/* "host;x-amz-date": the names of the headers, in order. */
static char *signed_headers(const struct s3_sigv4 *req)
{
	size_t len = 1;
	for (size_t i = 0; i < req->n_headers; i++)
		len += strlen(req->headers[i]) + 1;
	char *out = malloc(len), *p = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < req->n_headers; i++) {
		const char *colon = strchr(req->headers[i], ':');
		size_t n = colon ? (size_t)(colon - req->headers[i])
				 : strlen(req->headers[i]);
		if (i)
			*p++ = ';';
		memcpy(p, req->headers[i], n);
		p += n;
	}
	*p = '\0';
	return out;
}

char *s3_sigv4_canonical_request(const struct s3_sigv4 *req)
{
	size_t len = 1;
	for (size_t i = 0; i < req->n_headers; i++)
		len += strlen(req->headers[i]) + 1;
	char *hdrs = malloc(len), *p = hdrs;
	char *names = signed_headers(req), *out = NULL;
	if (!hdrs || !names)
		goto out_free;
	for (size_t i = 0; i < req->n_headers; i++) {
		size_t n = strlen(req->headers[i]);
		memcpy(p, req->headers[i], n);
		p += n;
		*p++ = '\n';
	}
	*p = '\0';
	out = fmt("%s\n%s\n%s\n%s\n%s\n%s", req->method, req->uri, req->query,
		  hdrs, names, req->payload_hash);
out_free:
	free(hdrs);
	free(names);
	return out;
}

char *s3_sigv4_string_to_sign(const struct s3_sigv4 *req)
{
	char date[17], day[9], hash[65];
	char *creq = s3_sigv4_canonical_request(req);
	if (!creq)
		return NULL;
	amz_date(req->now, date, day);
	s3_sha256_hex(creq, strlen(creq), hash);
	free(creq);
	return fmt("AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", date, day,
		   req->region, req->service, hash);
}

static void hmac(const void *key, size_t klen, const char *msg,
		 unsigned char out[32])
{
	unsigned int n = 32;
	HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg,
	     strlen(msg), out, &n);
}

char *s3_sigv4_signature(const struct s3_sigv4 *req)
{
	char date[17], day[9], out[65];
	unsigned char k[32];
	char *sts = s3_sigv4_string_to_sign(req);
	char *secret = fmt("AWS4%s", req->secret_access_key);
	char *ret = NULL;
	if (!sts || !secret)
		goto out_free;
	amz_date(req->now, date, day);
	/* The signing key: date, region, service, "aws4_request". */
	hmac(secret, strlen(secret), day, k);
	hmac(k, 32, req->region, k);
	hmac(k, 32, req->service, k);
	hmac(k, 32, "aws4_request", k);
	hmac(k, 32, sts, k);
	s3_hex(k, 32, out);
	ret = strdup(out);
out_free:
	if (secret)
		OPENSSL_cleanse(secret, strlen(secret));
	free(secret);
	free(sts);
	return ret;
}

char *s3_sigv4_authorization(const struct s3_sigv4 *req)
{
	char date[17], day[9];
	char *sig = s3_sigv4_signature(req);
	char *names = signed_headers(req), *ret = NULL;
	if (sig && names) {
		amz_date(req->now, date, day);
		ret =
		    fmt("AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, "
			"SignedHeaders=%s, Signature=%s",
			req->access_key_id, day, req->region, req->service,
			names, sig);
	}
	free(sig);
	free(names);
	return ret;
}

char *s3_sigv4_canonical_uri(const char *path, bool normalize)
{
	size_t n = strlen(path);
	char *clean = malloc(n + 2), *out = NULL;
	if (!clean)
		return NULL;
	if (!normalize) {
		memcpy(clean, path, n + 1);
	} else {
		/* '.' and '..' resolved, empty segments dropped; a trailing
		 * slash kept */
		size_t len = 0;
		const char *p = path;
		while (*p) {
			while (*p == '/')
				p++;
			size_t seg = strcspn(p, "/");
			if (seg == 0)
				break;
			if (seg == 1 && p[0] == '.') {
				/* nothing */
			} else if (seg == 2 && p[0] == '.' && p[1] == '.') {
				while (len > 0 && clean[len - 1] != '/')
					len--;
				if (len > 0)
					len--; /* the slash before it */
			} else {
				clean[len++] = '/';
				memcpy(clean + len, p, seg);
				len += seg;
			}
			p += seg;
		}
		bool trailing = n > 0 && path[n - 1] == '/' && len > 0;
		if (len == 0 || trailing)
			clean[len++] = '/';
		clean[len] = '\0';
	}
	out = s3_uri_encode(clean, true);
	free(clean);
	return out;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode s[0..n) into a new string. */
static char *uri_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0) {
			*o++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

struct qparam {
	char *name;
	char *value;
};

static int cmp_qparam(const void *a, const void *b)
{
	const struct qparam *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->value, y->value);
}

char *s3_sigv4_canonical_query(const char *query)
{
	size_t cap = 1, n = 0, len = 1;
	for (const char *p = query; *p; p++)
		cap += *p == '&';
	struct qparam *ps = calloc(cap, sizeof(*ps));
	char *out = NULL;
	if (!ps)
		return NULL;
	for (const char *p = query; *p;) {
		size_t plen = strcspn(p, "&");
		if (plen > 0) {
			const char *eq = memchr(p, '=', plen);
			size_t nlen = eq ? (size_t)(eq - p) : plen;
			char *name = uri_decode(p, nlen);
			char *value = eq ? uri_decode(eq + 1, plen - nlen - 1)
					 : strdup("");
			ps[n].name = name ? s3_uri_encode(name, false) : NULL;
			ps[n].value =
			    value ? s3_uri_encode(value, false) : NULL;
			free(name);
			free(value);
			if (!ps[n].name || !ps[n].value) {
				n++;
				goto out_free;
			}
			len += strlen(ps[n].name) + strlen(ps[n].value) + 2;
			n++;
		}
		p += plen;
		if (*p == '&')
			p++;
	}
	qsort(ps, n, sizeof(*ps), cmp_qparam);
	out = malloc(len);
	if (out) {
		size_t off = 0;
		out[0] = '\0';
		for (size_t i = 0; i < n; i++)
			off += (size_t)snprintf(out + off, len - off, "%s%s=%s",
						i ? "&" : "", ps[i].name,
						ps[i].value);
	}
out_free:
	for (size_t i = 0; i < n; i++) {
		free(ps[i].name);
		free(ps[i].value);
	}
	free(ps);
	return out;
}

char *s3_sigv4_presign_params(const struct s3_sigv4 *req, int expires,
			      const char *token)
{
	char date[17], day[9];
	char *names = signed_headers(req), *out = NULL;
	if (!names)
		return NULL;
	amz_date(req->now, date, day);
	out = fmt("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s/%s/%s/"
		  "%s/aws4_request&X-Amz-Date=%s&X-Amz-Expires=%d%s%s"
		  "&X-Amz-SignedHeaders=%s",
		  req->access_key_id, day, req->region, req->service, date,
		  expires, token ? "&X-Amz-Security-Token=" : "",
		  token ? token : "", names);
	free(names);
	return out;
}
