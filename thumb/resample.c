/* resample.c - separable Lanczos (a=3) resampling, as Pillow's resize does. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "thumb.h"

#define LANCZOS_A 3.0

static double sinc(double x)
{
	if (x == 0.0)
		return 1.0;
	x *= M_PI;
	return sin(x) / x;
}

static double lanczos(double x)
{
	if (x <= -LANCZOS_A || x >= LANCZOS_A)
		return 0.0;
	return sinc(x) * sinc(x / LANCZOS_A);
}

/* The coefficients of one pass, computed once: output pixel i reads input
 * pixels start[i] .. start[i] + count[i] - 1 with weights
 * w[i * stride ..]; each row of weights sums to 1. The window is clipped
 * at the edges and renormalised, so edges are neither dark nor light. */
struct coeffs {
	int *start;
	int *count;
	float *w;
	int stride;
};

static void coeffs_release(struct coeffs *c)
{
	free(c->start);
	free(c->count);
	free(c->w);
}

static int coeffs_init(struct coeffs *c, int in, int out)
{
	double scale = (double)in / out;
	double fscale = scale < 1.0 ? 1.0 : scale;
	double support = LANCZOS_A * fscale;

	c->stride = (int)ceil(support) * 2 + 1;
	c->start = calloc((size_t)out, sizeof(int));
	c->count = calloc((size_t)out, sizeof(int));
	c->w = calloc((size_t)out * c->stride, sizeof(float));
	double *tmp = malloc(sizeof(double) * c->stride);
	if (!c->start || !c->count || !c->w || !tmp) {
		free(tmp);
		coeffs_release(c);
		return -ENOMEM;
	}
	for (int i = 0; i < out; i++) {
		double center = (i + 0.5) * scale;
		int lo = (int)(center - support + 0.5);
		int hi = (int)(center + support + 0.5);
		if (lo < 0)
			lo = 0;
		if (hi > in)
			hi = in;
		if (hi - lo > c->stride)
			hi = lo + c->stride;
		double sum = 0.0;
		for (int x = lo; x < hi; x++) {
			tmp[x - lo] = lanczos((x - center + 0.5) / fscale);
			sum += tmp[x - lo];
		}
		for (int x = lo; x < hi; x++)
			c->w[(size_t)i * c->stride + (x - lo)] =
			    (float)(sum != 0.0 ? tmp[x - lo] / sum : 0.0);
		c->start[i] = lo;
		c->count[i] = hi - lo;
	}
	free(tmp);
	return 0;
}

static unsigned char clamp8(float v)
{
	if (v <= 0.0f)
		return 0;
	if (v >= 255.0f)
		return 255;
	return (unsigned char)(v + 0.5f);
}

/* One input row to floats, colour premultiplied by alpha when there is
 * one, so the filter does not bleed the colour of transparent pixels. */
static void row_to_float(const unsigned char *in, float *out, int w, int ch,
			 int alpha)
{
	size_t n = (size_t)w * ch;
	for (size_t i = 0; i < n; i++)
		out[i] = in[i];
	if (alpha < 0)
		return;
	for (int x = 0; x < w; x++) {
		float *p = out + (size_t)x * ch, a = p[alpha] / 255.0f;
		for (int c = 0; c < ch; c++)
			if (c != alpha)
				p[c] *= a;
	}
}

/* The horizontal pass of one row; CH is a constant in each caller, so the
 * inner loop is straight multiply-adds. */
static inline void hpass(const float *in, float *out, const struct coeffs *cx,
			 int w, const int CH)
{
	for (int x = 0; x < w; x++) {
		const float *k = cx->w + (size_t)x * cx->stride;
		const float *p = in + (size_t)cx->start[x] * CH;
		float acc[4] = {0, 0, 0, 0};
		for (int i = 0; i < cx->count[x]; i++, p += CH)
			for (int c = 0; c < CH; c++)
				acc[c] += k[i] * p[c];
		for (int c = 0; c < CH; c++)
			out[(size_t)x * CH + c] = acc[c];
	}
}

static void hpass_any(const float *in, float *out, const struct coeffs *cx,
		      int w, int ch)
{
	switch (ch) {
	case 1:
		hpass(in, out, cx, w, 1);
		break;
	case 2:
		hpass(in, out, cx, w, 2);
		break;
	case 3:
		hpass(in, out, cx, w, 3);
		break;
	default:
		hpass(in, out, cx, w, 4);
		break;
	}
}

int thumb_resample(const struct thumb_image *src, int w, int h,
		   struct thumb_image *dst)
{
	struct coeffs cx = {0}, cy = {0};
	float *tmp = NULL, *row = NULL, *acc = NULL;
	unsigned char *out = NULL;
	int ch = src->channels;
	int alpha = (ch == 2 || ch == 4) ? ch - 1 : -1;
	int ret = -ENOMEM;

	memset(dst, 0, sizeof(*dst));
	if (w <= 0 || h <= 0 || src->width <= 0 || src->height <= 0 || ch < 1 ||
	    ch > 4)
		return -EINVAL;
	if (coeffs_init(&cx, src->width, w) || coeffs_init(&cy, src->height, h))
		goto out_free;
	size_t ow = (size_t)w * ch;
	tmp = malloc(sizeof(float) * ow * src->height);
	row = malloc(sizeof(float) * (size_t)src->width * ch);
	acc = malloc(sizeof(float) * ow);
	out = malloc(ow * h);
	if (!tmp || !row || !acc || !out)
		goto out_free;

	/* Horizontal pass, row by row, into floats. */
	for (int y = 0; y < src->height; y++) {
		row_to_float(src->pixels + (size_t)y * src->width * ch, row,
			     src->width, ch, alpha);
		hpass_any(row, tmp + (size_t)y * ow, &cx, w, ch);
	}
	/* Vertical pass: each output row is a weighted sum of whole rows,
	 * a contiguous loop the compiler vectorises. */
	for (int y = 0; y < h; y++) {
		const float *k = cy.w + (size_t)y * cy.stride;
		memset(acc, 0, sizeof(float) * ow);
		for (int i = 0; i < cy.count[y]; i++) {
			const float *r = tmp + (size_t)(cy.start[y] + i) * ow;
			float kk = k[i];
			for (size_t j = 0; j < ow; j++)
				acc[j] += kk * r[j];
		}
		unsigned char *orow = out + (size_t)y * ow;
		if (alpha >= 0) {
			for (int x = 0; x < w; x++) {
				float *p = acc + (size_t)x * ch;
				float a = p[alpha] / 255.0f;
				for (int c = 0; c < ch; c++)
					if (c != alpha)
						p[c] =
						    a > 0.0f ? p[c] / a : 0.0f;
			}
		}
		for (size_t j = 0; j < ow; j++)
			orow[j] = clamp8(acc[j]);
	}
	dst->width = w;
	dst->height = h;
	dst->channels = ch;
	dst->pixels = out;
	dst->orientation = 1;
	out = NULL;
	ret = 0;
out_free:
	coeffs_release(&cx);
	coeffs_release(&cy);
	free(tmp);
	free(row);
	free(acc);
	free(out);
	return ret;
}
