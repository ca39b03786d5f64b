/* multipart.c - large objects in parts: create the upload, send each part
 * from the file as it is read (three tries a part), complete it and check
 * the object's ETag, or abort it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "s3/internal.h"

/* AbortMultipartUpload, so the parts stored so far are not kept (and
 * billed); best effort: a failed abort is what the bucket's lifecycle
 * rule for incomplete uploads is for. */
static void abort_multipart(struct s3_store *st, const char *key,
			    const char *query_id)
{
	char q[600], ignored[256];
	struct http_req r;
	snprintf(q, sizeof(q), "uploadId=%s", query_id);
	s3_http_init(&r, "DELETE", key);
	r.query = q;
	s3_http_do(st, &r, ignored, sizeof(ignored));
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
	s3_http_init(&r, "PUT", key);
	if (fd >= 0) {
		ret = s3_digest_range(fd, (off_t)off, (int64_t)len, sha, r.md5);
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
		s3_http_init(&r, "PUT", key);
		memcpy(r.md5, md5, 16);
		r.query = q;
		r.payload_hash = sha;
		r.check_md5 = true;
		r.body_fd = fd;
		r.body_off = (curl_off_t)off;
		r.body = fd >= 0 ? NULL : buf + off;
		r.body_len = (curl_off_t)len;
		ret = s3_http_do(st, &r, err, errlen);
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
	if (fd >= 0 ? s3_digest_range(fd, 0, (int64_t)size, sha, md5) != 0
		    : !EVP_Digest(buf, size, md5, NULL, EVP_md5(), NULL))
		return false;
	s3_hex(md5, 16, h);
	return !strncmp(etag, h, 32);
}

/* An object over multipart_threshold, in part_size parts read from fd (or
 * buf) as they are sent, so memory does not grow with the object. */
int s3_put_multipart(struct s3_store *st, const char *key, int fd,
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
	s3_http_init(&r, "POST", key);
	r.query = "uploads=";
	r.content_type = content_type;
	r.sse = true;
	ret = s3_http_do(st, &r, err, errlen);
	if (ret)
		goto out;
	s3_xml_value(r.errbody, "UploadId", id, sizeof(id));
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
	s3_http_init(&r, "POST", key);
	r.query = q;
	r.content_type = "application/xml";
	r.body = (const unsigned char *)xml;
	r.body_len = (curl_off_t)len;
	char sha[65];
	s3_sha256_hex(xml, len, sha);
	r.payload_hash = sha;
	ret = s3_http_do(st, &r, err, errlen);
	if (!ret && strstr(r.errbody, "<Error>")) { /* a 200 can say so */
		char code[128];
		s3_xml_value(r.errbody, "Code", code, sizeof(code));
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
	s3_xml_value(r.errbody, "ETag", got, sizeof(got));
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
