/* size.c - sizes as people write them in a config: 500M, 2G, 64KiB,
 * parsed, and shown back in the largest unit that divides them. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fs/size.h"

/* A size: a whole number of bytes, or with K, M, G or T (powers of 1024;
 * "KB", "KiB" and lower case too). */
int cfg_parse_size(const char *text, long long *out)
{
	char *end = NULL;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (errno || end == text || v < 0)
		return -1;
	int shift = 0;
	switch (tolower((unsigned char)*end)) {
	case 'k':
		shift = 10;
		break;
	case 'm':
		shift = 20;
		break;
	case 'g':
		shift = 30;
		break;
	case 't':
		shift = 40;
		break;
	case '\0':
		break;
	default:
		return -1;
	}
	if (shift) {
		end++;
		if (!strcasecmp(end, "b") || !strcasecmp(end, "ib"))
			end += strlen(end);
	} else if (!strcasecmp(end, "b")) {
		end++;
	}
	if (*end || v > (LLONG_MAX >> shift))
		return -1;
	*out = v << shift;
	return 0;
}

/* A size as people write it: the largest unit that divides it. */
void cfg_show_size(long long v, char *out, size_t n)
{
	static const char units[] = "KMGT";
	int u = -1;
	while (u < 3 && v >= 1024 && v % 1024 == 0)
		v /= 1024, u++;
	if (u < 0)
		snprintf(out, n, "%lld", v);
	else
		snprintf(out, n, "%lld%c", v, units[u]);
}
