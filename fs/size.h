/*
 * size.h - sizes as people write them in a config (size.c).
 */
#ifndef FS_SIZE_H
#define FS_SIZE_H

#include <stddef.h>

/* A size: a whole number of bytes, or with K, M, G or T (powers of 1024;
 * "KB", "KiB" and lower case too), into *out: 0, or -1 when text is none. */
int cfg_parse_size(const char *text, long long *out);

/* v as people write it: the largest unit that divides it, into out. */
void cfg_show_size(long long v, char *out, size_t n);

#endif
