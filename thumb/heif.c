/* heif.c - HEIC/HEIF (iPhone photos) and AVIF to 8-bit RGB or RGBA
 * (libheif; its rotations and mirrors are applied, so the result is
 * upright, as the format says it is to be shown). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libheif/heif.h>

#include "thumb/decoders.h"

int thumb_decode_heif(const unsigned char *buf, size_t len, uint64_t max_pixels,
		      struct thumb_image *img, int *w, int *h, char *err,
		      size_t errlen)
{
	struct heif_image_handle *hnd = NULL;
	struct heif_image *him = NULL;
	unsigned char *px = NULL;
	int ret = -EINVAL;
	struct heif_context *ctx = heif_context_alloc();
	if (!ctx) {
		snprintf(err, errlen, "out of memory for a HEIF decoder");
		return -ENOMEM;
	}
	struct heif_error he =
	    heif_context_read_from_memory_without_copy(ctx, buf, len, NULL);
	if (he.code == heif_error_Ok)
		he = heif_context_get_primary_image_handle(ctx, &hnd);
	if (he.code != heif_error_Ok) {
		snprintf(err, errlen, "corrupt HEIF: %s", he.message);
		goto out_free;
	}
	*w = heif_image_handle_get_width(hnd);
	*h = heif_image_handle_get_height(hnd);
	ret = thumb_check_size(*w, *h, max_pixels, err, errlen);
	if (ret)
		goto out_free;
	int alpha = heif_image_handle_has_alpha_channel(hnd);
	he = heif_decode_image(hnd, &him, heif_colorspace_RGB,
			       alpha ? heif_chroma_interleaved_RGBA
				     : heif_chroma_interleaved_RGB,
			       NULL);
	if (he.code != heif_error_Ok) {
		snprintf(err, errlen, "corrupt HEIF: %s", he.message);
		ret = he.code == heif_error_Memory_allocation_error ? -ENOMEM
								    : -EINVAL;
		goto out_free;
	}
	int stride = 0, ch = alpha ? 4 : 3;
	int iw = heif_image_get_width(him, heif_channel_interleaved);
	int ih = heif_image_get_height(him, heif_channel_interleaved);
	const uint8_t *plane = heif_image_get_plane_readonly(
	    him, heif_channel_interleaved, &stride);
	ret = thumb_check_size(iw, ih, max_pixels, err, errlen);
	if (ret || !plane) {
		if (!ret)
			snprintf(err, errlen, "corrupt HEIF: no pixels");
		ret = ret ? ret : -EINVAL;
		goto out_free;
	}
	px = malloc((size_t)iw * ih * ch);
	if (!px) {
		snprintf(err, errlen, "out of memory for a %dx%d HEIF", iw, ih);
		ret = -ENOMEM;
		goto out_free;
	}
	for (int y = 0; y < ih; y++)
		memcpy(px + (size_t)y * iw * ch, plane + (size_t)y * stride,
		       (size_t)iw * ch);
	memset(img, 0, sizeof(*img));
	size_t icc_len = heif_image_handle_get_raw_color_profile_size(hnd);
	if (icc_len > 0 && (img->icc = malloc(icc_len))) {
		if (heif_image_handle_get_raw_color_profile(hnd, img->icc)
			.code == heif_error_Ok) {
			img->icc_len = icc_len;
		} else {
			free(img->icc);
			img->icc = NULL;
		}
	}
	img->width = iw;
	img->height = ih;
	img->channels = ch;
	img->pixels = px;
	img->orientation = 1;
	px = NULL;
	*w = iw;
	*h = ih;
out_free:
	free(px);
	heif_image_release(him);
	heif_image_handle_release(hnd);
	heif_context_free(ctx);
	return ret;
}
