/*
 * decoders.h - inside thumb/ only: the decoders of the formats beyond JPEG
 * and PNG, each as thumb_decode() describes (img filled, or left empty
 * with err set and -errno returned), and the size check they share.
 */
#ifndef THUMB_DECODERS_H
#define THUMB_DECODERS_H

#include "thumb/thumb.h"

/* 0, or -EINVAL (no pixels) / -EFBIG (over max_pixels) with err set. */
int thumb_check_size(int w, int h, uint64_t max_pixels, char *err,
		     size_t errlen);

int thumb_decode_webp(const unsigned char *buf, size_t len, uint64_t max_pixels,
		      struct thumb_image *img, int *w, int *h, char *err,
		      size_t errlen);
int thumb_decode_tiff(const unsigned char *buf, size_t len, uint64_t max_pixels,
		      struct thumb_image *img, int *w, int *h, char *err,
		      size_t errlen);
int thumb_decode_gif(const unsigned char *buf, size_t len, uint64_t max_pixels,
		     struct thumb_image *img, int *w, int *h, char *err,
		     size_t errlen);
int thumb_decode_heif(const unsigned char *buf, size_t len, uint64_t max_pixels,
		      struct thumb_image *img, int *w, int *h, char *err,
		      size_t errlen);

#endif
