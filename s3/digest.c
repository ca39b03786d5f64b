/* digest.c - the SHA-256 and MD5 of a file's bytes, in one pass. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "s3/internal.h"

int s3_digest_range(int fd, off_t off, int64_t len, char sha[65],
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
	int ret = s3_digest_range(fd, 0, -1, out, NULL);
	close(fd);
	return ret;
}
