/* pdf.c - PDF (poppler, drawn by cairo): the first page rendered at the
 * thumbnail's size on white, as libvips' pdfload does for vipsthumbnail;
 * its size in points (pixels at 72 dpi) is the original's. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cairo.h>
#include <poppler.h>

#include "thumb/decoders.h"

/* The largest side of a page, in points: PDF's own limit (14400, ISO
 * 32000-1 annex C) times its largest UserUnit we accept. */
#define PAGE_MAX 200000.0

int thumb_decode_pdf(const unsigned char *buf, size_t len, int box_w, int box_h,
		     uint64_t max_pixels, struct thumb_image *img, int *w,
		     int *h, char *err, size_t errlen)
{
	GError *ge = NULL;
	GBytes *bytes = g_bytes_new_static(buf, len);
	PopplerDocument *doc =
	    poppler_document_new_from_bytes(bytes, NULL, &ge);
	PopplerPage *page = NULL;
	cairo_surface_t *s = NULL;
	int ret = -EINVAL;
	if (!doc) {
		snprintf(err, errlen, "not a PDF poppler reads: %s",
			 ge ? ge->message : "?");
		goto out;
	}
	if (poppler_document_get_n_pages(doc) < 1 ||
	    !(page = poppler_document_get_page(doc, 0))) {
		snprintf(err, errlen, "a PDF without a page");
		goto out;
	}
	double pw = 0, ph = 0; /* as shown: its rotation applied */
	poppler_page_get_size(page, &pw, &ph);
	if (!(pw >= 1 && ph >= 1 && pw <= PAGE_MAX && ph <= PAGE_MAX)) {
		snprintf(err, errlen, "a PDF page of %gx%g points", pw, ph);
		goto out;
	}
	int ow = (int)lround(pw), oh = (int)lround(ph), tw = ow, th = oh;
	if ((ret = thumb_check_size(ow, oh, max_pixels, err, errlen)))
		goto out;
	if (box_w > 0 && box_h > 0)
		thumb_target(ow, oh, 1, box_w, box_h, &tw, &th);
	s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, tw, th);
	if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
		snprintf(err, errlen, "out of memory drawing %dx%d", tw, th);
		ret = -ENOMEM;
		goto out;
	}
	cairo_t *cr = cairo_create(s);
	cairo_set_source_rgb(cr, 1, 1, 1);
	cairo_paint(cr);
	cairo_scale(cr, tw / pw, th / ph);
	poppler_page_render(page, cr);
	cairo_destroy(cr);
	cairo_surface_flush(s);
	img->pixels = malloc((size_t)tw * (size_t)th * 3);
	if (!img->pixels) {
		snprintf(err, errlen, "out of memory drawing %dx%d", tw, th);
		ret = -ENOMEM;
		goto out;
	}
	const unsigned char *data = cairo_image_surface_get_data(s);
	int stride = cairo_image_surface_get_stride(s);
	for (int y = 0; y < th; y++) {
		const uint32_t *row =
		    (const uint32_t *)(const void *)(data + (size_t)y * stride);
		unsigned char *o = img->pixels + (size_t)y * (size_t)tw * 3;
		for (int x = 0; x < tw; x++) {
			uint32_t p = row[x]; /* xRGB, native order */
			o[3 * x] = (unsigned char)(p >> 16);
			o[3 * x + 1] = (unsigned char)(p >> 8);
			o[3 * x + 2] = (unsigned char)p;
		}
	}
	img->width = tw;
	img->height = th;
	img->channels = 3;
	img->orientation = 1;
	*w = ow;
	*h = oh;
	ret = 0;
out:
	if (s)
		cairo_surface_destroy(s);
	if (page)
		g_object_unref(page);
	if (doc)
		g_object_unref(doc);
	if (ge)
		g_error_free(ge);
	g_bytes_unref(bytes);
	return ret;
}
