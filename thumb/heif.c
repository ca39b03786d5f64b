/* heif.c - HEIC/HEIF (iPhone photos) and AVIF to 8-bit RGB or RGBA
 * (libheif; its rotations and mirrors are applied, so the result is
 * upright, as the format says it is to be shown), from the file's own
 * thumbnail item when that is large enough. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libheif/heif.h>

#include "thumb/decoders.h"

/* The smallest thumbnail item of hnd that holds the w x h thumbnail of
 * the primary image (iw x ih) with its shape (a pixel's rounding apart),
 * or NULL to decode the primary. Phones write one of 320x240 beside
 * 4032x3024; libvips takes it the same way. */
static struct heif_image_handle *thumb_item(struct heif_image_handle *hnd,
					    int iw, int ih, int w, int h)
{
	heif_item_id ids[8];
	int n = heif_image_handle_get_list_of_thumbnail_IDs(hnd, ids, 8);
	struct heif_image_handle *best = NULL;
	for (int i = 0; i < n; i++) {
		struct heif_image_handle *t = NULL;
		if (heif_image_handle_get_thumbnail(hnd, ids[i], &t).code !=
		    heif_error_Ok)
			continue;
		long tw = heif_image_handle_get_width(t);
		long th = heif_image_handle_get_height(t);
		bool fits = tw >= w && th >= h && tw < iw && th < ih &&
			    labs(tw * ih - th * iw) <= (long)iw + ih;
		if (fits && (!best || tw < heif_image_handle_get_width(best))) {
			heif_image_handle_release(best);
			best = t;
		} else {
			heif_image_handle_release(t);
		}
	}
	return best;
}

int thumb_decode_heif(const unsigned char *buf, size_t len, int box_w,
		      int box_h, uint64_t max_pixels, struct thumb_image *img,
		      int *w, int *h, char *err, size_t errlen)
{
	struct heif_image_handle *hnd = NULL, *item = NULL;
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
	if (box_w > 0 && box_h > 0) {
		int tw, th;
		thumb_target(*w, *h, 1, box_w, box_h, &tw, &th);
		item = thumb_item(hnd, *w, *h, tw, th);
	}
	struct heif_image_handle *dec = item ? item : hnd;
	int alpha = heif_image_handle_has_alpha_channel(dec);
	he = heif_decode_image(dec, &him, heif_colorspace_RGB,
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
	if (!item) { /* the size as decoded (libheif's turns applied) */
		*w = iw;
		*h = ih;
	}
	/* rows straight from libheif's plane into the resampler: no second
	 * copy of the whole image */
	int tw = iw, th = ih;
	if (box_w > 0 && box_h > 0)
		thumb_target(*w, *h, 1, box_w, box_h, &tw, &th);
	struct thumb_image out = {0};
	if (tw != iw || th != ih) {
		struct thumb_scaler *sc = thumb_scaler_new(iw, ih, ch, tw, th);
		if (sc) {
			for (int y = 0; y < ih; y++)
				thumb_scaler_row(sc,
						 plane + (size_t)y * stride);
			ret = thumb_scaler_finish(sc, &out);
			thumb_scaler_free(sc);
		}
		px = out.pixels;
		iw = tw;
		ih = th;
	} else if ((px = malloc((size_t)iw * ih * ch))) {
		for (int y = 0; y < ih; y++)
			memcpy(px + (size_t)y * iw * ch,
			       plane + (size_t)y * stride, (size_t)iw * ch);
	}
	if (ret || !px) {
		snprintf(err, errlen, "out of memory for a %dx%d HEIF", iw, ih);
		ret = -ENOMEM;
		goto out_free;
	}
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
out_free:
	free(px);
	heif_image_release(him);
	heif_image_handle_release(item);
	heif_image_handle_release(hnd);
	heif_context_free(ctx);
	return ret;
}
