/* video.c - video (FFmpeg's libavformat and libavcodec): a poster frame,
 * the first of the first seconds that is neither black nor nearly uniform,
 * turned as the container says; the video's size is the original's. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "thumb/decoders.h"

/* How far a poster frame is looked for: stream time, frames decoded and
 * packets read (whichever ends first); then the most varied frame seen. */
#define POSTER_SECONDS 10.0
#define POSTER_FRAMES  600
#define POSTER_PACKETS 20000
/* A frame is a picture when its luma, reduced to at most VARY_SIDE
 * square, has a standard deviation of at least VARY_MIN (of 255): black,
 * a flat colour and a faint noise over either are not. */
#define VARY_SIDE 64
#define VARY_MIN  10.0
/* The containers read: a hostile file never reaches another demuxer. */
#define DEMUXERS "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi"

/* The file, read by libavformat from memory. */
struct mem {
	const unsigned char *buf;
	size_t len;
	size_t pos;
};

static int io_read(void *opaque, uint8_t *to, int n)
{
	struct mem *m = opaque;
	if (m->pos >= m->len)
		return AVERROR_EOF;
	size_t k = m->len - m->pos < (size_t)n ? m->len - m->pos : (size_t)n;
	memcpy(to, m->buf + m->pos, k);
	m->pos += k;
	return (int)k;
}

static int64_t io_seek(void *opaque, int64_t off, int whence)
{
	struct mem *m = opaque;
	if (whence & AVSEEK_SIZE)
		return (int64_t)m->len;
	int64_t base = 0;
	switch (whence & ~AVSEEK_FORCE) {
	case SEEK_SET:
		break;
	case SEEK_CUR:
		base = (int64_t)m->pos;
		break;
	case SEEK_END:
		base = (int64_t)m->len;
		break;
	default:
		return AVERROR(EINVAL);
	}
	if (off > (int64_t)m->len - base || off < -base)
		return AVERROR(EINVAL);
	m->pos = (size_t)(base + off);
	return (int64_t)m->pos;
}

/* No file a video names (a QuickTime reference, a playlist) is opened. */
static int refuse_open(struct AVFormatContext *s, AVIOContext **pb,
		       const char *url, int flags, AVDictionary **options)
{
	(void)s, (void)pb, (void)url, (void)flags, (void)options;
	return AVERROR(EPERM);
}

/* The colour range and matrix frame f is decoded in, told to sws. */
static void set_colours(struct SwsContext *sws, const AVFrame *f)
{
	const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
	bool rgb = d && (d->flags & AV_PIX_FMT_FLAG_RGB);
	int full = f->color_range == AVCOL_RANGE_JPEG ||
		   f->format == AV_PIX_FMT_YUVJ420P ||
		   f->format == AV_PIX_FMT_YUVJ422P ||
		   f->format == AV_PIX_FMT_YUVJ444P || rgb;
	int cs = f->colorspace == AVCOL_SPC_UNSPECIFIED ||
			 f->colorspace == AVCOL_SPC_RGB
		     ? SWS_CS_DEFAULT
		     : (int)f->colorspace;
	const int *coef = sws_getCoefficients(cs);
	sws_setColorspaceDetails(sws, coef, full, coef, 1, 0, 1 << 16, 1 << 16);
}

/* How varied frame f is: its luma's standard deviation (of 255) at most
 * VARY_SIDE square; -1 if it cannot be converted. */
static double variety(const AVFrame *f)
{
	int w = f->width < VARY_SIDE ? f->width : VARY_SIDE;
	int h = f->height < VARY_SIDE ? f->height : VARY_SIDE;
	unsigned char gray[VARY_SIDE * VARY_SIDE];
	struct SwsContext *sws =
	    sws_getContext(f->width, f->height, f->format, w, h,
			   AV_PIX_FMT_GRAY8, SWS_AREA, NULL, NULL, NULL);
	if (!sws)
		return -1;
	set_colours(sws, f);
	uint8_t *dst[4] = {gray, NULL, NULL, NULL};
	int stride[4] = {w, 0, 0, 0};
	int rows = sws_scale(sws, (const uint8_t *const *)f->data, f->linesize,
			     0, f->height, dst, stride);
	sws_freeContext(sws);
	if (rows != h)
		return -1;
	double sum = 0, sq = 0, n = (double)w * h;
	for (int i = 0; i < w * h; i++) {
		sum += gray[i];
		sq += (double)gray[i] * gray[i];
	}
	double mean = sum / n, var = sq / n - mean * mean;
	return var > 0 ? sqrt(var) : 0;
}

/* The EXIF orientation of what stream st's display matrix says (turns by
 * quarters; 1 for none or any other angle). */
static int orientation_of(const AVStream *st)
{
	const int32_t *m =
	    (const int32_t *)(const void *)av_stream_get_side_data(
		st, AV_PKT_DATA_DISPLAYMATRIX, NULL);
	if (!m)
		return 1;
	double theta = -av_display_rotation_get(m); /* clockwise */
	if (isnan(theta))
		return 1;
	theta -= 360 * floor(theta / 360 + 0.9 / 360);
	if (fabs(theta - 90) < 1)
		return 6;
	if (fabs(theta - 180) < 1)
		return 3;
	if (fabs(theta - 270) < 1)
		return 8;
	return 1;
}

/* Frame f into img as RGB, w x h (its size as displayed) loaded for
 * box_w x box_h turned by o. */
static int to_rgb(const AVFrame *f, int w, int h, int o, int box_w, int box_h,
		  struct thumb_image *img, char *err, size_t errlen)
{
	int lw, lh;
	thumb_load_size(w, h, o, box_w, box_h, &lw, &lh);
	/* never enlarged here: a wide sample aspect is the Lanczos pass's */
	lw = lw < f->width ? lw : f->width;
	lh = lh < f->height ? lh : f->height;
	struct SwsContext *sws =
	    sws_getContext(f->width, f->height, f->format, lw, lh,
			   AV_PIX_FMT_RGB24, SWS_AREA, NULL, NULL, NULL);
	if (!sws) {
		snprintf(err, errlen, "cannot convert a frame of %s",
			 av_get_pix_fmt_name(f->format)
			     ? av_get_pix_fmt_name(f->format)
			     : "an unknown pixel format");
		return -EINVAL;
	}
	set_colours(sws, f);
	img->pixels = malloc((size_t)lw * (size_t)lh * 3);
	if (!img->pixels) {
		sws_freeContext(sws);
		snprintf(err, errlen, "out of memory converting %dx%d", lw, lh);
		return -ENOMEM;
	}
	uint8_t *dst[4] = {img->pixels, NULL, NULL, NULL};
	int stride[4] = {lw * 3, 0, 0, 0};
	int rows = sws_scale(sws, (const uint8_t *const *)f->data, f->linesize,
			     0, f->height, dst, stride);
	sws_freeContext(sws);
	if (rows != lh) {
		free(img->pixels);
		img->pixels = NULL;
		snprintf(err, errlen, "cannot convert a frame of %dx%d",
			 f->width, f->height);
		return -EINVAL;
	}
	img->width = lw;
	img->height = lh;
	img->channels = 3;
	img->orientation = o;
	return 0;
}

int thumb_decode_video(const unsigned char *buf, size_t len, int box_w,
		       int box_h, uint64_t max_pixels, struct thumb_image *img,
		       int *w, int *h, char *err, size_t errlen)
{
	struct mem m = {buf, len, 0};
	AVFormatContext *fc = NULL;
	AVCodecContext *dc = NULL;
	AVPacket *pkt = av_packet_alloc();
	AVFrame *frame = av_frame_alloc(), *best = av_frame_alloc();
	unsigned char *iobuf = av_malloc(1 << 16);
	AVIOContext *io = NULL;
	int ret = -ENOMEM, r;
	char why[AV_ERROR_MAX_STRING_SIZE] = "";

	av_log_set_level(AV_LOG_QUIET); /* said in err, once */
	if (!pkt || !frame || !best || !iobuf ||
	    !(io = avio_alloc_context(iobuf, 1 << 16, 0, &m, io_read, NULL,
				      io_seek)) ||
	    !(fc = avformat_alloc_context())) {
		snprintf(err, errlen, "out of memory opening a video");
		goto out;
	}
	iobuf = NULL; /* the context's */
	fc->pb = io;
	fc->io_open = refuse_open;
	fc->format_whitelist = av_strdup(DEMUXERS);
	r = avformat_open_input(&fc, NULL, NULL, NULL);
	if (r < 0) { /* fc freed */
		av_strerror(r, why, sizeof(why));
		snprintf(err, errlen, "not a video FFmpeg reads: %s", why);
		ret = -EINVAL;
		goto out;
	}
	if ((r = avformat_find_stream_info(fc, NULL)) < 0) {
		av_strerror(r, why, sizeof(why));
		snprintf(err, errlen, "a video FFmpeg cannot read: %s", why);
		ret = -EINVAL;
		goto out;
	}
	const AVCodec *codec = NULL;
	int idx =
	    av_find_best_stream(fc, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
	if (idx < 0 || !codec) {
		snprintf(err, errlen,
			 idx == AVERROR_DECODER_NOT_FOUND
			     ? "a video in a format FFmpeg has no decoder for"
			     : "a file without a video stream");
		ret = -EINVAL;
		goto out;
	}
	AVStream *st = fc->streams[idx];
	int vw = st->codecpar->width, vh = st->codecpar->height;
	if (vw <= 0 || vh <= 0) { /* FFmpeg refused the size it declares */
		snprintf(err, errlen, "a video stream of no size FFmpeg takes");
		ret = -EINVAL;
		goto out;
	}
	if ((ret = thumb_check_size(vw, vh, max_pixels, err, errlen)))
		goto out;
	ret = -ENOMEM;
	if (!(dc = avcodec_alloc_context3(codec)) ||
	    avcodec_parameters_to_context(dc, st->codecpar) < 0) {
		snprintf(err, errlen, "out of memory opening a decoder");
		goto out;
	}
	dc->thread_count = 1; /* one frame is wanted, soon */
	dc->pkt_timebase = st->time_base;
	if (max_pixels && max_pixels < INT64_MAX)
		dc->max_pixels = (int64_t)max_pixels;
	if ((r = avcodec_open2(dc, codec, NULL)) < 0) {
		av_strerror(r, why, sizeof(why));
		snprintf(err, errlen, "cannot open the %s decoder: %s",
			 codec->name, why);
		ret = -EINVAL;
		goto out;
	}
	/* the first varied frame, else the most varied of those looked at */
	double best_vary = -1, best_t = 0;
	int frames = 0, packets = 0;
	bool done = false, eof = false;
	double tb = av_q2d(st->time_base);
	int64_t start = st->start_time != AV_NOPTS_VALUE ? st->start_time : 0;
	while (!done && frames < POSTER_FRAMES && packets < POSTER_PACKETS) {
		if (!eof) {
			r = av_read_frame(fc, pkt);
			packets++;
			if (r < 0) {
				eof = true;
				avcodec_send_packet(dc, NULL); /* drain */
			} else if (pkt->stream_index == idx) {
				avcodec_send_packet(dc, pkt);
			}
			av_packet_unref(pkt);
		}
		while (!done && (r = avcodec_receive_frame(dc, frame)) == 0) {
			frames++;
			int64_t pts = frame->best_effort_timestamp;
			double t = pts == AV_NOPTS_VALUE
				       ? frames / 25.0
				       : (double)(pts - start) * tb;
			double v = variety(frame);
			if (v > best_vary) {
				av_frame_unref(best);
				av_frame_move_ref(best, frame);
				best_vary = v;
				best_t = t;
			}
			av_frame_unref(frame);
			done = v >= VARY_MIN || t >= POSTER_SECONDS ||
			       frames >= POSTER_FRAMES;
		}
		if (eof && r != 0)
			break; /* drained */
	}
	if (best_vary < 0 || !best->width || !best->height) {
		snprintf(err, errlen,
			 "no frame of this video could be decoded");
		ret = -EINVAL;
		goto out;
	}
	/* the size shown: the frame's, widened by its sample aspect */
	int dw = best->width, dh = best->height;
	AVRational sar = av_guess_sample_aspect_ratio(fc, st, best);
	if (sar.num > 0 && sar.den > 0 && sar.num != sar.den) {
		double x = dw * av_q2d(sar);
		dw = x < 1 ? 1 : x > 65535 ? 65535 : (int)lround(x);
	}
	if ((ret = thumb_check_size(dw, dh, max_pixels, err, errlen)))
		goto out;
	int o = orientation_of(st);
	if ((ret = to_rgb(best, dw, dh, o, box_w, box_h, img, err, errlen)))
		goto out;
	img->frame_ms = (long long)llround(best_t * 1000);
	*w = dw;
	*h = dh;
	ret = 0;
out:
	avcodec_free_context(&dc);
	avformat_close_input(&fc);
	if (io)
		av_freep(&io->buffer);
	avio_context_free(&io);
	av_free(iobuf);
	av_packet_free(&pkt);
	av_frame_free(&frame);
	av_frame_free(&best);
	return ret;
}
