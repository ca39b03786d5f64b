/* resample.c - separable Lanczos (a=3) resampling, as Pillow's resize does. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
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

/* The same for 3 and 4 channels with one pixel in one 4-float vector
 * (GCC's and clang's vector extension): each tap is one multiply-add. For
 * RGB the fourth lane reads the next pixel's red, which is summed and
 * dropped; the row has one float of padding for the last pixel. */
typedef float v4f __attribute__((vector_size(16)));

static inline void hpass_v4(const float *in, float *out,
			    const struct coeffs *cx, int w, const int CH)
{
	for (int x = 0; x < w; x++) {
		const float *k = cx->w + (size_t)x * cx->stride;
		const float *p = in + (size_t)cx->start[x] * CH;
		/* two sums, so that the multiply-adds do not wait on each
		 * other's latency */
		v4f a0 = {0, 0, 0, 0}, a1 = {0, 0, 0, 0}, v, u;
		int i = 0, n = cx->count[x];
		for (; i + 1 < n; i += 2, p += 2 * CH) {
			memcpy(&v, p, sizeof(v));
			memcpy(&u, p + CH, sizeof(u));
			a0 += k[i] * v;
			a1 += k[i + 1] * u;
		}
		if (i < n) {
			memcpy(&v, p, sizeof(v));
			a0 += k[i] * v;
		}
		a0 += a1;
		memcpy(out + (size_t)x * CH, &a0, sizeof(float) * CH);
	}
}

/* Hot loops get a second, AVX2+FMA build chosen at load time on x86-64
 * (glibc's ifunc); elsewhere they are plain C. Not under ThreadSanitizer,
 * whose instrumented resolver would run before its runtime is set up. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&         \
    !defined(__SANITIZE_THREAD__)
#define HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define HOT
#endif

/* A resampler fed one input row at a time. Input rows, as floats, go into
 * a ring that holds one vertical window (libvips and Pillow keep a window
 * the same way); as soon as the last row an output row needs has come,
 * that output row is made: the window summed with its weights, then the
 * horizontal pass, then back to bytes. The whole input image is never
 * held, and each input value is read once per output row that needs it. */
struct thumb_scaler {
	struct coeffs cx, cy;
	int in_w, in_h, ch, alpha, out_w, out_h;
	int rows;	    /* pushed so far */
	int next;	    /* the next output row to make */
	int nring;	    /* rows in the ring */
	size_t iw;	    /* floats in an input row */
	float *ring;	    /* nring rows of iw floats; row r at r % nring */
	float *vsum, *hsum; /* one row after each pass */
	float **rowp;	    /* the window's rows, oldest first */
	unsigned char *out; /* out_h rows of out_w x ch */
	bool nearest;	    /* no window: each output pixel is one input's */
};

void thumb_scaler_free(struct thumb_scaler *s)
{
	if (!s)
		return;
	coeffs_release(&s->cx);
	coeffs_release(&s->cy);
	free(s->ring);
	free(s->rowp);
	free(s->vsum);
	free(s->hsum);
	free(s->out);
	free(s);
}

/* A scaler of these sizes, its buffers not yet made; NULL on bad sizes
 * or out of memory. */
static struct thumb_scaler *scaler_of(int in_w, int in_h, int ch, int out_w,
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
	return s;
}

struct thumb_scaler *thumb_scaler_new(int in_w, int in_h, int ch, int out_w,
				      int out_h)
{
	struct thumb_scaler *s = scaler_of(in_w, in_h, ch, out_w, out_h);
	if (!s)
		return NULL;
	if (coeffs_init(&s->cx, in_w, out_w) ||
	    coeffs_init(&s->cy, in_h, out_h)) {
		thumb_scaler_free(s);
		return NULL;
	}
	s->nring = s->cy.stride < in_h ? s->cy.stride : in_h;
	s->ring = malloc(sizeof(float) * s->iw * s->nring);
	s->rowp = malloc(sizeof(float *) * s->cy.stride);
	s->vsum = malloc(sizeof(float) * (s->iw + 1)); /* see hpass_v4 */
	s->hsum = malloc(sizeof(float) * out_w * ch);
	s->out = malloc((size_t)out_w * ch * out_h);
	if (!s->ring || !s->rowp || !s->vsum || !s->hsum || !s->out) {
		thumb_scaler_free(s);
		return NULL;
	}
	return s;
}

/* Pillow's NEAREST resize is an affine transform that samples the input
 * at the output pixel's centre: input index (int)((i + 0.5) * in / out). */
static int nearest_index(int i, int in, int out)
{
	int k = (int)(((double)i + 0.5) * in / out);
	return k < in ? k : in - 1;
}

struct thumb_scaler *thumb_scaler_new_nearest(int in_w, int in_h, int ch,
					      int out_w, int out_h)
{
	struct thumb_scaler *s = scaler_of(in_w, in_h, ch, out_w, out_h);
	if (!s)
		return NULL;
	s->nearest = true;
	s->out = malloc((size_t)out_w * ch * out_h);
	if (!s->out) {
		free(s);
		return NULL;
	}
	return s;
}

/* Input row r into every output row that samples it. */
static void nearest_row(struct thumb_scaler *s, int r, const unsigned char *row)
{
	size_t ch = (size_t)s->ch;
	while (s->next < s->out_h &&
	       nearest_index(s->next, s->in_h, s->out_h) == r) {
		unsigned char *o = s->out + (size_t)s->next * s->out_w * ch;
		for (int x = 0; x < s->out_w; x++)
			memcpy(o + (size_t)x * ch,
			       row +
				   (size_t)nearest_index(x, s->in_w, s->out_w) *
				       ch,
			       ch);
		s->next++;
	}
}

/* a = k * x, and a += k * x: the vertical pass's inner loops. */
static inline void scale(float *restrict a, const float *restrict x, size_t n,
			 float k)
{
	for (size_t j = 0; j < n; j++)
		a[j] = k * x[j];
}

static inline void axpy(float *restrict a, const float *restrict x, size_t n,
			float k)
{
	for (size_t j = 0; j < n; j++)
		a[j] += k * x[j];
}

/* a += k[0] * x0 + ... + k[3] * x3: four rows for one load and store of a */
static inline void axpy4(float *restrict a, const float *restrict x0,
			 const float *restrict x1, const float *restrict x2,
			 const float *restrict x3, size_t n, const float *k)
{
	for (size_t j = 0; j < n; j++)
		a[j] +=
		    k[0] * x0[j] + k[1] * x1[j] + k[2] * x2[j] + k[3] * x3[j];
}

/* dst = sum of k[i] * rows[i]: the vertical pass of one output row, in
 * blocks small enough that the sums stay in L1 while the rows stream. */
HOT static void vpass(float *dst, float *const *rows, const float *k, int n,
		      size_t len)
{
	enum { BLOCK = 512 };
	for (size_t b = 0; b < len; b += BLOCK) {
		size_t m = len - b < BLOCK ? len - b : BLOCK;
		scale(dst + b, rows[0] + b, m, k[0]);
		int i = 1;
		for (; i + 3 < n; i += 4)
			axpy4(dst + b, rows[i] + b, rows[i + 1] + b,
			      rows[i + 2] + b, rows[i + 3] + b, m, k + i);
		for (; i < n; i++)
			axpy(dst + b, rows[i] + b, m, k[i]);
	}
}

HOT static void hpass_any(const float *in, float *out, const struct coeffs *cx,
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
		hpass_v4(in, out, cx, w, 3);
		break;
	default:
		hpass_v4(in, out, cx, w, 4);
		break;
	}
}

HOT static void row_to_float_hot(const unsigned char *in, float *out, int w,
				 int ch, int alpha)
{
	row_to_float(in, out, w, ch, alpha);
}

/* Output row y, whose whole window is in the ring. */
static void emit_row(struct thumb_scaler *s, int y)
{
	const struct coeffs *cy = &s->cy;
	int w = s->out_w, ch = s->ch, alpha = s->alpha;
	int n = cy->count[y], lo = cy->start[y];
	float **rows = s->rowp;
	for (int i = 0; i < n; i++)
		rows[i] = s->ring + (size_t)((lo + i) % s->nring) * s->iw;
	vpass(s->vsum, rows, cy->w + (size_t)y * cy->stride, n, s->iw);
	float *acc = s->hsum;
	hpass_any(s->vsum, acc, &s->cx, w, ch);
	if (alpha >= 0) {
		for (int x = 0; x < w; x++) {
			float *p = acc + (size_t)x * ch;
			float a = p[alpha] / 255.0f;
			for (int c = 0; c < ch; c++)
				if (c != alpha)
					p[c] = a > 0.0f ? p[c] / a : 0.0f;
		}
	}
	unsigned char *orow = s->out + (size_t)y * w * ch;
	for (size_t j = 0; j < (size_t)w * ch; j++)
		orow[j] = clamp8(acc[j]);
}

void thumb_scaler_row(struct thumb_scaler *s, const unsigned char *row)
{
	int r = s->rows;
	if (r >= s->in_h)
		return;
	if (s->nearest) {
		nearest_row(s, r, row);
		s->rows++;
		return;
	}
	row_to_float_hot(row, s->ring + (size_t)(r % s->nring) * s->iw, s->in_w,
			 s->ch, s->alpha);
	s->rows++;
	const struct coeffs *cy = &s->cy;
	while (s->next < s->out_h &&
	       cy->start[s->next] + cy->count[s->next] <= s->rows)
		emit_row(s, s->next++);
}

int thumb_scaler_finish(struct thumb_scaler *s, struct thumb_image *dst)
{
	memset(dst, 0, sizeof(*dst));
	if (s->rows != s->in_h || s->next != s->out_h)
		return -EINVAL;
	dst->width = s->out_w;
	dst->height = s->out_h;
	dst->channels = s->ch;
	dst->pixels = s->out;
	dst->orientation = 1;
	s->out = NULL;
	return 0;
}

int thumb_resample(const struct thumb_image *src, int w, int h,
		   struct thumb_image *dst)
{
	memset(dst, 0, sizeof(*dst));
	struct thumb_scaler *s =
	    src->nearest ? thumb_scaler_new_nearest(src->width, src->height,
						    src->channels, w, h)
			 : thumb_scaler_new(src->width, src->height,
					    src->channels, w, h);
	if (!s)
		return w <= 0 || h <= 0 || src->width <= 0 ? -EINVAL : -ENOMEM;
	for (int y = 0; y < src->height; y++)
		thumb_scaler_row(s, src->pixels +
					(size_t)y * src->width * src->channels);
	int ret = thumb_scaler_finish(s, dst);
	thumb_scaler_free(s);
	return ret;
}
