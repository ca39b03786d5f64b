/* thumb.c - the thumbnail pipeline: fit as Pillow does, decode, resample,
 * encode in the original's format. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "thumb/decoders.h"

void thumb_opts_init(struct thumb_opts *opts)
{
	opts->max_width = 300;
	opts->max_height = 300;
	opts->jpeg_quality = 85;
	opts->max_pixels = 100000000ULL;
	opts->max_bytes = 256ULL << 20;
	opts->out_format = THUMB_FMT_UNKNOWN;
}

/* Pillow's round_aspect(): of floor(n) and ceil(n), the one whose aspect is
 * closest (floor on a tie), and at least 1. */
static int round_x(double number, double aspect, int y)
{
	double f = floor(number), c = ceil(number);
	double kf = fabs(aspect - f / y), kc = fabs(aspect - c / y);
	double best = kc < kf ? c : f;
	return best < 1.0 ? 1 : (int)best;
}

static double key_y(double n, double aspect, int x)
{
	return n == 0.0 ? 0.0 : fabs(aspect - x / n);
}

static int round_y(double number, double aspect, int x)
{
	double f = floor(number), c = ceil(number);
	double best = key_y(c, aspect, x) < key_y(f, aspect, x) ? c : f;
	return best < 1.0 ? 1 : (int)best;
}

void thumb_fit(int w, int h, int max_w, int max_h, int *out_w, int *out_h)
{
	int x = max_w, y = max_h;

	*out_w = w;
	*out_h = h;
	if (x >= w && y >= h)
		return; /* never enlarged */
	double aspect = (double)w / h;
	if ((double)x / y >= aspect)
		x = round_x(y * aspect, aspect, y);
	else
		y = round_y(x / aspect, aspect, x);
	*out_w = x;
	*out_h = y;
}

void thumb_target(int orig_w, int orig_h, int o, int box_w, int box_h, int *w,
		  int *h)
{
	bool swap = o >= 5;
	int tw, th;
	thumb_fit(swap ? orig_h : orig_w, swap ? orig_w : orig_h, box_w, box_h,
		  &tw, &th);
	*w = swap ? th : tw;
	*h = swap ? tw : th;
}

void thumb_load_size(int orig_w, int orig_h, int o, int box_w, int box_h,
		     int *w, int *h)
{
	*w = orig_w;
	*h = orig_h;
	if (box_w <= 0 || box_h <= 0)
		return;
	int tw, th;
	thumb_target(orig_w, orig_h, o, box_w, box_h, &tw, &th);
	int fx = orig_w / tw / 2, fy = orig_h / th / 2;
	if (fx > 1)
		*w = (orig_w + fx - 1) / fx;
	if (fy > 1)
		*h = (orig_h + fy - 1) / fy;
}

void thumb_result_release(struct thumb_result *res)
{
	free(res->data);
	memset(res, 0, sizeof(*res));
}

/* The pipeline over len bytes at buf, or (buf NULL) of the file fd, whose
 * head (its first bytes) says its format. */
static int make(const unsigned char *buf, int fd, uint64_t len,
		const unsigned char *head, size_t head_len,
		const struct thumb_opts *opts, struct thumb_result *res,
		char *err, size_t errlen)
{
	struct thumb_image img = {0}, small = {0}, upright = {0};
	int ow = 0, oh = 0, ret;

	memset(res, 0, sizeof(*res));
	res->format = thumb_detect(head, head_len);
	res->mime_type = thumb_mime_type(res->format);
	res->frame_ms = -1;
	if (opts->max_bytes && len > opts->max_bytes &&
	    !thumb_is_video(res->format)) {
		snprintf(
		    err, errlen,
		    "file is %llu bytes, over the limit of %llu (max_bytes)",
		    (unsigned long long)len,
		    (unsigned long long)opts->max_bytes);
		ret = -EFBIG;
		goto out;
	}
	ret = buf ? thumb_decode(buf, (size_t)len, opts->max_width,
				 opts->max_height, opts->max_pixels, &img, &ow,
				 &oh, err, errlen)
		  : thumb_decode_fd(fd, len, opts->max_width, opts->max_height,
				    opts->max_pixels, &img, &ow, &oh, err,
				    errlen);
	if (ret)
		goto out;
	/* Sizes are the upright ones (as displayed, as the app stores); the
	 * pixels are resampled as stored, then turned, which is cheaper on
	 * the small image and the same by the filter's symmetry. */
	bool swap = img.orientation >= 5;
	res->width = swap ? oh : ow;
	res->height = swap ? ow : oh;
	int sw, sh; /* the decoder may have resampled already */
	thumb_target(ow, oh, img.orientation, opts->max_width, opts->max_height,
		     &sw, &sh);
	const struct thumb_image *final = &img;
	if (sw != img.width || sh != img.height) {
		ret = thumb_resample(&img, sw, sh, &small);
		if (ret) {
			snprintf(err, errlen, "out of memory resampling %dx%d",
				 img.width, img.height);
			goto out;
		}
		final = &small;
	}
	if (img.orientation > 1) {
		ret = thumb_orient(final, img.orientation, &upright);
		if (ret) {
			snprintf(err, errlen, "out of memory turning %dx%d",
				 final->width, final->height);
			goto out;
		}
		final = &upright;
	}
	/* the colour profile goes with the pixels into the thumbnail */
	if (final != &img) {
		struct thumb_image *f = final == &small ? &small : &upright;
		f->icc = img.icc;
		f->icc_len = img.icc_len;
		img.icc = NULL;
		f->palette = img.palette;
		f->palette_len = img.palette_len;
		img.palette = NULL;
	}
	/* JPEG and PNG keep their format, as the app's save() does. */
	bool alpha = final->channels == 2 || final->channels == 4;
	if (opts->out_format != THUMB_FMT_UNKNOWN)
		res->thumb_format = opts->out_format;
	else if (res->format == THUMB_FMT_JPEG || res->format == THUMB_FMT_PNG)
		res->thumb_format = res->format;
	else /* what every browser shows */
		res->thumb_format = alpha ? THUMB_FMT_PNG : THUMB_FMT_JPEG;
	res->thumb_ext = res->thumb_format == THUMB_FMT_PNG ? ".png" : ".jpg";
	ret = thumb_encode(final, res->thumb_format, opts->jpeg_quality,
			   &res->data, &res->size, err, errlen);
	if (ret)
		goto out;
	res->thumb_width = final->width;
	res->thumb_height = final->height;
	if (thumb_is_video(res->format))
		res->frame_ms = img.frame_ms;
out:
	thumb_image_release(&img);
	thumb_image_release(&small);
	thumb_image_release(&upright);
	if (ret) {
		enum thumb_format f = res->format;
		thumb_result_release(res);
		res->format = f;
		res->mime_type = thumb_mime_type(f);
		res->frame_ms = -1;
	}
	return ret;
}

int thumb_make(const unsigned char *buf, size_t len,
	       const struct thumb_opts *opts, struct thumb_result *res,
	       char *err, size_t errlen)
{
	return make(buf, -1, len, buf, len, opts, res, err, errlen);
}

int thumb_make_fd(int fd, const struct thumb_opts *opts,
		  struct thumb_result *res, char *err, size_t errlen)
{
	unsigned char head[THUMB_HEAD];
	struct stat st;
	if (fstat(fd, &st)) {
		memset(res, 0, sizeof(*res));
		res->mime_type = thumb_mime_type(THUMB_FMT_UNKNOWN);
		snprintf(err, errlen, "cannot read the file: %s",
			 strerror(errno));
		return -errno;
	}
	ssize_t n = pread(fd, head, sizeof(head), 0);
	return make(NULL, fd, (uint64_t)st.st_size, head, n > 0 ? (size_t)n : 0,
		    opts, res, err, errlen);
}
