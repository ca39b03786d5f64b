/* webp.c - WebP to 8-bit RGB or RGBA (libwebp). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>

#include "thumb/decoders.h"

int thumb_decode_webp(const unsigned char *buf, size_t len, uint64_t max_pixels,
		      struct thumb_image *img, int *w, int *h, char *err,
		      size_t errlen)
{
	WebPBitstreamFeatures f;
	if (WebPGetFeatures(buf, len, &f) != VP8_STATUS_OK) {
		snprintf(err, errlen, "corrupt WebP: bad header");
		return -EINVAL;
	}
	*w = f.width;
	*h = f.height;
	int ret = thumb_check_size(f.width, f.height, max_pixels, err, errlen);
	if (ret)
		return ret;
	int ch = f.has_alpha ? 4 : 3;
	size_t stride = (size_t)f.width * ch, size = stride * f.height;
	unsigned char *px = malloc(size);
	if (!px) {
		snprintf(err, errlen, "out of memory for a %dx%d WebP", f.width,
			 f.height);
		return -ENOMEM;
	}
	uint8_t *ok = f.has_alpha
			  ? WebPDecodeRGBAInto(buf, len, px, size, (int)stride)
			  : WebPDecodeRGBInto(buf, len, px, size, (int)stride);
	if (!ok) {
		free(px);
		snprintf(err, errlen, "corrupt WebP: cannot decode");
		return -EINVAL;
	}
	img->width = f.width;
	img->height = f.height;
	img->channels = ch;
	img->pixels = px;
	img->orientation = 1;
	return 0;
}
