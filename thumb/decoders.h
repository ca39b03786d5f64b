/*
 * decoders.h - inside thumb/ only: the decoders of the formats beyond JPEG,
 * each as thumb_decode() describes (img filled, or left empty
 * with err set and -errno returned), and the size check they share.
 */
#ifndef THUMB_DECODERS_H
#define THUMB_DECODERS_H

#include <stdio.h>

#include "thumb/thumb.h"

/* 0, or -EINVAL (no pixels) / -EFBIG (over max_pixels) with err set. */
int thumb_check_size(int w, int h, uint64_t max_pixels, char *err,
		     size_t errlen);

/* The size an image of orig_w x orig_h, stored with EXIF orientation o,
 * is resampled to (as stored) so that upright it fits box_w x box_h as
 * Pillow's thumbnail() does. */
void thumb_target(int orig_w, int orig_h, int o, int box_w, int box_h, int *w,
		  int *h);

/* The size a decoder that can shrink by any factor loads an image of
 * orig_w x orig_h (orientation o) at, for box_w x box_h (0, 0: full
 * size): each axis reduced by Pillow's thumbnail() factor, int(size /
 * target / 2) when over 1, rounded up as its reduce() does, so that
 * at least twice the thumbnail is left for the Lanczos pass. */
void thumb_load_size(int orig_w, int orig_h, int o, int box_w, int box_h,
		     int *w, int *h);

/* A resampler fed one row at a time (resample.c): new, in_h rows of
 * in_w x ch bytes in order, then finish into dst (which fails with -EINVAL
 * if rows are missing). NULL from new: bad sizes or out of memory. */
struct thumb_scaler;
struct thumb_scaler *thumb_scaler_new(int in_w, int in_h, int ch, int out_w,
				      int out_h);
/* The same, by nearest neighbour (see thumb_image.nearest). */
struct thumb_scaler *thumb_scaler_new_nearest(int in_w, int in_h, int ch,
					      int out_w, int out_h);
void thumb_scaler_row(struct thumb_scaler *s, const unsigned char *row);
int thumb_scaler_finish(struct thumb_scaler *s, struct thumb_image *dst);
void thumb_scaler_free(struct thumb_scaler *s);

/* What a decoder reads: a buffer, or (fp set) a file read as it comes. */
struct thumb_src {
	const unsigned char *buf;
	size_t len;
	FILE *fp;
};

int thumb_decode_png(const struct thumb_src *in, int box_w, int box_h,
		     uint64_t max_pixels, struct thumb_image *img, int *orig_w,
		     int *orig_h, char *err, size_t errlen);
/* WebP and HEIF load shrunk for box_w x box_h (0, 0: full size). */
int thumb_decode_webp(const unsigned char *buf, size_t len, int box_w,
		      int box_h, uint64_t max_pixels, struct thumb_image *img,
		      int *w, int *h, char *err, size_t errlen);
int thumb_decode_tiff(const struct thumb_src *in, int box_w, int box_h,
		      uint64_t max_pixels, struct thumb_image *img, int *w,
		      int *h, char *err, size_t errlen);
int thumb_decode_gif(const unsigned char *buf, size_t len, uint64_t max_pixels,
		     struct thumb_image *img, int *w, int *h, char *err,
		     size_t errlen);
int thumb_decode_heif(const unsigned char *buf, size_t len, int box_w,
		      int box_h, uint64_t max_pixels, struct thumb_image *img,
		      int *w, int *h, char *err, size_t errlen);

/* PDF: the first page drawn at the size box_w x box_h fits it to (0, 0:
 * 72 dpi); *w x *h its size in points. */
int thumb_decode_pdf(const unsigned char *buf, size_t len, int box_w, int box_h,
		     uint64_t max_pixels, struct thumb_image *img, int *w,
		     int *h, char *err, size_t errlen);

/* Video: a poster frame, the first of the first 10 seconds that is
 * neither black nor nearly uniform (else the most varied of them), loaded
 * for box_w x box_h, turned as the container's display matrix says
 * (img->orientation) and its time in img->frame_ms; *w x *h the video's
 * size as shown (its sample aspect applied), before turning. */
int thumb_decode_video(const unsigned char *buf, size_t len, int box_w,
		       int box_h, uint64_t max_pixels, struct thumb_image *img,
		       int *w, int *h, char *err, size_t errlen);

/* DICOM (dicom.cc, GDCM): the first frame, grey through the file's
 * rescale and first window (else the frame's range; 8-bit as it is),
 * MONOCHROME1 inverted, RGB and YBR_FULL as RGB; reduced by whole
 * factors for box_w x box_h as Pillow's reduce() (0, 0: full size). */
#ifdef __cplusplus
extern "C"
#endif
    int
    thumb_decode_dicom(const unsigned char *buf, size_t len, int box_w,
		       int box_h, uint64_t max_pixels, struct thumb_image *img,
		       int *w, int *h, char *err, size_t errlen);

#endif
