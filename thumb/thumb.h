/*
 * thumb.h - the thumbnail engine: detect, decode, resample, encode.
 *
 * Knows nothing of FUSE, of the store or of the catalog. Every function that
 * can fail returns 0 or -errno and, where it takes one, writes a one-line
 * reason into err (never longer than errlen, always NUL-terminated):
 *   -EINVAL   the bytes are not a decodable image (corrupt or truncated)
 *   -ENOTSUP  the format is not one thumb/ reads
 *   -EFBIG    the image is over the configured limits
 *   -ENOMEM   an allocation failed
 */
#ifndef THUMB_THUMB_H
#define THUMB_THUMB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum thumb_format {
	THUMB_FMT_UNKNOWN = 0,
	THUMB_FMT_JPEG,
	THUMB_FMT_PNG,
	THUMB_FMT_WEBP,
	THUMB_FMT_TIFF,
	THUMB_FMT_GIF,
	THUMB_FMT_HEIF, /* HEIC, HEIF and AVIF */
	THUMB_FMT_PDF,	/* its first page */
	/* videos: a poster frame (see thumb_decode_video) */
	THUMB_FMT_MP4, /* ISO base media: MP4, M4V, 3GP */
	THUMB_FMT_MOV, /* QuickTime */
	THUMB_FMT_WEBM,
	THUMB_FMT_MKV, /* Matroska */
	THUMB_FMT_AVI,
	THUMB_FMT_DICOM, /* its first frame */
};

/* How many of a file's first bytes thumb_detect() needs to tell each
 * format (DICOM's "DICM" is at 128). */
#define THUMB_HEAD 256

/* Whether fmt is a video's (whose thumbnail is of one frame, read from
 * its start: [thumbnail] max_bytes does not bound it). */
bool thumb_is_video(enum thumb_format fmt);

/* An 8-bit image, rows packed without padding. channels is 1 (gray),
 * 2 (gray+alpha), 3 (RGB) or 4 (RGBA); alpha is straight, not premultiplied.
 * The pixels are owned by the image: thumb_image_release() frees them. */
struct thumb_image {
	int width;
	int height;
	int channels;
	unsigned char *pixels;
	int orientation;    /* EXIF 1..8 of the pixels as stored; 1: upright */
	unsigned char *icc; /* the colour profile, or NULL; owned */
	size_t icc_len;
	/* a palette PNG's palette as RGBA quads (alpha from tRNS), or NULL;
	 * owned. The pixels are RGB(A) all the same; a PNG thumbnail of an
	 * image with a palette is written with it again. */
	unsigned char *palette;
	int palette_len;
	/* resampled by nearest neighbour, as Pillow resizes its "P" and "1"
	 * modes (a palette or a 1-bit gray PNG), whatever filter is asked */
	bool nearest;
	/* a video's poster frame: its time from the start, in ms */
	long long frame_ms;
};

struct thumb_opts {
	int max_width;	     /* the box the thumbnail fits in, e.g. 300 */
	int max_height;	     /* e.g. 300 */
	int jpeg_quality;    /* 1..100, e.g. 85 */
	uint64_t max_pixels; /* refuse larger images; 0: no limit */
	uint64_t max_bytes;  /* refuse larger files; 0: no limit */
	/* the thumbnail's format; THUMB_FMT_UNKNOWN: as the app does */
	enum thumb_format out_format;
};

/* What thumb_make() gives back. data is owned by the result:
 * thumb_result_release() frees it. mime_type and ext are static strings. */
struct thumb_result {
	enum thumb_format format; /* of the original */
	/* of the thumbnail: JPEG and PNG keep theirs, as the app's code does;
	 * any other is JPEG, or PNG when it has alpha */
	enum thumb_format thumb_format;
	int width; /* of the original, as displayed */
	int height;
	int thumb_width;
	int thumb_height;
	unsigned char *data; /* the encoded thumbnail */
	size_t size;
	const char *mime_type; /* of the original, e.g. "image/jpeg" */
	const char *thumb_ext; /* of the thumbnail, e.g. ".jpg" */
	long long frame_ms;    /* a video's poster frame's time; else -1 */
};

/* The defaults of the app: 300x300, quality 85, 100 megapixels. */
void thumb_opts_init(struct thumb_opts *opts);

/* The format of buf, from its magic bytes (never from a name). */
enum thumb_format thumb_detect(const unsigned char *buf, size_t len);

/* "image/jpeg", "image/png", "image/webp", "image/tiff", "image/gif",
 * "image/heic", "application/pdf", "video/mp4", "video/quicktime",
 * "video/webm", "video/x-matroska", "video/x-msvideo", "application/dicom"
 * or "application/octet-stream". */
const char *thumb_mime_type(enum thumb_format fmt);

/* The size Pillow's Image.thumbnail((max_w, max_h)) gives an image of
 * w x h: aspect kept by Pillow's rounding, never enlarged, at least 1. */
void thumb_fit(int w, int h, int max_w, int max_h, int *out_w, int *out_h);

/* Decode buf into img (8-bit, see struct thumb_image), pixels as stored and
 * img->orientation from the EXIF tag. For a JPEG, the DCT-domain scaling is
 * used to decode at the smallest size that is still at least twice the
 * thumbnail that fits box_w x box_h once upright (pass 0, 0 for full size).
 * The original's stored size is returned in *orig_w, *orig_h. On failure
 * img is left empty. */
int thumb_decode(const unsigned char *buf, size_t len, int box_w, int box_h,
		 uint64_t max_pixels, struct thumb_image *img, int *orig_w,
		 int *orig_h, char *err, size_t errlen);

/* The same for the file fd, of len bytes, read as it is decoded: JPEG and
 * PNG streamed through libjpeg and libpng; the other formats, whose
 * libraries read from memory, read whole up to THUMB_BUF_MAX and mapped
 * (mmap, the page cache's, not the heap's) beyond. So decoding a file
 * takes the decoder's working set, not the file's size, of the heap. */
#define THUMB_BUF_MAX (8u << 20)
int thumb_decode_fd(int fd, uint64_t len, int box_w, int box_h,
		    uint64_t max_pixels, struct thumb_image *img, int *orig_w,
		    int *orig_h, char *err, size_t errlen);

/* The EXIF orientation (1..8) in an APP1 Exif block, 1 when it has none. */
int thumb_exif_orientation(const unsigned char *exif, size_t len);

/* Turn src, stored with EXIF orientation, upright into a new dst. */
int thumb_orient(const struct thumb_image *src, int orientation,
		 struct thumb_image *dst);

/* Lanczos (a=3) resample src into a new image of w x h in dst, as two
 * separable passes; alpha is premultiplied while filtering. */
int thumb_resample(const struct thumb_image *src, int w, int h,
		   struct thumb_image *dst);

/* Encode img as fmt (JPEG at quality, or PNG) into a malloc'd buffer,
 * with img's colour profile if it has one. */
int thumb_encode(const struct thumb_image *img, enum thumb_format fmt,
		 int quality, unsigned char **out, size_t *out_len, char *err,
		 size_t errlen);

/* The whole pipeline: detect, decode, fit, resample, encode. */
int thumb_make(const unsigned char *buf, size_t len,
	       const struct thumb_opts *opts, struct thumb_result *res,
	       char *err, size_t errlen);

/* The same for the file fd (from its start), read as thumb_decode_fd. */
int thumb_make_fd(int fd, const struct thumb_opts *opts,
		  struct thumb_result *res, char *err, size_t errlen);

void thumb_image_release(struct thumb_image *img);
void thumb_result_release(struct thumb_result *res);

#endif
