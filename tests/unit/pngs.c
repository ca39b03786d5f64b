/* pngs.c - makes the PNG test set with libpng (see pngs.h); the broken
 * files are valid ones changed a chunk at a time, CRCs fixed with zlib. */
#include "tests/unit/pngs.h"

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

struct membuf {
	unsigned char *data;
	size_t len, cap;
};

static void mem_write(png_structp png, png_bytep data, png_size_t len)
{
	struct membuf *m = png_get_io_ptr(png);
	if (m->len + len > m->cap) {
		size_t cap = (m->len + len) * 2;
		unsigned char *p = realloc(m->data, cap);
		if (!p)
			png_error(png, "out of memory");
		m->data = p;
		m->cap = cap;
	}
	memcpy(m->data + m->len, data, len);
	m->len += len;
}

static void mem_flush(png_structp png)
{
	(void)png;
}

struct spec {
	const char *kind; /* g, ga, rgb, rgba, p */
	int color, depth;
	bool adam7, trns;
	unsigned w, h;
};

static int channels(int color)
{
	switch (color) {
	case PNG_COLOR_TYPE_GRAY_ALPHA:
		return 2;
	case PNG_COLOR_TYPE_RGB:
		return 3;
	case PNG_COLOR_TYPE_RGB_ALPHA:
		return 4;
	default:
		return 1;
	}
}

/* Sample c of pixel (x, y): smooth gradients and a soft disc of alpha,
 * so that resampling has something to get right. */
static unsigned sample(const struct spec *s, unsigned x, unsigned y, int c)
{
	unsigned max = (1u << s->depth) - 1;
	if (s->color == PNG_COLOR_TYPE_PALETTE)
		return ((x / 6) + (y / 6)) % (max + 1);
	bool alpha =
	    (s->color & PNG_COLOR_MASK_ALPHA) && c == channels(s->color) - 1;
	double fx = (double)x / (s->w > 1 ? s->w - 1 : 1),
	       fy = (double)y / (s->h > 1 ? s->h - 1 : 1), v;
	if (alpha) {
		double dx = fx - 0.5, dy = fy - 0.5;
		v = 1.0 - 2.0 * (dx * dx + dy * dy) * 2.0;
		v = v < 0 ? 0 : v;
	} else if (c == 0) {
		v = fx;
	} else if (c == 1) {
		v = fy;
	} else {
		v = (fx + fy) / 2;
	}
	return (unsigned)(v * max + 0.5);
}

/* One row, packed as PNG stores it (big-endian 16-bit, sub-byte packed). */
static void make_row(const struct spec *s, unsigned y, unsigned char *row,
		     size_t rowbytes)
{
	int ch = channels(s->color);
	memset(row, 0, rowbytes);
	for (unsigned x = 0; x < s->w; x++)
		for (int c = 0; c < ch; c++) {
			unsigned v = sample(s, x, y, c);
			size_t i = (size_t)x * (size_t)ch + (size_t)c;
			if (s->depth == 16) {
				row[2 * i] = (unsigned char)(v >> 8);
				row[2 * i + 1] = (unsigned char)v;
			} else if (s->depth == 8) {
				row[i] = (unsigned char)v;
			} else {
				size_t bit = i * (size_t)s->depth;
				row[bit / 8] |=
				    (unsigned char)(v << (8 - s->depth -
							  (int)(bit % 8)));
			}
		}
}

static int encode(const struct spec *s, struct membuf *m)
{
	png_structp png =
	    png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	unsigned char *row = NULL;
	if (!info) {
		png_destroy_write_struct(&png, NULL);
		return -1;
	}
	if (setjmp(png_jmpbuf(png))) {
		free(row);
		png_destroy_write_struct(&png, &info);
		return -1;
	}
	png_set_write_fn(png, m, mem_write, mem_flush);
	png_set_IHDR(png, info, s->w, s->h, s->depth, s->color,
		     s->adam7 ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
		     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	unsigned max = (1u << s->depth) - 1;
	if (s->color == PNG_COLOR_TYPE_PALETTE) {
		png_color pal[256];
		png_byte alpha[256];
		for (unsigned i = 0; i <= max; i++) {
			pal[i].red = (png_byte)(i * 255 / max);
			pal[i].green = (png_byte)(255 - i * 255 / max);
			pal[i].blue = (png_byte)((i * 97) % 256);
			alpha[i] = (png_byte)(i % 2 ? 255 : i * 255 / max / 2);
		}
		png_set_PLTE(png, info, pal, (int)max + 1);
		if (s->trns)
			png_set_tRNS(png, info, alpha, (int)max + 1, NULL);
	} else if (s->trns) {
		/* the colour of the top-left corner, which every file has */
		png_color_16 key = {0};
		key.gray = (png_uint_16)sample(s, 0, 0, 0);
		key.red = key.gray;
		key.green = (png_uint_16)sample(s, 0, 0, 1);
		key.blue = (png_uint_16)sample(s, 0, 0, 2);
		png_set_tRNS(png, info, NULL, 0, &key);
	}
	png_write_info(png, info);
	size_t rowbytes = png_get_rowbytes(png, info);
	row = malloc(rowbytes);
	if (!row)
		png_error(png, "out of memory");
	int passes = png_set_interlace_handling(png);
	for (int p = 0; p < passes; p++)
		for (unsigned y = 0; y < s->h; y++) {
			make_row(s, y, row, rowbytes);
			png_write_row(png, row);
		}
	png_write_end(png, info);
	free(row);
	png_destroy_write_struct(&png, &info);
	return 0;
}

/* Offset of the first chunk of this type, or 0. */
static size_t chunk_at(const struct membuf *m, const char *type)
{
	for (size_t off = 8; off + 12 <= m->len;) {
		size_t n = (size_t)m->data[off] << 24 |
			   (size_t)m->data[off + 1] << 16 |
			   (size_t)m->data[off + 2] << 8 | m->data[off + 3];
		if (!memcmp(m->data + off + 4, type, 4))
			return off;
		off += n + 12;
	}
	return 0;
}

static size_t chunk_len(const struct membuf *m, size_t off)
{
	return (size_t)m->data[off] << 24 | (size_t)m->data[off + 1] << 16 |
	       (size_t)m->data[off + 2] << 8 | m->data[off + 3];
}

static void chunk_fix_crc(struct membuf *m, size_t off)
{
	size_t n = chunk_len(m, off);
	uLong crc = crc32(0, m->data + off + 4, (uInt)(n + 4));
	unsigned char *p = m->data + off + 8 + n;
	p[0] = (unsigned char)(crc >> 24);
	p[1] = (unsigned char)(crc >> 16);
	p[2] = (unsigned char)(crc >> 8);
	p[3] = (unsigned char)crc;
}

static void chunk_remove(struct membuf *m, size_t off)
{
	size_t n = chunk_len(m, off) + 12;
	memmove(m->data + off, m->data + off + n, m->len - off - n);
	m->len -= n;
}

/* An IHDR byte (0-3 width, 8 depth, 9 colour, 12 interlace) changed. */
static void set_ihdr(struct membuf *m, size_t at, unsigned char v)
{
	size_t off = chunk_at(m, "IHDR");
	m->data[off + 8 + at] = v;
	chunk_fix_crc(m, off);
}

/* The IDAT's data replaced by these rows, deflated (same length or less). */
static void set_idat(struct membuf *m, const unsigned char *raw, size_t n)
{
	size_t off = chunk_at(m, "IDAT"), old = chunk_len(m, off);
	uLongf zlen = compressBound((uLong)n);
	unsigned char *z = malloc(zlen);
	if (!z || compress(z, &zlen, raw, (uLong)n) != Z_OK || zlen > old) {
		free(z);
		return;
	}
	memcpy(m->data + off + 8, z, zlen);
	memmove(m->data + off + 8 + zlen, m->data + off + 8 + old,
		m->len - off - 8 - old);
	m->len -= old - zlen;
	unsigned char *p = m->data + off;
	p[0] = (unsigned char)(zlen >> 24);
	p[1] = (unsigned char)(zlen >> 16);
	p[2] = (unsigned char)(zlen >> 8);
	p[3] = (unsigned char)zlen;
	chunk_fix_crc(m, off);
	free(z);
}

enum breakage {
	B_SIGNATURE,
	B_CRLF, /* the signature's line endings translated, as FTP did */
	B_IHDR_CRC,
	B_IDAT_CRC,
	B_DEPTH,
	B_COLOR,
	B_WIDTH0,
	B_INTERLACE,
	B_TRUNCATED,
	B_NO_IDAT,
	B_ZLIB,
	B_FILTER,
	B_NO_PLTE,
	B_COUNT
};

static const char *const broken_names[B_COUNT] = {
    "bad-signature", "bad-crlf",     "bad-ihdr-crc", "bad-idat-crc",
    "bad-depth-3",   "bad-colour-1", "bad-width-0",  "bad-interlace-2",
    "bad-truncated", "bad-no-idat",  "bad-zlib",     "bad-filter-7",
    "bad-no-plte"};

static void break_png(struct membuf *m, enum breakage b)
{
	size_t off;
	unsigned char rows[16 * (1 + 16 * 3)];
	switch (b) {
	case B_SIGNATURE:
		m->data[1] = 'Q';
		break;
	case B_CRLF:
		m->data[4] = '\n'; /* "\r\n" became "\n\n" */
		break;
	case B_IHDR_CRC:
		m->data[chunk_at(m, "IHDR") + 8 + 13] ^= 0x40;
		break;
	case B_IDAT_CRC:
		off = chunk_at(m, "IDAT");
		m->data[off + 8 + chunk_len(m, off)] ^= 0x01;
		break;
	case B_DEPTH:
		set_ihdr(m, 8, 3);
		break;
	case B_COLOR:
		set_ihdr(m, 9, 1);
		break;
	case B_WIDTH0:
		set_ihdr(m, 0, 0), set_ihdr(m, 1, 0), set_ihdr(m, 2, 0);
		set_ihdr(m, 3, 0);
		break;
	case B_INTERLACE:
		set_ihdr(m, 12, 2);
		break;
	case B_TRUNCATED:
		off = chunk_at(m, "IDAT");
		m->len = off + 8 + chunk_len(m, off) / 2;
		break;
	case B_NO_IDAT:
		chunk_remove(m, chunk_at(m, "IDAT"));
		break;
	case B_ZLIB:
		off = chunk_at(m, "IDAT");
		for (size_t i = 2; i < chunk_len(m, off); i++)
			m->data[off + 8 + i] = (unsigned char)(i * 131 + 7);
		chunk_fix_crc(m, off);
		break;
	case B_FILTER: /* 16 rows of 16 RGB pixels, each filter byte 7 */
		memset(rows, 0x80, sizeof(rows));
		for (int y = 0; y < 16; y++)
			rows[y * (1 + 16 * 3)] = 7;
		set_idat(m, rows, sizeof(rows));
		break;
	case B_NO_PLTE:
		chunk_remove(m, chunk_at(m, "PLTE"));
		break;
	case B_COUNT:
		break;
	}
}

static int add(struct png_case **cases, size_t *n, const char *name, bool valid,
	       struct membuf *m)
{
	struct png_case *p = realloc(*cases, (*n + 1) * sizeof(**cases));
	if (!p)
		return -1;
	*cases = p;
	p += *n;
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->valid = valid;
	p->data = m->data;
	p->len = m->len;
	(*n)++;
	return 0;
}

int pngs_make(struct png_case **out, size_t *n)
{
	static const struct {
		const char *kind;
		int color;
		int depths[5];
	} types[] = {
	    {"g", PNG_COLOR_TYPE_GRAY, {1, 2, 4, 8, 16}},
	    {"rgb", PNG_COLOR_TYPE_RGB, {8, 16}},
	    {"p", PNG_COLOR_TYPE_PALETTE, {1, 2, 4, 8}},
	    {"ga", PNG_COLOR_TYPE_GRAY_ALPHA, {8, 16}},
	    {"rgba", PNG_COLOR_TYPE_RGB_ALPHA, {8, 16}},
	};
	struct png_case *cases = NULL;
	char name[48];
	*n = 0;
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
		for (int d = 0; d < 5 && types[t].depths[d]; d++)
			for (int v = 0; v < 4; v++) {
				bool adam7 = v & 1, trns = v & 2;
				if (trns &&
				    (types[t].color & PNG_COLOR_MASK_ALPHA))
					continue; /* tRNS only without alpha */
				struct spec s = {types[t].kind,
						 types[t].color,
						 types[t].depths[d],
						 adam7,
						 trns,
						 450,
						 330};
				struct membuf m = {0};
				snprintf(name, sizeof(name), "%s%d%s%s", s.kind,
					 s.depth, trns ? "-trns" : "",
					 adam7 ? "-adam7" : "");
				if (encode(&s, &m) ||
				    add(&cases, n, name, true, &m)) {
					free(m.data);
					goto fail;
				}
			}
	/* sizes where Adam7's passes are empty or one pixel wide */
	static const unsigned small[][2] = {{1, 1}, {5, 3}, {37, 1}, {1, 37}};
	for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
		struct spec s = {"rgb", PNG_COLOR_TYPE_RGB, 8,		true,
				 false, small[i][0],	    small[i][1]};
		struct membuf m = {0};
		snprintf(name, sizeof(name), "rgb8-adam7-%ux%u", s.w, s.h);
		if (encode(&s, &m) || add(&cases, n, name, true, &m)) {
			free(m.data);
			goto fail;
		}
	}
	for (int b = 0; b < B_COUNT; b++) {
		struct spec s = {"rgb", PNG_COLOR_TYPE_RGB, 8, false, false, 16,
				 16};
		if (b == B_NO_PLTE)
			s.color = PNG_COLOR_TYPE_PALETTE;
		struct membuf m = {0};
		if (encode(&s, &m)) {
			free(m.data);
			goto fail;
		}
		break_png(&m, (enum breakage)b);
		if (add(&cases, n, broken_names[b], false, &m)) {
			free(m.data);
			goto fail;
		}
	}
	*out = cases;
	return 0;
fail:
	pngs_free(cases, *n);
	*n = 0;
	return -1;
}

void pngs_free(struct png_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(cases[i].data);
	free(cases);
}
