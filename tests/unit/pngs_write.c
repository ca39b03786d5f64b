/* pngs_write.c - writes the PNG test set (pngs.h) into a directory, as
 * NAME.png, for the tests that compare with Pillow. */
#include <stdio.h>

#include "tests/unit/pngs.h"

int main(int argc, char **argv)
{
	struct png_case *cases;
	size_t n;
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	if (pngs_make(&cases, &n)) {
		fprintf(stderr, "%s: libpng could not make the set\n", argv[0]);
		return 1;
	}
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s.png", argv[1],
			 cases[i].name);
		FILE *f = fopen(path, "wb");
		if (!f ||
		    fwrite(cases[i].data, 1, cases[i].len, f) != cases[i].len) {
			perror(path);
			rc = 1;
		}
		if (f && fclose(f)) {
			perror(path);
			rc = 1;
		}
	}
	pngs_free(cases, n);
	return rc;
}
