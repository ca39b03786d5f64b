/* tiff.c - the first page of a TIFF to 8-bit RGB or RGBA (libtiff, from
 * memory, errors caught per file rather than printed): from a reduced-
 * resolution copy of it when the file has one large enough, its rows
 * resampled a band at a time as they are decoded. */
#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tiffio.h>

#include "thumb/decoders.h"

/* The file, in memory or (fp set) read as libtiff asks for each part. */
struct mem {
	const unsigned char *buf;
	FILE *fp;
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
	if (m->fp) {
		if (fseeko(m->fp, (off_t)m->pos, SEEK_SET))
			return -1;
		n = (tmsize_t)fread(out, 1, (size_t)n, m->fp);
	} else {
		memcpy(out, m->buf + m->pos, (size_t)n);
	}
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

/* The page's size and whether it is a reduced-resolution copy. */
static bool page_size(TIFF *tif, uint32_t *w, uint32_t *h, bool *reduced)
{
	uint32_t type = 0;
	*w = *h = 0;
	TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, w);
	TIFFGetField(tif, TIFFTAG_IMAGELENGTH, h);
	*reduced = TIFFGetField(tif, TIFFTAG_SUBFILETYPE, &type) &&
		   (type & FILETYPE_REDUCEDIMAGE);
	return *w > 0 && *h > 0 && *w <= 0x7fffffff && *h <= 0x7fffffff;
}

/* Of the reduced-resolution copies of the first page (the pages after it,
 * and its SubIFDs, as scanners, libvips' pyramids and GDAL write them),
 * the directory of the smallest that is at least min_w x min_h with the
 * page's shape (a pixel's rounding apart), or 0 for none. Leaves the
 * first page current. */
static uint64_t reduced_page(TIFF *tif, uint32_t w, uint32_t h, int min_w,
			     int min_h)
{
	uint64_t best = 0, best_w = w;
	uint16_t nsub = 0;
	uint64_t *subs = NULL, sub[16];
	if (TIFFGetField(tif, TIFFTAG_SUBIFD, &nsub, &subs) && subs) {
		nsub = nsub > 16 ? 16 : nsub;
		memcpy(sub, subs, nsub * sizeof(uint64_t));
	}
	for (int i = 0; i < 16; i++) {
		bool ok = i < nsub ? TIFFSetSubDirectory(tif, sub[i])
				   : TIFFReadDirectory(tif);
		if (!ok && i >= nsub)
			break;
		if (!ok) {
			TIFFSetDirectory(tif, 0);
			continue;
		}
		uint32_t pw, ph;
		bool reduced;
		if (!page_size(tif, &pw, &ph, &reduced) || !reduced)
			continue;
		long dw = (long)pw * h - (long)ph * w;
		if (pw >= (uint32_t)min_w && ph >= (uint32_t)min_h && pw < w &&
		    labs(dw) <= (long)w + h && pw < best_w) {
			best = TIFFCurrentDirOffset(tif);
			best_w = pw;
		}
		if (i < nsub) /* back to the first page, for its next pages */
			TIFFSetDirectory(tif, 0);
	}
	TIFFSetDirectory(tif, 0);
	return best;
}

/* RGBA words to rgb(a) bytes, associated alpha undone. */
static void to_bytes(const uint32_t *in, unsigned char *px, size_t n, int ch,
		     bool assoc)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t p = in[i];
		px[i * ch] = (unsigned char)TIFFGetR(p);
		px[i * ch + 1] = (unsigned char)TIFFGetG(p);
		px[i * ch + 2] = (unsigned char)TIFFGetB(p);
		if (ch == 4)
			px[i * ch + 3] = (unsigned char)TIFFGetA(p);
	}
	if (ch != 4 || !assoc)
		return;
	/* libtiff hands premultiplied alpha back as it is stored */
	for (size_t i = 0; i < n; i++) {
		unsigned a = px[i * 4 + 3];
		for (int c = 0; c < 3 && a; c++) {
			unsigned v = (px[i * 4 + c] * 255u + a / 2) / a;
			px[i * 4 + c] = (unsigned char)(v > 255 ? 255 : v);
		}
	}
}

/* The current page, upright, into img: a band of rows at a time through a
 * resampler to tw x th when the page is stored top-down (what cameras and
 * scanners write), else whole. */
static int read_page(TIFF *tif, struct mem *m, uint32_t w, uint32_t h, int tw,
		     int th, struct thumb_image *img, char *err, size_t errlen)
{
	uint16_t extra = 0, *types = NULL, orient = ORIENTATION_TOPLEFT;
	uint32_t band = 0;
	TIFFGetFieldDefaulted(tif, TIFFTAG_EXTRASAMPLES, &extra, &types);
	TIFFGetFieldDefaulted(tif, TIFFTAG_ORIENTATION, &orient);
	int ch =
	    extra > 0 && types && types[0] != EXTRASAMPLE_UNSPECIFIED ? 4 : 3;
	bool assoc = ch == 4 && types[0] == EXTRASAMPLE_ASSOCALPHA;
	bool stream =
	    orient == ORIENTATION_TOPLEFT && (tw != (int)w || th != (int)h);
	if (TIFFIsTiled(tif))
		TIFFGetField(tif, TIFFTAG_TILELENGTH, &band);
	else
		TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &band);
	if (!stream || band == 0 || band > h)
		band = h;
	uint32_t *raster = NULL;
	unsigned char *px = NULL;
	struct thumb_scaler *scaler = NULL;
	int ret = 0;
	char emsg[1024] = "";
	TIFFRGBAImage ri;
	if (!TIFFRGBAImageOK(tif, emsg) ||
	    !TIFFRGBAImageBegin(&ri, tif, 0, emsg)) {
		snprintf(err, errlen, "corrupt TIFF: %s",
			 m->msg[0] ? m->msg : emsg);
		return -EINVAL;
	}
	ri.req_orientation = ORIENTATION_TOPLEFT;
	raster = malloc((size_t)w * band * sizeof(uint32_t));
	px = malloc((size_t)w * (stream ? band : h) * ch);
	if (stream)
		scaler = thumb_scaler_new((int)w, (int)h, ch, tw, th);
	if (!raster || !px || (stream && !scaler)) {
		snprintf(err, errlen, "out of memory for a %ux%u TIFF", w, h);
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t y = 0; y < h; y += band) {
		uint32_t n = h - y < band ? h - y : band;
		ri.row_offset = (int)y;
		ri.col_offset = 0;
		if (!TIFFRGBAImageGet(&ri, raster, w, n)) {
			snprintf(err, errlen, "corrupt TIFF: %s",
				 m->msg[0] ? m->msg
					   : "cannot read the first page");
			ret = -EINVAL;
			goto out;
		}
		if (!stream) {
			to_bytes(raster, px, (size_t)w * h, ch, assoc);
			break;
		}
		to_bytes(raster, px, (size_t)w * n, ch, assoc);
		for (uint32_t r = 0; r < n; r++)
			thumb_scaler_row(scaler, px + (size_t)r * w * ch);
	}
	if (stream) {
		ret = thumb_scaler_finish(scaler, img);
		if (ret) {
			snprintf(err, errlen,
				 "out of memory resampling a TIFF");
			goto out;
		}
	} else {
		img->width = (int)w;
		img->height = (int)h;
		img->channels = ch;
		img->pixels = px;
		px = NULL;
	}
	img->orientation = 1;
out:
	TIFFRGBAImageEnd(&ri);
	thumb_scaler_free(scaler);
	free(raster);
	free(px);
	return ret;
}

int thumb_decode_tiff(const struct thumb_src *in, int box_w, int box_h,
		      uint64_t max_pixels, struct thumb_image *img, int *w,
		      int *h, char *err, size_t errlen)
{
	struct mem m = {in->buf, in->fp, (toff_t)in->len, 0, ""};
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
	uint32_t pw, ph;
	bool reduced;
	int ret;
	if (!page_size(tif, &pw, &ph, &reduced)) {
		*w = (int)(pw > 0x7fffffff ? 0 : pw);
		*h = (int)(ph > 0x7fffffff ? 0 : ph);
		snprintf(err, errlen, "TIFF declares an impossible size");
		ret = pw <= 0x7fffffff && ph <= 0x7fffffff
			  ? thumb_check_size(*w, *h, max_pixels, err, errlen)
			  : -EINVAL;
		goto out_close;
	}
	*w = (int)pw;
	*h = (int)ph;
	ret = thumb_check_size(*w, *h, max_pixels, err, errlen);
	if (ret)
		goto out_close;
	int tw = *w, th = *h;
	if (box_w > 0 && box_h > 0) {
		thumb_fit(*w, *h, box_w, box_h, &tw, &th);
		/* the smallest reduced copy that holds the thumbnail: it was
		 * filtered from the whole page (libvips takes it so too) */
		uint64_t dir = reduced_page(tif, pw, ph, tw, th);
		uint32_t rw, rh;
		if (dir && TIFFSetSubDirectory(tif, dir) &&
		    page_size(tif, &rw, &rh, &reduced) &&
		    read_page(tif, &m, rw, rh, tw, th, img, err, errlen) == 0)
			goto out_close;
		/* none, or it does not read: the first page then */
		m.msg[0] = '\0';
		TIFFSetDirectory(tif, 0);
	}
	ret = read_page(tif, &m, pw, ph, tw, th, img, err, errlen);
out_close:
	TIFFClose(tif);
	return ret;
}
