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

int thumb_resample(const struct thumb_image *src, int w, int h,
		   struct thumb_image *dst)
{
	struct coeffs cx = {0}, cy = {0};
	float *tmp = NULL;
	unsigned char *out = NULL;
	int ch = src->channels;
	int alpha = (ch == 2 || ch == 4) ? ch - 1 : -1;
	int ret = -ENOMEM;

	memset(dst, 0, sizeof(*dst));
	if (w <= 0 || h <= 0 || src->width <= 0 || src->height <= 0)
		return -EINVAL;
	if (coeffs_init(&cx, src->width, w) || coeffs_init(&cy, src->height, h))
		goto out_free;
	tmp = malloc(sizeof(float) * (size_t)w * src->height * ch);
	out = malloc((size_t)w * h * ch);
	if (!tmp || !out)
		goto out_free;

	/* Horizontal pass into floats; colour is premultiplied by alpha. */
	for (int y = 0; y < src->height; y++) {
		const unsigned char *row =
		    src->pixels + (size_t)y * src->width * ch;
		float *trow = tmp + (size_t)y * w * ch;
		for (int x = 0; x < w; x++) {
			const float *k = cx.w + (size_t)x * cx.stride;
			const unsigned char *p = row + (size_t)cx.start[x] * ch;
			float acc[4] = {0, 0, 0, 0};
			for (int i = 0; i < cx.count[x]; i++, p += ch) {
				float a = alpha >= 0 ? p[alpha] / 255.0f : 1.0f;
				for (int c = 0; c < ch; c++)
					acc[c] +=
					    k[i] *
					    (c == alpha ? p[c] : p[c] * a);
			}
			memcpy(trow + (size_t)x * ch, acc, sizeof(float) * ch);
		}
	}
	/* Vertical pass, then un-premultiply. */
	for (int y = 0; y < h; y++) {
		const float *k = cy.w + (size_t)y * cy.stride;
		unsigned char *orow = out + (size_t)y * w * ch;
		for (int x = 0; x < w; x++) {
			float acc[4] = {0, 0, 0, 0};
			const float *p =
			    tmp + ((size_t)cy.start[y] * w + x) * ch;
			for (int i = 0; i < cy.count[y];
			     i++, p += (size_t)w * ch)
				for (int c = 0; c < ch; c++)
					acc[c] += k[i] * p[c];
			if (alpha >= 0) {
				float a = acc[alpha] / 255.0f;
				for (int c = 0; c < ch; c++)
					if (c != alpha)
						acc[c] = a > 0.0f ? acc[c] / a
								  : 0.0f;
			}
			for (int c = 0; c < ch; c++)
				orow[(size_t)x * ch + c] = clamp8(acc[c]);
		}
	}
	dst->width = w;
	dst->height = h;
	dst->channels = ch;
	dst->pixels = out;
	out = NULL;
	ret = 0;
out_free:
	coeffs_release(&cx);
	coeffs_release(&cy);
	free(tmp);
	free(out);
	return ret;
}
