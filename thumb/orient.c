/* orient.c - EXIF orientation: read the tag (libexif), turn the pixels
 * upright. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libexif/exif-data.h>

#include "thumb/thumb.h"

int thumb_exif_orientation(const unsigned char *exif, size_t len)
{
	int o = 1;
	ExifData *ed = exif_data_new_from_data(exif, (unsigned int)len);
	if (!ed)
		return 1;
	ExifEntry *e = exif_data_get_entry(ed, EXIF_TAG_ORIENTATION);
	if (e && e->format == EXIF_FORMAT_SHORT && e->components >= 1 &&
	    e->size >= 2)
		o = exif_get_short(e->data, exif_data_get_byte_order(ed));
	exif_data_unref(ed);
	return o >= 1 && o <= 8 ? o : 1;
}

int thumb_orient(const struct thumb_image *src, int orientation,
		 struct thumb_image *dst)
{
	int w = src->width, h = src->height, ch = src->channels;
	bool swap = orientation >= 5 && orientation <= 8;
	int ow = swap ? h : w, oh = swap ? w : h;

	memset(dst, 0, sizeof(*dst));
	unsigned char *out = malloc((size_t)ow * oh * ch);
	if (!out)
		return -ENOMEM;
	for (int y = 0; y < oh; y++) {
		for (int x = 0; x < ow; x++) {
			int sx, sy; /* where out(x, y) comes from */
			switch (orientation) {
			case 2:
				sx = w - 1 - x;
				sy = y;
				break;
			case 3:
				sx = w - 1 - x;
				sy = h - 1 - y;
				break;
			case 4:
				sx = x;
				sy = h - 1 - y;
				break;
			case 5:
				sx = y;
				sy = x;
				break;
			case 6:
				sx = y;
				sy = h - 1 - x;
				break;
			case 7:
				sx = w - 1 - y;
				sy = h - 1 - x;
				break;
			case 8:
				sx = w - 1 - y;
				sy = x;
				break;
			default:
				sx = x;
				sy = y;
				break;
			}
			memcpy(out + ((size_t)y * ow + x) * ch,
			       src->pixels + ((size_t)sy * w + sx) * ch,
			       (size_t)ch);
		}
	}
	dst->width = ow;
	dst->height = oh;
	dst->channels = ch;
	dst->pixels = out;
	dst->orientation = 1;
	return 0;
}
