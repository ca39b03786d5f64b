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
 * upload is retried later by the caller's queue), its digest known. */
static int put_part(struct s3_store *st, const char *key, int n,
		    const char *query_id, int fd, const unsigned char *buf,
		    uint64_t off, uint64_t len, const struct s3_part_digest *pd,
		    char *err, size_t errlen)
{
	char q[700];
	struct http_req r;
	int ret = 0;
	snprintf(q, sizeof(q), "partNumber=%d&uploadId=%s", n, query_id);
	for (int attempt = 0; attempt < 3; attempt++) {
		s3_http_init(&r, "PUT", key);
		memcpy(r.md5, pd->md5, 16);
		r.query = q;
		r.payload_hash = pd->sha256;
		r.check_md5 = true;
		r.body_fd = fd;
		r.body_off = (curl_off_t)off;
		r.body = fd >= 0 ? NULL : buf + off;
		r.body_len = (curl_off_t)len;
		ret = s3_http_do(st, &r, err, errlen);
		if (ret != -EAGAIN && ret != -EIO && ret != -EBADMSG)
			break;
	}
	return ret;
}

/* The MD5 of d's whole content is etag: some S3-compatible stores
 * (s3rver among them) answer a multipart object's ETag with it, not with
 * the MD5 of its parts' MD5s. */
static bool whole_md5_is(const struct s3_digest *d, const char *etag)
{
	char h[33];
	s3_hex(d->md5, 16, h);
	return !strncmp(etag, h, 32);
}

/* The object key as HEAD shows it has d's size and the ETag want (or
 * the MD5 of the whole): for a store whose CompleteMultipartUpload answer
 * has an empty ETag (Ceph RGW 16.2) or one that does not parse. */
static bool stored_as_sent(struct s3_store *st, const char *key,
			   const struct s3_digest *d, const char *want)
{
	char ignored[256];
	struct http_req r;
	s3_http_init(&r, "HEAD", key);
	if (s3_http_do(st, &r, ignored, sizeof(ignored)) ||
	    r.length != (int64_t)d->size)
		return false;
	return !strncmp(r.etag, want, strlen(want)) || whole_md5_is(d, r.etag);
}

int s3_put_multipart(struct s3_store *st, const char *key, int fd,
		     const unsigned char *buf, const struct s3_digest *d,
		     const char *content_type, char *err, size_t errlen)
{
	char id[512] = "", *qid = NULL, *xml = NULL, want[48], got[64];
	struct http_req r;
	int ret;
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
	size_t cap = 128 + d->n_parts * 96, len = 0;
	EVP_MD_CTX *all = EVP_MD_CTX_new();
	if (!(xml = malloc(cap)) || !all ||
	    !EVP_DigestInit_ex(all, EVP_md5(), NULL)) {
		EVP_MD_CTX_free(all);
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out_abort;
	}
	len += (size_t)snprintf(xml, cap, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < d->n_parts && !ret; i++) {
		uint64_t off = i * d->part_size;
		uint64_t plen =
		    d->size - off < d->part_size ? d->size - off : d->part_size;
		ret = put_part(st, key, (int)i + 1, qid, fd, buf, off, plen,
			       &d->parts[i], err, errlen);
		if (ret)
			break;
		char h[33];
		s3_hex(d->parts[i].md5, 16, h);
		EVP_DigestUpdate(all, d->parts[i].md5, 16);
		len += (size_t)snprintf(xml + len, cap - len,
					"<Part><PartNumber>%zu</PartNumber>"
					"<ETag>\"%s\"</ETag></Part>",
					i + 1, h);
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
	r.check_sse = true;
	ret = s3_http_do(st, &r, err, errlen);
	if (ret == -EPROTO) {
		s3_unencrypted(st, key); /* complete, and not encrypted */
		goto out;
	}
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
	snprintf(want, sizeof(want), "%s-%zu", hw, d->n_parts);
	s3_xml_value(r.errbody, "ETag", got, sizeof(got));
	char *g = got;
	while (*g == '"' || *g == '&') { /* "..." or &quot;...&quot; */
		if (!strncmp(g, "&quot;", 6))
			g += 6;
		else
			g++;
	}
	if (strncmp(g, want, strlen(want)) && !whole_md5_is(d, g) &&
	    !(st->sse && !strcmp(st->sse, "aws:kms")) &&
	    !stored_as_sent(st, key, d, want)) {
		snprintf(
		    err, errlen,
		    "PUT of '%s': the store's ETag '%s' is neither %s, the "
		    "MD5 of the parts sent, nor the MD5 of the object",
		    key, got, want);
		ret = -EBADMSG;
		goto out; /* complete: nothing to abort; sent again later */
	}
	goto out;
out_abort:
	abort_multipart(st, key, qid);
out:
	free(xml);
	free(qid);
	return ret;
}
