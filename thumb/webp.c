/* webp.c - WebP to 8-bit RGB or RGBA (libwebp), shrunk as it decodes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>

#include "thumb/decoders.h"

int thumb_decode_webp(const unsigned char *buf, size_t len, int box_w,
		      int box_h, uint64_t max_pixels, struct thumb_image *img,
		      int *w, int *h, char *err, size_t errlen)
{
	WebPDecoderConfig c;
	if (!WebPInitDecoderConfig(&c) ||
	    WebPGetFeatures(buf, len, &c.input) != VP8_STATUS_OK) {
		snprintf(err, errlen, "corrupt WebP: bad header");
		return -EINVAL;
	}
	*w = c.input.width;
	*h = c.input.height;
	int ret = thumb_check_size(*w, *h, max_pixels, err, errlen);
	if (ret)
		return ret;
	/* Shrink on load: libwebp's rescaler averages the area each output
	 * pixel covers as rows are decoded, so only the reduced image is
	 * ever held (what Pillow's reduce() gives, without its full-size
	 * decode). */
	int lw, lh;
	thumb_load_size(*w, *h, 1, box_w, box_h, &lw, &lh);
	if (lw != *w || lh != *h) {
		c.options.use_scaling = 1;
		c.options.scaled_width = lw;
		c.options.scaled_height = lh;
	}
	int ch = c.input.has_alpha ? 4 : 3;
	size_t stride = (size_t)lw * ch, size = stride * lh;
	unsigned char *px = malloc(size);
	if (!px) {
		snprintf(err, errlen, "out of memory for a %dx%d WebP", lw, lh);
		return -ENOMEM;
	}
	c.output.colorspace = c.input.has_alpha ? MODE_RGBA : MODE_RGB;
	c.output.is_external_memory = 1;
	c.output.u.RGBA.rgba = px;
	c.output.u.RGBA.stride = (int)stride;
	c.output.u.RGBA.size = size;
	VP8StatusCode st = WebPDecode(buf, len, &c);
	WebPFreeDecBuffer(&c.output);
	if (st != VP8_STATUS_OK) {
		free(px);
		snprintf(err, errlen, "corrupt WebP: cannot decode");
		return st == VP8_STATUS_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
	}
	img->width = lw;
	img->height = lh;
	img->channels = ch;
	img->pixels = px;
	img->orientation = 1;
	return 0;
}
