/* gif.c - the first frame of a GIF to 8-bit RGB, or RGBA when it has a
 * transparent colour (giflib, read record by record: later frames are
 * never decoded). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>

#include "thumb/decoders.h"

struct src {
	const unsigned char *buf;
	size_t len;
	size_t pos;
};

static int gif_read(GifFileType *g, GifByteType *out, int n)
{
	struct src *s = g->UserData;
	size_t take = s->len - s->pos < (size_t)n ? s->len - s->pos : (size_t)n;
	memcpy(out, s->buf + s->pos, take);
	s->pos += take;
	return (int)take;
}

/* Draw the frame g->Image onto canvas (screen-sized, ch channels). */
static int draw_frame(GifFileType *g, unsigned char *canvas, int ch,
		      int transparent)
{
	const GifImageDesc *d = &g->Image;
	const ColorMapObject *map = d->ColorMap ? d->ColorMap : g->SColorMap;
	GifPixelType *line = malloc((size_t)d->Width + 1);
	static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
	int passes = d->Interlace ? 4 : 1, ret = 0;
	if (!map || !line) {
		free(line);
		return map ? -ENOMEM : -EINVAL;
	}
	for (int pass = 0; pass < passes && !ret; pass++) {
		int y0 = d->Interlace ? start[pass] : 0;
		int dy = d->Interlace ? step[pass] : 1;
		for (int y = y0; y < d->Height; y += dy) {
			if (DGifGetLine(g, line, d->Width) == GIF_ERROR) {
				ret = -EINVAL;
				break;
			}
			int sy = d->Top + y;
			if (sy < 0 || sy >= g->SHeight)
				continue;
			for (int x = 0; x < d->Width; x++) {
				int sx = d->Left + x, idx = line[x];
				if (sx < 0 || sx >= g->SWidth ||
				    idx == transparent ||
				    idx >= map->ColorCount)
					continue;
				unsigned char *p =
				    canvas + ((size_t)sy * g->SWidth + sx) * ch;
				p[0] = map->Colors[idx].Red;
				p[1] = map->Colors[idx].Green;
				p[2] = map->Colors[idx].Blue;
				if (ch == 4)
					p[3] = 255;
			}
		}
	}
	free(line);
	return ret;
}

int thumb_decode_gif(const unsigned char *buf, size_t len, uint64_t max_pixels,
		     struct thumb_image *img, int *w, int *h, char *err,
		     size_t errlen)
{
	struct src s = {buf, len, 0};
	unsigned char *canvas = NULL;
	int e = 0, ret = -EINVAL, transparent = -1;
	GifRecordType type;
	GifFileType *g = DGifOpen(&s, gif_read, &e);
	if (!g) {
		snprintf(err, errlen, "corrupt GIF: %s", GifErrorString(e));
		return -EINVAL;
	}
	*w = g->SWidth;
	*h = g->SHeight;
	ret = thumb_check_size(g->SWidth, g->SHeight, max_pixels, err, errlen);
	if (ret)
		goto out_close;
	ret = -EINVAL;
	snprintf(err, errlen, "corrupt GIF: no image in it");
	while (DGifGetRecordType(g, &type) != GIF_ERROR &&
	       type != TERMINATE_RECORD_TYPE) {
		if (type == EXTENSION_RECORD_TYPE) {
			int code;
			GifByteType *ext;
			if (DGifGetExtension(g, &code, &ext) == GIF_ERROR)
				break;
			if (code == GRAPHICS_EXT_FUNC_CODE && ext &&
			    ext[0] >= 4 && (ext[1] & 1))
				transparent = ext[4];
			while (ext &&
			       DGifGetExtensionNext(g, &ext) != GIF_ERROR)
				;
			continue;
		}
		if (type != IMAGE_DESC_RECORD_TYPE ||
		    DGifGetImageDesc(g) == GIF_ERROR)
			break;
		int ch = transparent >= 0 ? 4 : 3;
		canvas = calloc((size_t)g->SWidth * g->SHeight, (size_t)ch);
		if (!canvas) {
			snprintf(err, errlen, "out of memory for a GIF");
			ret = -ENOMEM;
			break;
		}
		if (ch == 3 && g->SColorMap &&
		    g->SBackGroundColor < g->SColorMap->ColorCount) {
			GifColorType bg =
			    g->SColorMap->Colors[g->SBackGroundColor];
			for (size_t i = 0; i < (size_t)g->SWidth * g->SHeight;
			     i++) {
				canvas[3 * i] = bg.Red;
				canvas[3 * i + 1] = bg.Green;
				canvas[3 * i + 2] = bg.Blue;
			}
		}
		ret = draw_frame(g, canvas, ch, transparent);
		if (ret) {
			snprintf(err, errlen, "corrupt GIF: %s",
				 ret == -ENOMEM ? "out of memory"
						: "bad first frame");
			break;
		}
		img->width = g->SWidth;
		img->height = g->SHeight;
		img->channels = ch;
		img->pixels = canvas;
		img->orientation = 1;
		canvas = NULL;
		break;
	}
out_close:
	free(canvas);
	DGifCloseFile(g, &e);
	return ret;
}
