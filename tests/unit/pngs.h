/* pngs.h - the PNG test set, made with libpng: every colour type, bit
 * depth and interlace the PNG specification allows, with and without
 * tRNS, and files broken in each way a decoder must refuse. */
#ifndef TESTS_PNGS_H
#define TESTS_PNGS_H

#include <stdbool.h>
#include <stddef.h>

struct png_case {
	char name[48];	     /* e.g. "rgb16-adam7", "bad-crc" */
	bool valid;	     /* false: a decoder must refuse it */
	unsigned char *data; /* malloc'd */
	size_t len;
};

/* The whole set, malloc'd; *n is set. 0, or -1 when libpng failed. */
int pngs_make(struct png_case **out, size_t *n);
void pngs_free(struct png_case *cases, size_t n);

#endif
