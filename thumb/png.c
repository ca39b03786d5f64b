/* png.c - PNG (libpng) to 8-bit, read from memory or a file as it
 * comes, rows resampled as they are read. */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "thumb/decoders.h"

struct png_src {
	const unsigned char *buf;
	size_t len;
	size_t pos;
};

struct png_err {
	char msg[200];
};

static void png_read_mem(png_structp png, png_bytep out, size_t n)
{
	struct png_src *s = png_get_io_ptr(png);
	if (n > s->len - s->pos)
		png_error(png, "file is truncated");
	memcpy(out, s->buf + s->pos, n);
	s->pos += n;
}

static void png_read_file(png_structp png, png_bytep out, size_t n)
{
	if (fread(out, 1, n, png_get_io_ptr(png)) != n)
		png_error(png, "file is truncated");
}

static void png_on_error(png_structp png, png_const_charp msg)
{
	struct png_err *e = png_get_error_ptr(png);
	snprintf(e->msg, sizeof(e->msg), "%s", msg);
	png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

int thumb_decode_png(const struct thumb_src *in, int box_w, int box_h,
		     uint64_t max_pixels, struct thumb_image *img, int *orig_w,
		     int *orig_h, char *err, size_t errlen)
{
	struct png_src src = {in->buf, in->len, 0};
	struct png_err perr = {""};
	png_structp png = NULL;
	png_infop info = NULL;
	unsigned char *volatile pixels = NULL;
	png_bytep *volatile rows = NULL;
	unsigned char *volatile palette = NULL;
	volatile int palette_len = 0;
	struct thumb_scaler *volatile scaler = NULL;
	volatile int ret = 0;

	png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &perr, png_on_error,
				     png_on_warning);
	if (png)
		info = png_create_info_struct(png);
	if (!png || !info) {
		snprintf(err, errlen, "out of memory for a PNG decoder");
		ret = -ENOMEM;
		goto out_destroy;
	}
	if (setjmp(png_jmpbuf(png))) {
		snprintf(err, errlen, "corrupt PNG: %s", perr.msg);
		ret = -EINVAL;
		goto out_destroy;
	}
	if (in->fp)
		png_set_read_fn(png, in->fp, png_read_file);
	else
		png_set_read_fn(png, &src, png_read_mem);
	/* Pillow checks no CRCs of ancillary chunks either; critical ones
	 * still fail. */
	png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_WARN_USE);
	/* Text and the other chunks a thumbnail has no use for are skipped
	 * as they are read, never held: one that says it is 2 GB long in a
	 * 300-byte file (tests/fuzz/run found it) would have libpng ask for
	 * all of it first. What is kept (a profile) is capped at 8 MiB. */
	static const png_byte skip[] = "tEXt\0zTXt\0iTXt\0eXIf\0sPLT\0"
				       "hIST\0tIME\0pCAL\0sCAL\0sTER";
	png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, skip, 10);
	png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
	png_set_chunk_malloc_max(png, (png_alloc_size_t)8 << 20);
	png_read_info(png, info);

	png_uint_32 w = png_get_image_width(png, info);
	png_uint_32 h = png_get_image_height(png, info);
	*orig_w = (int)w;
	*orig_h = (int)h;
	if (w > 0x7fffffff || h > 0x7fffffff) {
		snprintf(err, errlen, "PNG declares an impossible size");
		ret = -EINVAL;
		goto out_destroy;
	}
	ret = thumb_check_size((int)w, (int)h, max_pixels, err, errlen);
	if (ret)
		goto out_destroy;

	int color = png_get_color_type(png, info);
	/* the palette and its tRNS, before the transforms below expand them
	 * (the output is RGB(A); a PNG thumbnail takes the palette again) */
	png_colorp plte;
	int n_plte = 0;
	if (color == PNG_COLOR_TYPE_PALETTE &&
	    png_get_PLTE(png, info, &plte, &n_plte) && n_plte > 0 &&
	    n_plte <= 256 && (palette = malloc((size_t)n_plte * 4))) {
		png_bytep trans = NULL;
		int n_trans = 0;
		png_get_tRNS(png, info, &trans, &n_trans, NULL);
		for (int i = 0; i < n_plte; i++) {
			palette[4 * i] = plte[i].red;
			palette[4 * i + 1] = plte[i].green;
			palette[4 * i + 2] = plte[i].blue;
			palette[4 * i + 3] =
			    trans && i < n_trans ? trans[i] : 255;
		}
		palette_len = n_plte;
	}
	int depth = png_get_bit_depth(png, info);
	if (depth == 16)
		png_set_strip_16(png); /* the high byte, as Pillow keeps */
	if (color == PNG_COLOR_TYPE_PALETTE)
		png_set_palette_to_rgb(png);
	if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
		png_set_expand_gray_1_2_4_to_8(png);
	if (png_get_valid(png, info, PNG_INFO_tRNS))
		png_set_tRNS_to_alpha(png);
	png_set_interlace_handling(png);
	png_read_update_info(png, info);

	int ch = png_get_channels(png, info);
	size_t rowbytes = png_get_rowbytes(png, info);
	if (ch < 1 || ch > 4 || rowbytes != (size_t)w * ch) {
		snprintf(err, errlen, "unexpected PNG layout");
		ret = -EINVAL;
		goto out_destroy;
	}
	int tw = (int)w, th = (int)h;
	if (box_w > 0 && box_h > 0)
		thumb_fit((int)w, (int)h, box_w, box_h, &tw, &th);
	/* Without interlacing, rows go straight into the resampler: a large
	 * PNG is reduced row by row, never held whole. */
	bool nearest = color == PNG_COLOR_TYPE_PALETTE ||
		       (color == PNG_COLOR_TYPE_GRAY && depth == 1);
	if (png_get_interlace_type(png, info) == PNG_INTERLACE_NONE &&
	    (tw != (int)w || th != (int)h)) {
		scaler = nearest ? thumb_scaler_new_nearest((int)w, (int)h, ch,
							    tw, th)
				 : thumb_scaler_new((int)w, (int)h, ch, tw, th);
		pixels = malloc(rowbytes);
		if (!scaler || !pixels) {
			snprintf(err, errlen, "out of memory for a %ux%u PNG",
				 w, h);
			ret = -ENOMEM;
			goto out_destroy;
		}
		for (png_uint_32 y = 0; y < h; y++) {
			png_read_row(png, pixels, NULL);
			thumb_scaler_row(scaler, pixels);
		}
		free(pixels);
		pixels = NULL;
		ret = thumb_scaler_finish(scaler, img);
		if (ret) {
			snprintf(err, errlen, "out of memory resampling a PNG");
			goto out_destroy;
		}
		pixels = img->pixels;
	} else {
		pixels = malloc(rowbytes * h);
		rows = malloc(sizeof(png_bytep) * h);
		if (!pixels || !rows) {
			snprintf(err, errlen, "out of memory for a %ux%u PNG",
				 w, h);
			ret = -ENOMEM;
			goto out_destroy;
		}
		for (png_uint_32 y = 0; y < h; y++)
			rows[y] = pixels + rowbytes * y;
		png_read_image(png, rows);
	}
	img->width = scaler ? tw : (int)w;
	img->height = scaler ? th : (int)h;
	img->channels = ch;
	img->pixels = pixels;
	img->orientation = 1;
	png_charp icc_name;
	png_bytep icc;
	png_uint_32 icc_len;
	int compression;
	if (png_get_iCCP(png, info, &icc_name, &compression, &icc, &icc_len) &&
	    (img->icc = malloc(icc_len))) {
		memcpy(img->icc, icc, icc_len);
		img->icc_len = icc_len;
	}
	img->palette = palette;
	img->palette_len = palette_len;
	img->nearest = nearest;
	palette = NULL;
	pixels = NULL;
out_destroy:
	png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
	thumb_scaler_free(scaler);
	free(rows);
	free(pixels);
	free(palette);
	return ret;
}
