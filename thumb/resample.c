/* resample.c - separable Lanczos (a=3) resampling, as Pillow's resize does. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "thumb/decoders.h"

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

/* A resampler fed one input row at a time. The vertical pass goes first:
 * each row, as it comes, is added with its weight into the few output
 * rows whose window holds it - long contiguous loops the compiler
 * vectorises - so the whole input image is never held; the horizontal
 * pass then runs on the out_h accumulated rows only. */
struct thumb_scaler {
	struct coeffs cx, cy;
	int in_w, in_h, ch, alpha, out_w, out_h;
	int rows;    /* pushed so far */
	int first;   /* the first output row whose window is still open */
	size_t iw;   /* floats in an input row */
	float *vacc; /* out_h rows of in_w x ch: the vertical pass */
	float *row;
};

void thumb_scaler_free(struct thumb_scaler *s)
{
	if (!s)
		return;
	coeffs_release(&s->cx);
	coeffs_release(&s->cy);
	free(s->vacc);
	free(s->row);
	free(s);
}

struct thumb_scaler *thumb_scaler_new(int in_w, int in_h, int ch, int out_w,
				      int out_h)
{
	if (in_w <= 0 || in_h <= 0 || out_w <= 0 || out_h <= 0 || ch < 1 ||
	    ch > 4)
		return NULL;
	struct thumb_scaler *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->in_w = in_w;
	s->in_h = in_h;
	s->ch = ch;
	s->alpha = (ch == 2 || ch == 4) ? ch - 1 : -1;
	s->out_w = out_w;
	s->out_h = out_h;
	s->iw = (size_t)in_w * ch;
	s->vacc = calloc(s->iw * out_h, sizeof(float));
	s->row = malloc(sizeof(float) * s->iw);
	if (!s->vacc || !s->row || coeffs_init(&s->cx, in_w, out_w) ||
	    coeffs_init(&s->cy, in_h, out_h)) {
		thumb_scaler_free(s);
		return NULL;
	}
	return s;
}

/* a += k * x: the vertical pass's inner loop, which vectorises. */
static void axpy(float *restrict a, const float *restrict x, size_t n, float k)
{
	for (size_t j = 0; j < n; j++)
		a[j] += k * x[j];
}

void thumb_scaler_row(struct thumb_scaler *s, const unsigned char *row)
{
	int r = s->rows;
	if (r >= s->in_h)
		return;
	row_to_float(row, s->row, s->in_w, s->ch, s->alpha);
	const struct coeffs *cy = &s->cy;
	while (s->first < s->out_h &&
	       cy->start[s->first] + cy->count[s->first] <= r)
		s->first++;
	for (int y = s->first; y < s->out_h && cy->start[y] <= r; y++)
		axpy(s->vacc + (size_t)y * s->iw, s->row, s->iw,
		     cy->w[(size_t)y * cy->stride + (r - cy->start[y])]);
	s->rows++;
}

int thumb_scaler_finish(struct thumb_scaler *s, struct thumb_image *dst)
{
	int w = s->out_w, h = s->out_h, ch = s->ch, alpha = s->alpha;
	size_t ow = (size_t)w * ch;
	memset(dst, 0, sizeof(*dst));
	if (s->rows != s->in_h)
		return -EINVAL;
	float *acc = malloc(sizeof(float) * ow);
	unsigned char *out = malloc(ow * h);
	if (!acc || !out) {
		free(acc);
		free(out);
		return -ENOMEM;
	}
	for (int y = 0; y < h; y++) {
		hpass_any(s->vacc + (size_t)y * s->iw, acc, &s->cx, w, ch);
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
	free(acc);
	dst->width = w;
	dst->height = h;
	dst->channels = ch;
	dst->pixels = out;
	dst->orientation = 1;
	return 0;
}

int thumb_resample(const struct thumb_image *src, int w, int h,
		   struct thumb_image *dst)
{
	memset(dst, 0, sizeof(*dst));
	struct thumb_scaler *s =
	    thumb_scaler_new(src->width, src->height, src->channels, w, h);
	if (!s)
		return w <= 0 || h <= 0 || src->width <= 0 ? -EINVAL : -ENOMEM;
	for (int y = 0; y < src->height; y++)
		thumb_scaler_row(s, src->pixels +
					(size_t)y * src->width * src->channels);
	int ret = thumb_scaler_finish(s, dst);
	thumb_scaler_free(s);
	return ret;
}
