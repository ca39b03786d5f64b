/* decode.c - a format told by its first bytes, JPEG decoded (libjpeg-turbo,
 * DCT-scaled) to 8-bit, and each format sent to its decoder. */
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
		return !memcmp(buf + 8, "qt  ", 4) ? THUMB_FMT_MOV
						   : THUMB_FMT_MP4;
	}
	/* QuickTime from before ftyp begins with its movie or data atom */
	if (len >= 8 &&
	    (!memcmp(buf + 4, "moov", 4) || !memcmp(buf + 4, "mdat", 4) ||
	     !memcmp(buf + 4, "wide", 4)))
		return THUMB_FMT_MOV;
	/* EBML; the DocType is in its header, the first bytes */
	if (len >= 4 && !memcmp(buf, "\x1a\x45\xdf\xa3", 4))
		return memmem(buf, len < 64 ? len : 64, "webm", 4)
			   ? THUMB_FMT_WEBM
			   : THUMB_FMT_MKV;
	if (len >= 12 && !memcmp(buf, "RIFF", 4) && !memcmp(buf + 8, "AVI ", 4))
		return THUMB_FMT_AVI;
	/* DICOM Part 10: a 128-byte preamble, then its magic */
	if (len >= 132 && !memcmp(buf + 128, "DICM", 4))
		return THUMB_FMT_DICOM;
	/* PDF readers take the header anywhere in the first 1024 bytes;
	 * what is read of them here is the head */
	if (len >= 5 && memmem(buf, len, "%PDF-", 5))
		return THUMB_FMT_PDF;
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
	case THUMB_FMT_PDF:
		return "application/pdf";
	case THUMB_FMT_MP4:
		return "video/mp4";
	case THUMB_FMT_MOV:
		return "video/quicktime";
	case THUMB_FMT_WEBM:
		return "video/webm";
	case THUMB_FMT_MKV:
		return "video/x-matroska";
	case THUMB_FMT_AVI:
		return "video/x-msvideo";
	case THUMB_FMT_DICOM:
		return "application/dicom";
	default:
		return "application/octet-stream";
	}
}

bool thumb_is_video(enum thumb_format fmt)
{
	return fmt == THUMB_FMT_MP4 || fmt == THUMB_FMT_MOV ||
	       fmt == THUMB_FMT_WEBM || fmt == THUMB_FMT_MKV ||
	       fmt == THUMB_FMT_AVI;
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
static int decode_jpeg(const struct thumb_src *in, int box_w, int box_h,
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

/* Decode in, whose format is fmt (see thumb_decode). */
static int decode(const struct thumb_src *in, enum thumb_format fmt, int box_w,
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
		return thumb_decode_png(in, box_w, box_h, max_pixels, img,
					orig_w, orig_h, err, errlen);
	case THUMB_FMT_WEBP:
		return thumb_decode_webp(in->buf, in->len, box_w, box_h,
					 max_pixels, img, orig_w, orig_h, err,
					 errlen);
	case THUMB_FMT_TIFF:
		return thumb_decode_tiff(in, box_w, box_h, max_pixels, img,
					 orig_w, orig_h, err, errlen);
	case THUMB_FMT_GIF:
		return thumb_decode_gif(in->buf, in->len, max_pixels, img,
					orig_w, orig_h, err, errlen);
	case THUMB_FMT_HEIF:
		return thumb_decode_heif(in->buf, in->len, box_w, box_h,
					 max_pixels, img, orig_w, orig_h, err,
					 errlen);
	case THUMB_FMT_PDF:
		return thumb_decode_pdf(in->buf, in->len, box_w, box_h,
					max_pixels, img, orig_w, orig_h, err,
					errlen);
	case THUMB_FMT_MP4:
	case THUMB_FMT_MOV:
	case THUMB_FMT_WEBM:
	case THUMB_FMT_MKV:
	case THUMB_FMT_AVI:
		return thumb_decode_video(in->buf, in->len, box_w, box_h,
					  max_pixels, img, orig_w, orig_h, err,
					  errlen);
	case THUMB_FMT_DICOM:
		return thumb_decode_dicom(in->buf, in->len, box_w, box_h,
					  max_pixels, img, orig_w, orig_h, err,
					  errlen);
	default:
		snprintf(err, errlen,
			 "not an image thumbfs reads (JPEG, PNG, WebP, TIFF, "
			 "GIF, HEIC, PDF, MP4, MOV, WebM, MKV, AVI, DICOM)");
		return -ENOTSUP;
	}
}

int thumb_decode(const unsigned char *buf, size_t len, int box_w, int box_h,
		 uint64_t max_pixels, struct thumb_image *img, int *orig_w,
		 int *orig_h, char *err, size_t errlen)
{
	struct thumb_src in = {buf, len, NULL};
	return decode(&in, thumb_detect(buf, len), box_w, box_h, max_pixels,
		      img, orig_w, orig_h, err, errlen);
}

int thumb_decode_fd(int fd, uint64_t len, int box_w, int box_h,
		    uint64_t max_pixels, struct thumb_image *img, int *orig_w,
		    int *orig_h, char *err, size_t errlen)
{
	unsigned char head[THUMB_HEAD];
	struct thumb_src in = {NULL, (size_t)len, NULL};
	void *map = MAP_FAILED;
	unsigned char *whole = NULL;
	int ret = 0;
	ssize_t n = pread(fd, head, sizeof(head), 0);
	enum thumb_format fmt = thumb_detect(head, n > 0 ? (size_t)n : 0);
	int dfd = -1;
	if (len == 0 || fmt == THUMB_FMT_UNKNOWN) {
		in.buf = head; /* said so by decode() */
	} else if (fmt == THUMB_FMT_JPEG || fmt == THUMB_FMT_PNG ||
		   fmt == THUMB_FMT_TIFF) {
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
