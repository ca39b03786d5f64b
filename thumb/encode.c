/* encode.c - 8-bit images to JPEG (libjpeg-turbo) or PNG (libpng) in memory. */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "thumb.h"

struct enc_err {
	struct jpeg_error_mgr mgr;
	jmp_buf jmp;
	char msg[JMSG_LENGTH_MAX];
};

static void enc_jpeg_exit(j_common_ptr cinfo)
{
	struct enc_err *e = (struct enc_err *)cinfo->err;
	(*cinfo->err->format_message)(cinfo, e->msg);
	longjmp(e->jmp, 1);
}

static int encode_jpeg(const struct thumb_image *img, int quality,
		       unsigned char **out, size_t *out_len, char *err,
		       size_t errlen)
{
	struct jpeg_compress_struct cinfo;
	struct enc_err jerr;
	unsigned char *volatile mem = NULL;
	unsigned long mem_len = 0;
	unsigned char *volatile rgb = NULL;
	volatile int ret = 0;

	memset(&cinfo, 0, sizeof(cinfo));
	cinfo.err = jpeg_std_error(&jerr.mgr);
	jerr.mgr.error_exit = enc_jpeg_exit;
	if (setjmp(jerr.jmp)) {
		snprintf(err, errlen, "JPEG encoder failed: %s", jerr.msg);
		ret = -EIO;
		goto out_destroy;
	}
	jpeg_create_compress(&cinfo);
	jpeg_mem_dest(&cinfo, (unsigned char **)&mem, &mem_len);
	cinfo.image_width = (JDIMENSION)img->width;
	cinfo.image_height = (JDIMENSION)img->height;
	/* JPEG has no alpha: gray+alpha becomes gray, RGBA becomes RGB. */
	int gray = img->channels <= 2;
	cinfo.input_components = gray ? 1 : 3;
	cinfo.in_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(&cinfo);
	jpeg_set_quality(&cinfo, quality, TRUE);
	jpeg_start_compress(&cinfo, TRUE);
	if (img->icc)
		jpeg_write_icc_profile(&cinfo, img->icc,
				       (unsigned int)img->icc_len);
	int drop = img->channels == 2 || img->channels == 4;
	if (drop) {
		rgb = malloc((size_t)img->width * cinfo.input_components);
		if (!rgb) {
			snprintf(err, errlen, "out of memory for a JPEG row");
			ret = -ENOMEM;
			jpeg_abort_compress(&cinfo);
			goto out_destroy;
		}
	}
	while (cinfo.next_scanline < cinfo.image_height) {
		const unsigned char *src =
		    img->pixels +
		    (size_t)cinfo.next_scanline * img->width * img->channels;
		JSAMPROW row = (JSAMPROW)src;
		if (drop) {
			int oc = cinfo.input_components;
			for (int x = 0; x < img->width; x++)
				memcpy(rgb + (size_t)x * oc,
				       src + (size_t)x * img->channels, oc);
			row = rgb;
		}
		jpeg_write_scanlines(&cinfo, &row, 1);
	}
	jpeg_finish_compress(&cinfo);
	*out = mem;
	*out_len = mem_len;
	mem = NULL;
out_destroy:
	jpeg_destroy_compress(&cinfo);
	free(mem);
	free(rgb);
	return ret;
}

struct png_sink {
	unsigned char *buf;
	size_t len;
	size_t cap;
	int oom;
};

struct png_enc_err {
	char msg[200];
};

static void png_write_mem(png_structp png, png_bytep data, size_t n)
{
	struct png_sink *s = png_get_io_ptr(png);
	if (s->len + n > s->cap) {
		size_t cap = s->cap ? s->cap : 65536;
		while (cap < s->len + n)
			cap *= 2;
		unsigned char *nb = realloc(s->buf, cap);
		if (!nb) {
			s->oom = 1;
			png_error(png, "out of memory");
		}
		s->buf = nb;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, data, n);
	s->len += n;
}

static void png_flush_mem(png_structp png)
{
	(void)png;
}

static void png_enc_error(png_structp png, png_const_charp msg)
{
	struct png_enc_err *e = png_get_error_ptr(png);
	snprintf(e->msg, sizeof(e->msg), "%s", msg);
	png_longjmp(png, 1);
}

static void png_enc_warning(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg; /* a profile left out is no reason to fail, nor to shout */
}

/* Each RGB(A) pixel of img as the index of the nearest entry of its
 * palette (alpha counted as a fourth colour), through a small cache of
 * the colours already seen. Returns a malloc'd w*h array, or NULL. */
static unsigned char *to_palette(const struct thumb_image *img)
{
	enum { SLOTS = 4096 };
	uint32_t keys[SLOTS];
	unsigned char vals[SLOTS];
	bool used[SLOTS] = {false};
	size_t n = (size_t)img->width * img->height;
	unsigned char *idx = malloc(n ? n : 1);
	if (!idx)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const unsigned char *p = img->pixels + i * img->channels;
		int a = img->channels == 4 ? p[3] : 255;
		uint32_t key = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
			       (uint32_t)p[2] << 8 | (uint32_t)a;
		uint32_t slot = (key * 2654435761u) >> 20;
		if (used[slot] && keys[slot] == key) {
			idx[i] = vals[slot];
			continue;
		}
		long best = -1;
		int pick = 0;
		for (int k = 0; k < img->palette_len; k++) {
			const unsigned char *q = img->palette + 4 * k;
			long dr = p[0] - q[0], dg = p[1] - q[1],
			     db = p[2] - q[2], da = a - q[3];
			long d = a == 0 ? da * da
					: dr * dr + dg * dg + db * db + da * da;
			if (best < 0 || d < best) {
				best = d;
				pick = k;
			}
		}
		idx[i] = (unsigned char)pick;
		used[slot] = true;
		keys[slot] = key;
		vals[slot] = (unsigned char)pick;
	}
	return idx;
}

static int encode_png(const struct thumb_image *img, unsigned char **out,
		      size_t *out_len, char *err, size_t errlen)
{
	static const int types[5] = {0, PNG_COLOR_TYPE_GRAY,
				     PNG_COLOR_TYPE_GRAY_ALPHA,
				     PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGBA};
	struct png_sink sink = {NULL, 0, 0, 0};
	struct png_enc_err perr = {""};
	png_structp png = NULL;
	png_infop info = NULL;
	volatile int ret = 0;
	/* a palette image keeps its palette (and tRNS), as Pillow's does */
	const volatile bool indexed =
	    img->palette && img->palette_len > 0 &&
	    (img->channels == 3 || img->channels == 4);
	unsigned char *volatile idx = indexed ? to_palette(img) : NULL;
	if (indexed && !idx) {
		snprintf(err, errlen, "out of memory for a palette PNG");
		return -ENOMEM;
	}

	png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &perr,
				      png_enc_error, png_enc_warning);
	if (png)
		info = png_create_info_struct(png);
	if (!png || !info) {
		snprintf(err, errlen, "out of memory for a PNG encoder");
		ret = -ENOMEM;
		goto out_destroy;
	}
	if (setjmp(png_jmpbuf(png))) {
		snprintf(err, errlen, "PNG encoder failed: %s", perr.msg);
		ret = sink.oom ? -ENOMEM : -EIO;
		goto out_destroy;
	}
	png_set_write_fn(png, &sink, png_write_mem, png_flush_mem);
	png_set_IHDR(png, info, (png_uint_32)img->width,
		     (png_uint_32)img->height, 8,
		     indexed ? PNG_COLOR_TYPE_PALETTE : types[img->channels],
		     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
		     PNG_FILTER_TYPE_DEFAULT);
	if (indexed) {
		png_color plte[256];
		png_byte trans[256];
		int n_trans = 0;
		for (int k = 0; k < img->palette_len; k++) {
			plte[k].red = img->palette[4 * k];
			plte[k].green = img->palette[4 * k + 1];
			plte[k].blue = img->palette[4 * k + 2];
			trans[k] = img->palette[4 * k + 3];
			if (trans[k] != 255)
				n_trans = k + 1;
		}
		png_set_PLTE(png, info, plte, img->palette_len);
		if (n_trans)
			png_set_tRNS(png, info, trans, n_trans, NULL);
	}
	if (img->icc) {
		/* The profile goes as the original has it; one libpng finds
		 * malformed is left out (a warning), never the thumbnail. */
		png_set_option(png, PNG_SKIP_sRGB_CHECK_PROFILE, PNG_OPTION_ON);
		png_set_benign_errors(png, 1);
		png_set_iCCP(png, info, "ICC profile",
			     PNG_COMPRESSION_TYPE_BASE, img->icc,
			     (png_uint_32)img->icc_len);
	}
	png_write_info(png, info);
	for (int y = 0; y < img->height; y++)
		png_write_row(png, indexed
				       ? idx + (size_t)y * img->width
				       : img->pixels + (size_t)y * img->width *
							   img->channels);
	png_write_end(png, NULL);
	*out = sink.buf;
	*out_len = sink.len;
	sink.buf = NULL;
out_destroy:
	png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
	free(sink.buf);
	free(idx);
	return ret;
}

int thumb_encode(const struct thumb_image *img, enum thumb_format fmt,
		 int quality, unsigned char **out, size_t *out_len, char *err,
		 size_t errlen)
{
	*out = NULL;
	*out_len = 0;
	if (img->channels < 1 || img->channels > 4) {
		snprintf(err, errlen, "cannot encode %d channels",
			 img->channels);
		return -EINVAL;
	}
	switch (fmt) {
	case THUMB_FMT_JPEG:
		return encode_jpeg(img, quality, out, out_len, err, errlen);
	case THUMB_FMT_PNG:
		return encode_png(img, out, out_len, err, errlen);
	default:
		snprintf(err, errlen, "no encoder for this format");
		return -ENOTSUP;
	}
}
