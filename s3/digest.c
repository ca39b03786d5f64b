/* digest.c - what one pass over the content gives the store: its SHA-256
 * and MD5, whole and part by part. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "s3/internal.h"

/* Four running hashes: of the whole, and of the part under way. */
struct pass {
	struct s3_digest *d;
	EVP_MD_CTX *sha, *md5, *part_sha, *part_md5;
	uint64_t done; /* bytes fed so far */
	size_t part;   /* the part under way */
};

static void part_done(struct pass *p)
{
	unsigned char md[32];
	struct s3_part_digest *pd = &p->d->parts[p->part++];
	EVP_DigestFinal_ex(p->part_sha, md, NULL);
	s3_hex(md, 32, pd->sha256);
	EVP_DigestFinal_ex(p->part_md5, pd->md5, NULL);
	EVP_DigestInit_ex(p->part_sha, EVP_sha256(), NULL);
	EVP_DigestInit_ex(p->part_md5, EVP_md5(), NULL);
}

static void feed(struct pass *p, const unsigned char *buf, size_t n)
{
	EVP_DigestUpdate(p->sha, buf, n);
	EVP_DigestUpdate(p->md5, buf, n);
	while (n && p->d->n_parts) {
		uint64_t end = (p->part + 1) * p->d->part_size;
		size_t take = end - p->done < n ? (size_t)(end - p->done) : n;
		EVP_DigestUpdate(p->part_sha, buf, take);
		EVP_DigestUpdate(p->part_md5, buf, take);
		p->done += take;
		buf += take;
		n -= take;
		if (p->done == end || p->done == p->d->size)
			part_done(p);
	}
	if (!p->d->n_parts)
		p->done += n;
}

/* Set d up for size bytes sent to st: in parts when over its threshold. */
static int pass_begin(struct pass *p, const struct s3_store *st, uint64_t size,
		      struct s3_digest *d)
{
	memset(d, 0, sizeof(*d));
	memset(p, 0, sizeof(*p));
	p->d = d;
	d->size = size;
	if (st->be == &s3_bucket_backend && size > st->multipart_threshold) {
		d->part_size = st->part_size;
		d->n_parts = (size_t)((size + d->part_size - 1) / d->part_size);
		if (d->n_parts > S3_PARTS_MAX)
			return -EFBIG;
		d->parts = calloc(d->n_parts, sizeof(*d->parts));
		if (!d->parts)
			return -ENOMEM;
	}
	p->sha = EVP_MD_CTX_new();
	p->md5 = EVP_MD_CTX_new();
	p->part_sha = EVP_MD_CTX_new();
	p->part_md5 = EVP_MD_CTX_new();
	if (!p->sha || !p->md5 || !p->part_sha || !p->part_md5 ||
	    !EVP_DigestInit_ex(p->sha, EVP_sha256(), NULL) ||
	    !EVP_DigestInit_ex(p->md5, EVP_md5(), NULL) ||
	    !EVP_DigestInit_ex(p->part_sha, EVP_sha256(), NULL) ||
	    !EVP_DigestInit_ex(p->part_md5, EVP_md5(), NULL))
		return -ENOMEM;
	return 0;
}

static int pass_end(struct pass *p, int ret)
{
	unsigned char md[32];
	if (ret == 0 && p->done != p->d->size)
		ret = -EAGAIN; /* it changed size while read: read again */
	if (ret == 0) {
		EVP_DigestFinal_ex(p->sha, md, NULL);
		s3_hex(md, 32, p->d->sha256);
		EVP_DigestFinal_ex(p->md5, p->d->md5, NULL);
	}
	EVP_MD_CTX_free(p->sha);
	EVP_MD_CTX_free(p->md5);
	EVP_MD_CTX_free(p->part_sha);
	EVP_MD_CTX_free(p->part_md5);
	if (ret)
		s3_digest_release(p->d);
	return ret;
}

int s3_digest_fd(const struct s3_store *st, int fd, struct s3_digest *d)
{
	struct pass p;
	struct stat sb;
	unsigned char buf[1 << 16];
	if (fstat(fd, &sb))
		return -errno;
	int ret = pass_begin(&p, st, (uint64_t)sb.st_size, d);
	off_t off = 0;
	while (ret == 0 && (uint64_t)off < d->size) {
		size_t want = d->size - (uint64_t)off < sizeof(buf)
				  ? (size_t)(d->size - (uint64_t)off)
				  : sizeof(buf);
		ssize_t got = pread(fd, buf, want, off);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			ret = got < 0 ? -errno : -EAGAIN; /* it shrank */
			break;
		}
		feed(&p, buf, (size_t)got);
		off += got;
	}
	return pass_end(&p, ret);
}

int s3_digest_buf(const struct s3_store *st, const void *buf, size_t len,
		  struct s3_digest *d)
{
	struct pass p;
	int ret = pass_begin(&p, st, len, d);
	if (ret == 0)
		feed(&p, buf, len);
	return pass_end(&p, ret);
}

void s3_digest_release(struct s3_digest *d)
{
	free(d->parts);
	d->parts = NULL;
	d->n_parts = 0;
}

int s3_sha256_file(const char *path, char out[65])
{
	unsigned char md[32], buf[1 << 16];
	int ret = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (fd < 0 || !ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		ret = fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t got = read(fd, buf, sizeof(buf));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			ret = got < 0 ? -errno : 0;
			break;
		}
		EVP_DigestUpdate(ctx, buf, (size_t)got);
	}
	if (ret == 0) {
		EVP_DigestFinal_ex(ctx, md, NULL);
		s3_hex(md, 32, out);
	}
out:
	EVP_MD_CTX_free(ctx);
	if (fd >= 0)
		close(fd);
	return ret;
}
