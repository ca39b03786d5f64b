/* decode.c - JPEG (libjpeg-turbo, DCT-scaled) and PNG (libpng) to 8-bit. */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "thumb/decoders.h"

enum thumb_format thumb_detect(const unsigned char *buf, size_t len)
{
	static const unsigned char png_sig[8] = {0x89, 'P',  'N',  'G',
						 '\r', '\n', 0x1a, '\n'};
	if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
		return THUMB_FMT_JPEG;
	if (len >= 8 && memcmp(buf, png_sig, 8) == 0)
		return THUMB_FMT_PNG;
	if (len >= 12 && !memcmp(buf, "RIFF", 4) && !memcmp(buf + 8, "WEBP", 4))
		return THUMB_FMT_WEBP;
	if (len >= 4 && (!memcmp(buf, "II*\0", 4) || !memcmp(buf, "MM\0*", 4)))
		return THUMB_FMT_TIFF;
	if (len >= 6 &&
	    (!memcmp(buf, "GIF87a", 6) || !memcmp(buf, "GIF89a", 6)))
		return THUMB_FMT_GIF;
	if (len >= 12 && !memcmp(buf + 4, "ftyp", 4)) {
		static const char brands[][5] = {"heic", "heix", "hevc", "hevx",
						 "heim", "heis", "mif1", "msf1",
						 "avif", "avis"};
		for (size_t i = 0; i < sizeof(brands) / sizeof(brands[0]); i++)
			if (!memcmp(buf + 8, brands[i], 4))
				return THUMB_FMT_HEIF;
	}
	return THUMB_FMT_UNKNOWN;
}

const char *thumb_mime_type(enum thumb_format fmt)
{
	switch (fmt) {
	case THUMB_FMT_JPEG:
		return "image/jpeg";
	case THUMB_FMT_PNG:
		return "image/png";
	case THUMB_FMT_WEBP:
		return "image/webp";
	case THUMB_FMT_TIFF:
		return "image/tiff";
	case THUMB_FMT_GIF:
		return "image/gif";
	case THUMB_FMT_HEIF:
		return "image/heic";
	default:
		return "application/octet-stream";
	}
}

void thumb_image_release(struct thumb_image *img)
{
	free(img->pixels);
	free(img->icc);
	free(img->palette);
	memset(img, 0, sizeof(*img));
}

int thumb_check_size(int w, int h, uint64_t max_pixels, char *err,
		     size_t errlen)
{
	if (w <= 0 || h <= 0) {
		snprintf(err, errlen, "image has no pixels (%dx%d)", w, h);
		return -EINVAL;
	}
	if (max_pixels && (uint64_t)w * (uint64_t)h > max_pixels) {
		snprintf(err, errlen,
			 "image is %dx%d, over the limit of %llu pixels", w, h,
			 (unsigned long long)max_pixels);
		return -EFBIG;
	}
	return 0;
}

/* ---- JPEG ---- */

struct jpeg_err {
	struct jpeg_error_mgr mgr;
	jmp_buf jmp;
	char msg[JMSG_LENGTH_MAX];
};

/* Whether the scans read so far give, for every component, each
 * coefficient an n x n IDCT uses to within one bit: coef_bits holds, per
 * coefficient (zigzag order), how many low bits are still missing (-1:
 * none of it yet). The 1 x 1 IDCT reads the DC alone; libjpeg's 2 x 2 and
 * 4 x 4 ones read odd rows and columns up to 7, so all of them. */
static bool coefs_known(j_decompress_ptr c, int n)
{
	int last = n == 1 ? 0 : DCTSIZE2 - 1;
	if (!c->coef_bits)
		return false;
	for (int ci = 0; ci < c->num_components; ci++)
		for (int k = 0; k <= last; k++)
			if (c->coef_bits[ci][k] < 0 || c->coef_bits[ci][k] > 1)
				return false;
	return true;
}

static void jpeg_err_exit(j_common_ptr cinfo)
{
	struct jpeg_err *e = (struct jpeg_err *)cinfo->err;
	(*cinfo->err->format_message)(cinfo, e->msg);
	longjmp(e->jmp, 1);
}

/* Warnings are not fatal, but a file that ends early is: its thumbnail
 * would be half gray (Pillow refuses it too). */
static void jpeg_err_emit(j_common_ptr cinfo, int level)
{
	if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF)
		jpeg_err_exit(cinfo);
}

/* Adobe CMYK JPEGs are stored inverted; the product gives RGB. */
static void cmyk_row_to_rgb(const unsigned char *in, unsigned char *out, int w,
			    int inverted)
{
	for (int x = 0; x < w; x++) {
		int c = in[4 * x], m = in[4 * x + 1], y = in[4 * x + 2],
		    k = in[4 * x + 3];
		if (!inverted) {
			c = 255 - c;
			m = 255 - m;
			y = 255 - y;
			k = 255 - k;
		}
		out[3 * x] = (unsigned char)((c * k + 127) / 255);
		out[3 * x + 1] = (unsigned char)((m * k + 127) / 255);
		out[3 * x + 2] = (unsigned char)((y * k + 127) / 255);
	}
}

/* What a decoder reads: len bytes at buf, or the stream fp (JPEG and
 * PNG, which libjpeg and libpng read as they go). */
struct src {
	const unsigned char *buf;
	size_t len;
	FILE *fp;
};

static int decode_jpeg(const struct src *in, int box_w, int box_h,
		       uint64_t max_pixels, struct thumb_image *img,
		       int *orig_w, int *orig_h, char *err, size_t errlen)
{
	struct jpeg_decompress_struct cinfo;
	struct jpeg_err jerr;
	unsigned char *volatile pixels = NULL;
	unsigned char *volatile cmyk = NULL;
	unsigned char *volatile icc = NULL;
	struct thumb_scaler *volatile scaler = NULL;
	volatile unsigned int icc_len = 0;
	volatile int ret = 0;

	memset(&cinfo, 0, sizeof(cinfo));
	cinfo.err = jpeg_std_error(&jerr.mgr);
	jerr.mgr.error_exit = jpeg_err_exit;
	jerr.mgr.emit_message = jpeg_err_emit;
	if (setjmp(jerr.jmp)) {
		snprintf(err, errlen, "corrupt JPEG: %s", jerr.msg);
		ret = -EINVAL;
		goto out_destroy;
	}
	jpeg_create_decompress(&cinfo);
	if (in->fp)
		jpeg_stdio_src(&cinfo, in->fp);
	else
		jpeg_mem_src(&cinfo, in->buf, (unsigned long)in->len);
	jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
	jpeg_save_markers(&cinfo, JPEG_APP0 + 2, 0xffff); /* ICC */
	jpeg_read_header(&cinfo, TRUE);
	volatile int orientation = 1;
	for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next)
		if (m->marker == JPEG_APP0 + 1 && m->data_length > 6 &&
		    !memcmp(m->data, "Exif\0\0", 6))
			orientation =
			    thumb_exif_orientation(m->data, m->data_length);
	*orig_w = (int)cinfo.image_width;
	*orig_h = (int)cinfo.image_height;
	ret = thumb_check_size(*orig_w, *orig_h, max_pixels, err, errlen);
	if (ret)
		goto out_destroy;

	int cmyk_in = cinfo.jpeg_color_space == JCS_CMYK ||
		      cinfo.jpeg_color_space == JCS_YCCK;
	/* a CMYK profile does not describe the RGB we make of it */
	if (!cmyk_in) {
		JOCTET *p = NULL;
		unsigned int n = 0;
		if (jpeg_read_icc_profile(&cinfo, &p, &n)) {
			icc = p;
			icc_len = n;
		}
	}
	if (cmyk_in)
		cinfo.out_color_space = JCS_CMYK;
	else if (cinfo.num_components == 1)
		cinfo.out_color_space = JCS_GRAYSCALE;
	else
		cinfo.out_color_space = JCS_RGB;

	/* Shrink on load: the largest 1/d that still leaves at least twice
	 * the thumbnail's size for the Lanczos pass (libvips does the same). */
	cinfo.scale_num = 1;
	cinfo.scale_denom = 1;
	if (box_w > 0 && box_h > 0) {
		int min_w, min_h;
		thumb_target(*orig_w, *orig_h, orientation, box_w, box_h,
			     &min_w, &min_h);
		min_w *= 2;
		min_h *= 2;
		for (unsigned d = 8; d > 1; d /= 2) {
			unsigned sw = (cinfo.image_width + d - 1) / d;
			unsigned sh = (cinfo.image_height + d - 1) / d;
			if (sw >= (unsigned)min_w && sh >= (unsigned)min_h) {
				cinfo.scale_denom = d;
				break;
			}
		}
	}
	/* A progressive JPEG decoded at 1/d needs only the coefficients the
	 * smaller IDCT reads: its scans are taken until those are known to
	 * within their last bit, and the rest (the costly refinements) are
	 * skipped, as a progressive viewer shows an early pass. */
	volatile bool early = jpeg_has_multiple_scans(&cinfo) &&
			      cinfo.scale_denom > 1 && !cmyk_in;
	if (early) {
		cinfo.buffered_image = TRUE;
		cinfo.do_block_smoothing = FALSE;
	}
	jpeg_start_decompress(&cinfo);
	if (early) {
		int r;
		do
			r = jpeg_consume_input(&cinfo);
		while (r != JPEG_REACHED_EOI && r != JPEG_SUSPENDED &&
		       !(r == JPEG_SCAN_COMPLETED &&
			 coefs_known(&cinfo, 8 / (int)cinfo.scale_denom)));
		jpeg_start_output(&cinfo, cinfo.input_scan_number);
	}

	int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
	int ch = cmyk_in ? 3 : cinfo.output_components;
	/* Rows go straight into the resampler when the thumbnail is smaller
	 * than the decoded image: the whole image is never held. */
	int tw = w, th = h;
	if (box_w > 0 && box_h > 0)
		thumb_target(*orig_w, *orig_h, orientation, box_w, box_h, &tw,
			     &th);
	bool stream = tw != w || th != h;
	if (stream)
		scaler = thumb_scaler_new(w, h, ch, tw, th);
	pixels = malloc(stream ? (size_t)w * ch : (size_t)w * h * ch);
	if (cmyk_in)
		cmyk = malloc((size_t)w * 4);
	if (!pixels || (cmyk_in && !cmyk) || (stream && !scaler)) {
		snprintf(err, errlen, "out of memory for a %dx%d JPEG", w, h);
		ret = -ENOMEM;
		goto out_destroy;
	}
	int inverted = cmyk_in && cinfo.saw_Adobe_marker;
	while (cinfo.output_scanline < cinfo.output_height) {
		unsigned char *row =
		    stream ? pixels
			   : pixels + (size_t)cinfo.output_scanline * w * ch;
		if (cmyk_in) {
			JSAMPROW r = cmyk;
			jpeg_read_scanlines(&cinfo, &r, 1);
			cmyk_row_to_rgb(cmyk, row, w, inverted);
		} else {
			JSAMPROW r = row;
			jpeg_read_scanlines(&cinfo, &r, 1);
		}
		if (stream)
			thumb_scaler_row(scaler, row);
	}
	if (early) {
		jpeg_finish_output(&cinfo);
		jpeg_abort_decompress(&cinfo); /* the rest is not needed */
	} else {
		jpeg_finish_decompress(&cinfo);
	}
	if (stream) {
		ret = thumb_scaler_finish(scaler, img);
		if (ret) {
			snprintf(err, errlen,
				 "out of memory resampling a JPEG");
			goto out_destroy;
		}
		free(pixels);
		pixels = img->pixels;
	}
	img->width = stream ? tw : w;
	img->height = stream ? th : h;
	img->channels = ch;
	img->pixels = pixels;
	img->orientation = orientation;
	img->icc = icc;
	img->icc_len = icc_len;
	icc = NULL;
	pixels = NULL;
out_destroy:
	jpeg_destroy_decompress(&cinfo);
	thumb_scaler_free(scaler);
	free(pixels);
	free(cmyk);
	free(icc);
	return ret;
}

/* ---- PNG ---- */

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

static int decode_png(const struct src *in, int box_w, int box_h,
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

/* Decode in, whose format is fmt (see thumb_decode). */
static int decode(const struct src *in, enum thumb_format fmt, int box_w,
		  int box_h, uint64_t max_pixels, struct thumb_image *img,
		  int *orig_w, int *orig_h, char *err, size_t errlen)
{
	memset(img, 0, sizeof(*img));
	if (in->len == 0) {
		snprintf(err, errlen, "file is empty");
		return -EINVAL;
	}
	switch (fmt) {
	case THUMB_FMT_JPEG:
		return decode_jpeg(in, box_w, box_h, max_pixels, img, orig_w,
				   orig_h, err, errlen);
	case THUMB_FMT_PNG:
		return decode_png(in, box_w, box_h, max_pixels, img, orig_w,
				  orig_h, err, errlen);
	case THUMB_FMT_WEBP:
		return thumb_decode_webp(in->buf, in->len, max_pixels, img,
					 orig_w, orig_h, err, errlen);
	case THUMB_FMT_TIFF:
		return thumb_decode_tiff(in->buf, in->len, max_pixels, img,
					 orig_w, orig_h, err, errlen);
	case THUMB_FMT_GIF:
		return thumb_decode_gif(in->buf, in->len, max_pixels, img,
					orig_w, orig_h, err, errlen);
	case THUMB_FMT_HEIF:
		return thumb_decode_heif(in->buf, in->len, max_pixels, img,
					 orig_w, orig_h, err, errlen);
	default:
		snprintf(err, errlen,
			 "not an image thumbfs reads (JPEG, PNG, WebP, TIFF, "
			 "GIF, HEIC)");
		return -ENOTSUP;
	}
}

int thumb_decode(const unsigned char *buf, size_t len, int box_w, int box_h,
		 uint64_t max_pixels, struct thumb_image *img, int *orig_w,
		 int *orig_h, char *err, size_t errlen)
{
	struct src in = {buf, len, NULL};
	return decode(&in, thumb_detect(buf, len), box_w, box_h, max_pixels,
		      img, orig_w, orig_h, err, errlen);
}

int thumb_decode_fd(int fd, uint64_t len, int box_w, int box_h,
		    uint64_t max_pixels, struct thumb_image *img, int *orig_w,
		    int *orig_h, char *err, size_t errlen)
{
	unsigned char head[64];
	struct src in = {NULL, (size_t)len, NULL};
	void *map = MAP_FAILED;
	unsigned char *whole = NULL;
	int ret = 0;
	ssize_t n = pread(fd, head, sizeof(head), 0);
	enum thumb_format fmt = thumb_detect(head, n > 0 ? (size_t)n : 0);
	int dfd = -1;
	if (len == 0 || fmt == THUMB_FMT_UNKNOWN) {
		in.buf = head; /* said so by decode() */
	} else if (fmt == THUMB_FMT_JPEG || fmt == THUMB_FMT_PNG) {
		/* read as decoded, on a descriptor of its own */
		dfd = dup(fd);
		if (dfd < 0 || lseek(dfd, 0, SEEK_SET) < 0 ||
		    !(in.fp = fdopen(dfd, "rb")))
			ret = -errno;
		if (in.fp)
			dfd = -1; /* the stream's now */
	} else if (len <= THUMB_BUF_MAX) {
		whole = malloc((size_t)len);
		size_t got = 0;
		while (whole && got < len) {
			ssize_t r = pread(fd, whole + got, (size_t)len - got,
					  (off_t)got);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		ret = !whole ? -ENOMEM : got < len ? -EIO : 0;
		in.buf = whole;
	} else {
		/* the libraries of these read from memory: the page cache's,
		 * mapped, not a copy on the heap */
		map = mmap(NULL, (size_t)len, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED)
			ret = -errno;
		else
			in.buf = map;
	}
	if (ret)
		snprintf(err, errlen, "cannot read the file: %s",
			 strerror(-ret));
	else
		ret = decode(&in, fmt, box_w, box_h, max_pixels, img, orig_w,
			     orig_h, err, errlen);
	if (in.fp)
		fclose(in.fp);
	if (dfd >= 0)
		close(dfd);
	if (map != MAP_FAILED)
		munmap(map, (size_t)len);
	free(whole);
	return ret;
}
