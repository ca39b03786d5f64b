/* list.c - a bucket's keys under a prefix (ListObjectsV2), page after
 * page, read out of S3's XML answer. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3/internal.h"

/* XML text between p and end into out, its entities decoded (&amp; and
 * the like, &#N; and &#xN; as UTF-8). -EPROTO if it does not fit. */
static int xml_text(const char *p, const char *end, char *out, size_t n)
{
	static const struct {
		const char *ent;
		char c;
	} named[] = {{"&amp;", '&'},
		     {"&lt;", '<'},
		     {"&gt;", '>'},
		     {"&quot;", '"'},
		     {"&apos;", '\''}};
	size_t len = 0;
	while (p < end) {
		unsigned long cp = (unsigned char)*p;
		size_t skip = 1;
		if (*p == '&') {
			const char *semi = memchr(p, ';', (size_t)(end - p));
			if (!semi)
				return -EPROTO;
			skip = (size_t)(semi - p) + 1;
			cp = 0;
			for (size_t i = 0; i < sizeof(named) / sizeof(*named);
			     i++)
				if (!strncmp(p, named[i].ent, skip))
					cp = (unsigned char)named[i].c;
			if (!cp && p[1] == '#')
				cp = p[2] == 'x' ? strtoul(p + 3, NULL, 16)
						 : strtoul(p + 2, NULL, 10);
			if (!cp || cp > 0x10ffff)
				return -EPROTO;
		}
		unsigned char u[4];
		size_t ul = cp < 0x80	   ? 1
			    : cp < 0x800   ? 2
			    : cp < 0x10000 ? 3
					   : 4;
		if (*p != '&') /* raw bytes pass as they are */
			ul = 1, u[0] = (unsigned char)cp;
		else if (ul == 1)
			u[0] = (unsigned char)cp;
		else if (ul == 2)
			u[0] = (unsigned char)(0xc0 | cp >> 6),
			u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		else if (ul == 3)
			u[0] = (unsigned char)(0xe0 | cp >> 12),
			u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)),
			u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		else
			u[0] = (unsigned char)(0xf0 | cp >> 18),
			u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f)),
			u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)),
			u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		if (len + ul >= n)
			return -EPROTO;
		memcpy(out + len, u, ul);
		len += ul;
		p += skip;
	}
	out[len] = '\0';
	return 0;
}

/* The text of <name> within [p, end), or NULL. */
static const char *xml_in(const char *p, const char *end, const char *name,
			  const char **text_end)
{
	char open[64], close[64];
	snprintf(open, sizeof(open), "<%s>", name);
	snprintf(close, sizeof(close), "</%s>", name);
	const char *a = memmem(p, (size_t)(end - p), open, strlen(open));
	if (!a)
		return NULL;
	a += strlen(open);
	const char *b = memmem(a, (size_t)(end - a), close, strlen(close));
	if (!b)
		return NULL;
	*text_end = b;
	return a;
}

enum { LIST_PAGE_MAX = 8 << 20 }; /* a page of 1,000 keys is far less */

int s3_bucket_list(struct s3_store *st, const char *prefix,
		   int (*fn)(const struct s3_object *obj, void *arg), void *arg,
		   char *err, size_t errlen)
{
	char *page = malloc(LIST_PAGE_MAX), token[1100] = "";
	char *enc_prefix = s3_uri_encode(prefix, false);
	int ret = page && enc_prefix ? 0 : -ENOMEM;
	bool more = ret == 0;
	while (more && ret == 0) {
		struct http_req r;
		char *query = NULL, *enc_token = s3_uri_encode(token, false);
		/* the canonical query: its names in order */
		if (!enc_token ||
		    asprintf(&query,
			     "%s%s%slist-type=2&max-keys=1000&prefix=%s",
			     *token ? "continuation-token=" : "",
			     *token ? enc_token : "", *token ? "&" : "",
			     enc_prefix) < 0) {
			free(enc_token);
			ret = -ENOMEM;
			break;
		}
		free(enc_token);
		s3_http_init(&r, "GET", NULL);
		r.query = query;
		r.out_buf = (unsigned char *)page;
		r.out_cap = LIST_PAGE_MAX - 1;
		ret = s3_http_do(st, &r, err, errlen);
		free(query);
		if (ret)
			break;
		if (r.out_len >= LIST_PAGE_MAX - 1) {
			snprintf(err, errlen, "a listing page over %d bytes",
				 LIST_PAGE_MAX);
			ret = -EPROTO;
			break;
		}
		page[r.out_len] = '\0';
		const char *p = page, *end = page + r.out_len, *te;
		const char *c;
		while (ret == 0 && (c = xml_in(p, end, "Contents", &te))) {
			const char *cend = te, *ke, *se;
			const char *k = xml_in(c, cend, "Key", &ke);
			const char *sz = xml_in(c, cend, "Size", &se);
			struct s3_object o = {0};
			if (!k || !sz ||
			    xml_text(k, ke, o.key, sizeof(o.key))) {
				snprintf(err, errlen,
					 "a listing entry thumbfs "
					 "cannot read");
				ret = -EPROTO;
				break;
			}
			o.size = strtoull(sz, NULL, 10);
			ret = fn(&o, arg);
			p = cend + strlen("</Contents>");
		}
		const char *t = xml_in(page, end, "IsTruncated", &te);
		more = t && !strncmp(t, "true", 4);
		if (more && ret == 0) {
			const char *nt =
			    xml_in(page, end, "NextContinuationToken", &te);
			if (!nt || xml_text(nt, te, token, sizeof(token))) {
				snprintf(err, errlen,
					 "a truncated listing "
					 "without its next token");
				ret = -EPROTO;
			}
		}
	}
	if (ret == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	free(page);
	free(enc_prefix);
	return ret;
}
