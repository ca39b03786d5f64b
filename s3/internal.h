/*
 * internal.h - what the files of s3/ share and nothing else sees: the
 * store, the table of backends it dispatches through, and the helpers
 * that several backends use.
 *
 * store.c checks every key once and calls the backend: file.c (a local
 * directory) or bucket.c (S3), which sends its requests through http.c
 * (one signed exchange) and multipart.c (large objects).
 */
#ifndef S3_INTERNAL_H
#define S3_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <curl/curl.h>

#include "s3/s3.h"

#define POOL_MAX 8

/* One kind of store. Every key has passed the store's check. */
struct s3_backend {
	int (*open)(struct s3_store *st, const struct s3_config *cfg, char *err,
		    size_t errlen);
	void (*release)(struct s3_store *st);
	int (*check)(struct s3_store *st, char *err, size_t errlen);
	int (*ping)(struct s3_store *st, char *err, size_t errlen);
	int (*set_credentials)(struct s3_store *st, const char *key_id,
			       const char *secret, const char *token);
	int (*put_fd)(struct s3_store *st, const char *key, int fd,
		      const struct s3_digest *d, const char *content_type,
		      char *err, size_t errlen);
	int (*put_buf)(struct s3_store *st, const char *key, const void *buf,
		       size_t len, const char *content_type, char *err,
		       size_t errlen);
	int (*get_fd)(struct s3_store *st, const char *key, int fd, char *err,
		      size_t errlen);
	int (*get_range)(struct s3_store *st, const char *key, uint64_t off,
			 size_t len, void *buf, size_t *got, char *err,
			 size_t errlen);
	int (*delete)(struct s3_store *st, const char *key, char *err,
		      size_t errlen);
	int (*copy)(struct s3_store *st, const char *from, const char *to,
		    char *err, size_t errlen);
	char *(*presign)(struct s3_store *st, const char *key, int expires,
			 time_t now);
	int (*list)(struct s3_store *st, const char *prefix,
		    int (*fn)(const struct s3_object *obj, void *arg),
		    void *arg, char *err, size_t errlen);
};

extern const struct s3_backend s3_file_backend;
extern const struct s3_backend s3_bucket_backend;

/* The credentials one request signs with: shared, counted, so that a
 * reload (s3_set_credentials) never pulls them from under a request. */
struct s3_creds {
	int refs; /* guarded by the store's lock */
	char *key_id;
	char *secret;
	char *token; /* NULL: none */
};

struct s3_store {
	const struct s3_backend *be;
	char *bucket; /* s3://: the bucket; file://: the URL */
	/* file:// */
	char *root; /* the directory */
	/* s3:// (bucket.c); nothing here changes after open but creds */
	bool curl_ref; /* holds a reference on curl_global_init() */
	char *base;    /* scheme://authority, no trailing slash */
	char *host;    /* the Host header's value */
	char *prefix;  /* "/bucket" (path style) or "" */
	char *region;
	char *sse;	/* NULL: none */
	char *sse_kms;	/* NULL: the bucket's default KMS key */
	char *ca_file;	/* NULL: the system's CA store */
	bool insecure;	/* no peer or host name check */
	long timeout_s; /* a stalled request fails after this long */
	uint64_t multipart_threshold; /* larger objects go in parts */
	uint64_t part_size;

	pthread_mutex_t lock;	/* guards creds, pool and n_pool */
	struct s3_creds *creds; /* replaced by a reload */
	CURL *pool[POOL_MAX];
	int n_pool;
};

/* The credentials to sign one request with (NULL: none), and give back. */
struct s3_creds *s3_creds_get(struct s3_store *st);
void s3_creds_put(struct s3_store *st, struct s3_creds *c);

/* Create dir and its parents, as mkdir -p. 0 or -errno. */
int s3_mkdir_p(const char *dir, mode_t mode);

/* Write dest whole or not at all: fill(fd, arg) writes a temporary file
 * beside it, which is synced and renamed over dest. 0 or -errno. */
int s3_write_atomic(const char *dest, int (*fill)(int fd, void *arg),
		    void *arg);

/*
 * One signed exchange with S3 (http.c).
 */
struct http_req {
	const char *method;
	const char *key;	  /* NULL: the bucket itself */
	const char *query;	  /* canonical query string, or NULL */
	const char *payload_hash; /* hex SHA-256 of the body */
	const char *content_type;
	bool sse; /* send the SSE headers (PUT, CreateMultipartUpload) */
	const char *copy_source; /* CopyObject: "/bucket/key", encoded */
	/* the body: len bytes of body_fd from body_off, or of body */
	int body_fd;
	curl_off_t body_off;
	const unsigned char *body;
	curl_off_t body_len;
	curl_off_t body_pos;
	/* integrity: Content-MD5 sent, and the ETag S3 answers (the MD5 of
	 * what it stored, for a single PUT) compared */
	bool check_md5;
	unsigned char md5[16];
	/* a ranged GET into out_buf: bytes range_off .. + out_cap; a server
	 * that ignores Range answers 200 with the whole object, whose first
	 * range_off bytes are skipped */
	bool ranged;
	uint64_t range_off;
	unsigned char *out_buf;
	size_t out_cap;
	size_t out_len;
	uint64_t seen; /* body bytes of a 200 answer so far */
	/* the answer: a 2xx body to out_fd (or out_buf), any other body (and
	 * the XML of POSTs) to errbody */
	int out_fd;
	int out_err;
	char errbody[4096];
	size_t errbody_len;
	long status;
	char reason[64]; /* the status line's reason phrase */
	char etag[64];
	char sse_got[32];  /* x-amz-server-side-encryption answered */
	char kms_got[256]; /* and its -aws-kms-key-id */
	int64_t length;	   /* Content-Length answered; -1: none */
	/* the answer must say the object was encrypted as [store] sse asks
	 * (-EPROTO when it does not) */
	bool check_sse;
	CURL *curl;
};

/* A request of method on key (NULL: the bucket), with no body. */
void s3_http_init(struct http_req *r, const char *method, const char *key);

/* Sign and send r, and read its answer: 0, or -errno (the mapping in
 * s3.h) with a one-line reason in err. */
int s3_http_do(struct s3_store *st, struct http_req *r, char *err,
	       size_t errlen);

/* The text of the first <name> element of xml into out ("" if none). */
void s3_xml_value(const char *xml, const char *name, char *out, size_t n);

/* Delete key, stored but not encrypted as [store] sse asked (best
 * effort: a store that did not encrypt it is told to remove it). */
void s3_unencrypted(struct s3_store *st, const char *key);

/* An object in the parts d describes, each read from fd (or buf, when fd
 * is -1) as it is sent (multipart.c). */
int s3_put_multipart(struct s3_store *st, const char *key, int fd,
		     const unsigned char *buf, const struct s3_digest *d,
		     const char *content_type, char *err, size_t errlen);

/* The S3 store's listing (list.c): each key under prefix, to fn, a page
 * of up to 1,000 at a time; a non-zero return from fn stops it. */
int s3_bucket_list(struct s3_store *st, const char *prefix,
		   int (*fn)(const struct s3_object *obj, void *arg), void *arg,
		   char *err, size_t errlen);

#endif
