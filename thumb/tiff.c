/* tiff.c - the first page of a TIFF to 8-bit RGB or RGBA (libtiff, from
 * memory, errors caught per file rather than printed). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tiffio.h>

#include "thumb/decoders.h"

struct mem {
	const unsigned char *buf;
	toff_t len;
	toff_t pos;
	char msg[200];
};

static tmsize_t mem_read(thandle_t h, void *out, tmsize_t n)
{
	struct mem *m = h;
	if (m->pos >= m->len)
		return 0;
	if ((toff_t)n > m->len - m->pos)
		n = (tmsize_t)(m->len - m->pos);
	memcpy(out, m->buf + m->pos, (size_t)n);
	m->pos += (toff_t)n;
	return n;
}

static tmsize_t mem_write(thandle_t h, void *in, tmsize_t n)
{
	(void)h;
	(void)in;
	(void)n;
	return -1;
}

static toff_t mem_seek(thandle_t h, toff_t off, int whence)
{
	struct mem *m = h;
	toff_t base = whence == SEEK_CUR   ? m->pos
		      : whence == SEEK_END ? m->len
					   : 0;
	m->pos = base + off;
	return m->pos;
}

static int mem_close(thandle_t h)
{
	(void)h;
	return 0;
}

static toff_t mem_size(thandle_t h)
{
	return ((struct mem *)h)->len;
}

static int on_error(TIFF *tif, void *user, const char *module, const char *fmt,
		    va_list ap)
{
	struct mem *m = user;
	(void)tif;
	(void)module;
	if (!m->msg[0])
		vsnprintf(m->msg, sizeof(m->msg), fmt, ap);
	return 1;
}

static int on_warning(TIFF *tif, void *user, const char *module,
		      const char *fmt, va_list ap)
{
	(void)tif;
	(void)user;
	(void)module;
	(void)fmt;
	(void)ap;
	return 1;
}

int thumb_decode_tiff(const unsigned char *buf, size_t len, uint64_t max_pixels,
		      struct thumb_image *img, int *w, int *h, char *err,
		      size_t errlen)
{
	struct mem m = {buf, (toff_t)len, 0, ""};
	uint32_t *raster = NULL;
	uint32_t tw = 0, th = 0;
	uint16_t extra = 0, *extra_types = NULL;
	int ret = 0;
	TIFFOpenOptions *o = TIFFOpenOptionsAlloc();
	if (!o) {
		snprintf(err, errlen, "out of memory for a TIFF decoder");
		return -ENOMEM;
	}
	TIFFOpenOptionsSetErrorHandlerExtR(o, on_error, &m);
	TIFFOpenOptionsSetWarningHandlerExtR(o, on_warning, &m);
	TIFF *tif =
	    TIFFClientOpenExt("image", "rm", &m, mem_read, mem_write, mem_seek,
			      mem_close, mem_size, NULL, NULL, o);
	TIFFOpenOptionsFree(o);
	if (!tif) {
		snprintf(err, errlen, "corrupt TIFF: %s",
			 m.msg[0] ? m.msg : "cannot open");
		return -EINVAL;
	}
	TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &tw);
	TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &th);
	*w = (int)tw;
	*h = (int)th;
	if (tw > 0x7fffffff || th > 0x7fffffff) {
		snprintf(err, errlen, "TIFF declares an impossible size");
		ret = -EINVAL;
		goto out_close;
	}
	ret = thumb_check_size((int)tw, (int)th, max_pixels, err, errlen);
	if (ret)
		goto out_close;
	TIFFGetFieldDefaulted(tif, TIFFTAG_EXTRASAMPLES, &extra, &extra_types);
	int alpha = extra > 0 && extra_types &&
		    extra_types[0] != EXTRASAMPLE_UNSPECIFIED;
	raster = malloc((size_t)tw * th * sizeof(uint32_t));
	if (!raster) {
		snprintf(err, errlen, "out of memory for a %ux%u TIFF", tw, th);
		ret = -ENOMEM;
		goto out_close;
	}
	/* upright whatever the TIFF's own orientation tag says */
	if (!TIFFReadRGBAImageOriented(tif, tw, th, raster, ORIENTATION_TOPLEFT,
				       0)) {
		snprintf(err, errlen, "corrupt TIFF: %s",
			 m.msg[0] ? m.msg : "cannot read the first page");
		ret = -EINVAL;
		goto out_close;
	}
	int ch = alpha ? 4 : 3;
	unsigned char *px = malloc((size_t)tw * th * ch);
	if (!px) {
		snprintf(err, errlen, "out of memory for a %ux%u TIFF", tw, th);
		ret = -ENOMEM;
		goto out_close;
	}
	for (size_t i = 0; i < (size_t)tw * th; i++) {
		uint32_t p = raster[i];
		px[i * ch] = (unsigned char)TIFFGetR(p);
		px[i * ch + 1] = (unsigned char)TIFFGetG(p);
		px[i * ch + 2] = (unsigned char)TIFFGetB(p);
		if (alpha)
			px[i * ch + 3] = (unsigned char)TIFFGetA(p);
	}
	if (alpha && extra_types[0] == EXTRASAMPLE_ASSOCALPHA) {
		/* libtiff hands premultiplied alpha back as it is stored */
		for (size_t i = 0; i < (size_t)tw * th; i++) {
			unsigned a = px[i * 4 + 3];
			for (int c = 0; c < 3 && a; c++) {
				unsigned v = (px[i * 4 + c] * 255u + a / 2) / a;
				px[i * 4 + c] =
				    (unsigned char)(v > 255 ? 255 : v);
			}
		}
	}
	img->width = (int)tw;
	img->height = (int)th;
	img->channels = ch;
	img->pixels = px;
	img->orientation = 1;
out_close:
	free(raster);
	TIFFClose(tif);
	return ret;
}
