/*
 * s3.h - the object store: S3 (libcurl, SigV4) or a local file:// directory,
 * behind one interface.
 *
 * Knows nothing of FUSE, of thumbnails or of the catalog. A store is safe to
 * use from several threads at once: each call borrows one of a small pool of
 * curl handles, so connections are reused. Actions return 0 or -errno and
 * write a one-line reason into err; the mapping is:
 *   -ENOENT  no such object          -EACCES  refused (403, bad credentials)
 *   -EAGAIN  transient: connection, timeout, 5xx, SlowDown; retry later
 *   -EBADMSG the store holds or got other bytes than were sent (its ETag,
 *            BadDigest, XAmzContentSHA256Mismatch): send them again
 *   -EPROTO  the store did not encrypt as [store] sse asks (the object
 *            just written is deleted)
 *   -EINVAL  the request was refused for good (another 4xx)
 *   -EIO     anything else
 * Credentials never appear in err.
 */
#ifndef S3_S3_H
#define S3_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct s3_config {
	const char *url;	       /* "file:///dir" or "s3://bucket" */
	const char *endpoint;	       /* "http://127.0.0.1:4568"; NULL: AWS */
	const char *region;	       /* "us-east-1" when NULL */
	const char *access_key_id;     /* NULL: AWS_ACCESS_KEY_ID */
	const char *secret_access_key; /* NULL: AWS_SECRET_ACCESS_KEY */
	const char *session_token;     /* NULL: AWS_SESSION_TOKEN, if set */
	bool path_style;	       /* bucket in the path, not the host */
	const char *sse;	    /* NULL/"": none; "AES256" or "aws:kms" */
	const char *sse_kms_key_id; /* aws:kms: the key; NULL: the default */
	const char *ca_file;	    /* NULL: the system's CA store */
	bool insecure_skip_verify;  /* HTTPS without checking the peer */
	int timeout_s; /* a request that moves no byte this long fails; 0: 30 */
	/* objects over multipart_threshold (0: 64 MiB) go up in parts of
	 * part_size (at least S3_PART_MIN; 0: 16 MiB), each read from the
	 * file as it is sent */
	uint64_t multipart_threshold;
	uint64_t part_size;
};

#define S3_PART_MIN (5ULL << 20) /* S3's smallest part but the last */

struct s3_store;

/* Open a store; checks the URL and, for file://, creates the directory.
 * Returns NULL with err set on failure. Free with s3_free(). */
struct s3_store *s3_open(const struct s3_config *cfg, char *err, size_t errlen);
void s3_free(struct s3_store *st);

/* Sign from now on with these credentials (NULL or "": the AWS_*
 * environment variables), as after the config is reloaded; requests under
 * way finish with the old ones. -EINVAL when there are none. */
int s3_set_credentials(struct s3_store *st, const char *key_id,
		       const char *secret, const char *token);

/* Ask the store whether the bucket is there and the credentials are good;
 * with [store] sse, store a probe object to see that the store encrypts as
 * asked (-EPROTO, "store did not encrypt", when it does not). */
int s3_check(struct s3_store *st, char *err, size_t errlen);

/* Only whether the store answers (a HEAD of the bucket). */
int s3_ping(struct s3_store *st, char *err, size_t errlen);

/* The bucket's name (for a file:// store, its URL). Owned by the store. */
const char *s3_bucket(const struct s3_store *st);

/*
 * What one pass over a content gives the store: its SHA-256 (hex: the
 * catalog's, and the signature's) and MD5 (Content-MD5, and the ETag's
 * check), and, for a content this store sends in parts (S3, over
 * multipart_threshold), each part's. So a file is read once to hash it,
 * and again only as it is sent.
 */
#define S3_PARTS_MAX 10000 /* S3's most parts of one upload */
struct s3_part_digest {
	char sha256[65];
	unsigned char md5[16];
};
struct s3_digest {
	uint64_t size;
	char sha256[65];
	unsigned char md5[16];
	uint64_t part_size; /* 0: one PUT */
	size_t n_parts;
	struct s3_part_digest *parts; /* owned: s3_digest_release() */
};

/* Read fd from its start to its end (the size fstat gives) once, into d.
 * 0, -EAGAIN (its size changed while it was read), -EFBIG (more than
 * S3_PARTS_MAX parts: raise part_size), or -errno. */
int s3_digest_fd(const struct s3_store *st, int fd, struct s3_digest *d);
int s3_digest_buf(const struct s3_store *st, const void *buf, size_t len,
		  struct s3_digest *d);
void s3_digest_release(struct s3_digest *d);

/* Store the content of fd, as d (s3_digest_fd) describes it, under key:
 * read from the file as it is sent, whatever its size. */
int s3_put_fd(struct s3_store *st, const char *key, int fd,
	      const struct s3_digest *d, const char *content_type, char *err,
	      size_t errlen);

/* Store the contents of the file at path, or of buf, under key. */
int s3_put_file(struct s3_store *st, const char *key, const char *path,
		const char *content_type, char *err, size_t errlen);
int s3_put_buf(struct s3_store *st, const char *key, const void *buf,
	       size_t len, const char *content_type, char *err, size_t errlen);

/* Fetch the object key into a new file at dest (written whole or not at
 * all: through a temporary file and a rename). */
int s3_get_file(struct s3_store *st, const char *key, const char *dest,
		char *err, size_t errlen);

/* Fetch the object key into fd, from fd's current offset on (a failure
 * may leave part of it written). */
int s3_get_fd(struct s3_store *st, const char *key, int fd, char *err,
	      size_t errlen);

/* Up to len bytes of the object key from off into buf (a ranged GET);
 * *got is how many, fewer only at the object's end (0 from there on). */
int s3_get_range(struct s3_store *st, const char *key, uint64_t off, size_t len,
		 void *buf, size_t *got, char *err, size_t errlen);

/* A presigned GET URL of key, valid for expires seconds from now (SigV4
 * query form, UNSIGNED-PAYLOAD), as the web app hands to browsers; for a
 * file:// store, the file's URL. malloc'd; NULL on a refused key or out of
 * memory. */
char *s3_presign_url(struct s3_store *st, const char *key, int expires,
		     time_t now);

/* Copy the object from to the key to (S3's CopyObject, up to 5 GiB; the
 * content type is copied, [store] sse applied). */
int s3_copy(struct s3_store *st, const char *from, const char *to, char *err,
	    size_t errlen);

/* Remove key; removing a key that is not there succeeds. */
int s3_delete(struct s3_store *st, const char *key, char *err, size_t errlen);

/* One object of a listing. */
struct s3_object {
	char key[1025];
	uint64_t size;
};

/* fn(obj, arg) for every object whose key starts with prefix (S3's
 * ListObjectsV2, a page of 1,000 at a time; a file:// store walks its
 * directory), in no promised order; a non-zero return from fn stops it and
 * is returned. 0 or -errno. */
int s3_list(struct s3_store *st, const char *prefix,
	    int (*fn)(const struct s3_object *obj, void *arg), void *arg,
	    char *err, size_t errlen);

/*
 * SigV4, in the steps AWS's specification names. Each output is a malloc'd
 * string the caller frees; NULL on out of memory.
 *
 * headers are "name:value" lines, already lower-cased, trimmed and sorted by
 * name; query is the canonical query string (sorted, encoded; "" for none).
 */
struct s3_sigv4 {
	const char *method;
	const char *uri;   /* canonical URI, already encoded */
	const char *query; /* canonical query string */
	const char *const *headers;
	size_t n_headers;
	const char *payload_hash; /* hex SHA-256 of the body */
	const char *region;
	const char *service; /* "s3" */
	time_t now;	     /* the injectable clock */
	const char *access_key_id;
	const char *secret_access_key;
};

char *s3_sigv4_canonical_request(const struct s3_sigv4 *req);
char *s3_sigv4_string_to_sign(const struct s3_sigv4 *req);
char *s3_sigv4_signature(const struct s3_sigv4 *req);
/* The value of the Authorization header. */
char *s3_sigv4_authorization(const struct s3_sigv4 *req);

/* The canonical URI of an HTTP path: percent-encoded ('/' kept); with
 * normalize, '.' and '..' segments resolved and empty ones dropped (S3
 * itself does not normalize, so its requests pass false). */
char *s3_sigv4_canonical_uri(const char *path, bool normalize);

/* The canonical query string of a raw query (no '?'): each name and value
 * decoded, then encoded as SigV4 wants, sorted by name, then value. */
char *s3_sigv4_canonical_query(const char *query);

/* The X-Amz-* parameters of a presigned URL, raw (not encoded), for
 * s3_sigv4_canonical_query() together with the request's own: algorithm,
 * credential, date, expires, the signed header names, and the session
 * token when there is one. The URL is the canonical query plus
 * "&X-Amz-Signature=" s3_sigv4_signature(). */
char *s3_sigv4_presign_params(const struct s3_sigv4 *req, int expires,
			      const char *token);

/* Percent-encode s as SigV4 wants (unreserved kept; '/' kept when
 * keep_slash). Returns a malloc'd string. */
char *s3_uri_encode(const char *s, bool keep_slash);

/* n bytes as lower-case hex into out[2n + 1]. */
void s3_hex(const unsigned char *in, size_t n, char *out);

/* Hex SHA-256 of buf into out[65]. */
void s3_sha256_hex(const void *buf, size_t len, char out[65]);

/* Hex SHA-256 of the file at path into out[65], read as it streams. */
int s3_sha256_file(const char *path, char out[65]);

#endif
