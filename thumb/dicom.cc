/* dicom.cc - DICOM (GDCM, every transfer syntax it decodes): the first
 * frame, grey levels through the file's rescale and window (or the
 * frame's range), MONOCHROME1 inverted, colour as RGB. C++ only because
 * GDCM is; thumb_decode_dicom is the C side. */
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <streambuf>
#include <string>
#include <vector>
#include <algorithm>

#include <gdcmDataSet.h>
#include <gdcmImage.h>
#include <gdcmImageReader.h>
#include <gdcmTrace.h>

extern "C" {
#include "thumb/decoders.h"
}

namespace
{

/* What GDCM reads: the bytes as they are, seekable, not copied. */
class membuf : public std::streambuf
{
      public:
	membuf(const unsigned char *buf, size_t len)
	{
		char *p =
		    reinterpret_cast<char *>(const_cast<unsigned char *>(buf));
		setg(p, p, p + len);
	}

      protected:
	pos_type seekoff(off_type off, std::ios_base::seekdir dir,
			 std::ios_base::openmode) override
	{
		off_type base = dir == std::ios_base::beg   ? 0
				: dir == std::ios_base::cur ? gptr() - eback()
							    : egptr() - eback();
		off_type to = base + off;
		if (to < 0 || to > egptr() - eback())
			return pos_type(off_type(-1));
		setg(eback(), eback() + to, egptr());
		return pos_type(to);
	}
	pos_type seekpos(pos_type pos, std::ios_base::openmode m) override
	{
		return seekoff(off_type(pos), std::ios_base::beg, m);
	}
};

/* A walk over the elements of a file, to tell that each lies inside it
 * before GDCM reads it: GDCM, as Debian builds it (with assertions),
 * aborts on an element cut short, where the file's error is wanted. The
 * walk reads only tags and lengths (PS3.5 7.1, 7.5), never values. */
struct walk {
	const unsigned char *b;
	size_t end;	       /* of the file */
	size_t at;	       /* where the walk failed */
	bool pixels;	       /* the data set's pixel data was seen */
	size_t frag, frag_len; /* its first fragment, when encapsulated */
};

uint16_t u16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

uint32_t u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* The VRs whose length is 4 bytes after 2 reserved ones (PS3.5 7.1.2). */
bool long_vr(const unsigned char *vr)
{
	static const char *const longs[] = {"OB", "OD", "OF", "OL", "OV",
					    "OW", "SQ", "SV", "UC", "UN",
					    "UR", "UT", "UV"};
	for (const char *l : longs)
		if (!memcmp(vr, l, 2))
			return true;
	return false;
}

/* Whether vr is one PS3.5 6.2 defines: GDCM asserts on any other. */
bool known_vr(const unsigned char *vr)
{
	static const char vrs[] = "AEASATCSDADSDTFLFDISLOLTOBODOFOLOVOWPNSHSL"
				  "SQSSSTSVTMUCUIULUNURUSUTUV";
	for (size_t i = 0; i + 1 < sizeof(vrs); i += 2)
		if (vr[0] == vrs[i] && vr[1] == vrs[i + 1])
			return true;
	return false;
}

bool walk_set(walk &w, size_t &pos, size_t end, bool expl, bool in_item,
	      int depth);

/* The items of a sequence of undefined length, to its delimiter;
 * fragments: encapsulated pixel data, whose items are bytes. */
bool walk_items(walk &w, size_t &pos, bool expl, bool fragments, int depth)
{
	int items = 0;
	for (;;) {
		if (w.end - pos < 8)
			return false;
		uint16_t g = u16(w.b + pos), e = u16(w.b + pos + 2);
		uint32_t len = u32(w.b + pos + 4);
		w.at = pos;
		pos += 8;
		if (g != 0xfffe)
			return false;
		if (e == 0xe0dd)
			return true;
		if (e != 0xe000)
			return false;
		if (len == 0xffffffffu) {
			if (fragments ||
			    !walk_set(w, pos, w.end, expl, true, depth + 1))
				return false;
			continue;
		}
		if (len > w.end - pos)
			return false;
		/* the first fragment after the offset table */
		if (fragments && items++ == 1) {
			w.frag = pos;
			w.frag_len = len;
		}
		size_t sub = pos;
		if (!fragments &&
		    !walk_set(w, sub, pos + len, expl, false, depth + 1))
			return false;
		pos += len;
	}
}

/* The elements from pos to end (in_item: to an item's delimiter). */
bool walk_set(walk &w, size_t &pos, size_t end, bool expl, bool in_item,
	      int depth)
{
	if (depth > 32)
		return false;
	while (pos < end) {
		if (end - pos < 8)
			return false;
		w.at = pos;
		uint16_t g = u16(w.b + pos), e = u16(w.b + pos + 2);
		uint32_t len;
		bool un = false;
		if (g == 0xfffe) {
			pos += 8;
			return in_item && e == 0xe00d;
		}
		if (expl) {
			const unsigned char *vr = w.b + pos + 4;
			if (!known_vr(vr))
				return false;
			if (long_vr(vr)) {
				if (end - pos < 12)
					return false;
				len = u32(w.b + pos + 8);
				un = !memcmp(vr, "UN", 2);
				pos += 12;
			} else {
				len = u16(w.b + pos + 6);
				pos += 8;
			}
		} else {
			len = u32(w.b + pos + 4);
			pos += 8;
		}
		if (depth == 0 && g == 0x7fe0 && e == 0x0010)
			w.pixels = true;
		if (len == 0xffffffffu) {
			/* a sequence, or pixel data in fragments; an UN
			 * of undefined length is implicit VR (PS3.5 6.2.2) */
			if (!walk_items(w, pos, expl && !un,
					g == 0x7fe0 && e == 0x0010, depth))
				return false;
		} else if (len > end - pos) {
			return false;
		} else {
			pos += len;
		}
	}
	return !in_item && pos == end;
}

uint16_t be16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

uint32_t be32(const unsigned char *p)
{
	return (uint32_t)be16(p) << 16 | be16(p + 2);
}

/* The size a compressed frame says it has (a JPEG or JPEG-LS frame
 * header, a JPEG 2000 codestream's SIZ), or false when it says none we
 * read; *bits: a JPEG frame's sample precision, else 0. */
bool coded_size(const unsigned char *p, size_t n, long *w, long *h, int *bits)
{
	*bits = 0;
	if (n >= 16 && be16(p) == 0xff4f && be16(p + 2) == 0xff51) {
		*w = (long)be32(p + 8) - (long)be32(p + 16);
		*h = (long)be32(p + 12) - (long)be32(p + 20);
		return true;
	}
	if (n < 4 || be16(p) != 0xffd8)
		return false;
	for (size_t i = 2; i + 9 <= n && p[i] == 0xff;) {
		unsigned m = p[i + 1];
		if (m == 0xd8 || m == 0x01 || (m >= 0xd0 && m <= 0xd7)) {
			i += 2;
			continue;
		}
		bool sof = (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 &&
			    m != 0xcc) ||
			   m == 0xf7;
		if (sof) {
			*bits = m == 0xf7 ? 0 : p[i + 4];
			*h = be16(p + i + 5);
			*w = be16(p + i + 7);
			return true;
		}
		i += 2 + be16(p + i + 2);
	}
	return false;
}

/* Whether the Part 10 file buf lies inside its len bytes, as walk says,
 * with its transfer syntax and its pixel data; *at: where not. A
 * deflated or big-endian data set is left to GDCM. *coded_w x *coded_h:
 * the size its first compressed frame says, or -1; *coded_bits: its JPEG
 * sample precision, or 0. */
bool whole_file(const unsigned char *buf, size_t len, size_t *at, long *coded_w,
		long *coded_h, int *coded_bits)
{
	walk w = {buf, len, 132, false, 0, 0};
	size_t pos = 132;
	std::string syntax;
	/* the meta group: explicit VR little endian, always */
	while (len - pos >= 8 && u16(buf + pos) == 0x0002) {
		const unsigned char *vr = buf + pos + 4;
		if (!known_vr(vr)) {
			*at = pos;
			return false;
		}
		size_t hdr = long_vr(vr) ? 12 : 8;
		if (len - pos < hdr)
			break;
		uint32_t l =
		    hdr == 12 ? u32(buf + pos + 8) : u16(buf + pos + 6);
		if (l > len - pos - hdr) {
			*at = pos;
			return false;
		}
		if (u16(buf + pos + 2) == 0x0010)
			syntax.assign((const char *)buf + pos + hdr, l);
		pos += hdr + l;
	}
	while (!syntax.empty() &&
	       (syntax.back() == '\0' || syntax.back() == ' '))
		syntax.pop_back();
	*at = pos;
	if (syntax.empty()) /* GDCM aborts on a meta group cut short */
		return false;
	if (syntax == "1.2.840.10008.1.2.1.99" ||
	    syntax == "1.2.840.10008.1.2.2")
		return true;
	bool expl = syntax != "1.2.840.10008.1.2";
	bool ok = walk_set(w, pos, len, expl, false, 0);
	*at = ok ? len : w.at;
	if (!w.frag_len ||
	    !coded_size(buf + w.frag, w.frag_len, coded_w, coded_h, coded_bits))
		*coded_w = *coded_h = -1;
	return ok && w.pixels; /* and on a data set cut before them */
}

/* The first number of a DS element (VM 1-n, "40\400"), or false. */
bool first_number(const gdcm::DataSet &ds, uint16_t group, uint16_t elem,
		  double *v)
{
	const gdcm::Tag tag(group, elem);
	if (!ds.FindDataElement(tag))
		return false;
	const gdcm::ByteValue *bv = ds.GetDataElement(tag).GetByteValue();
	if (!bv || !bv->GetPointer() || bv->GetLength() == 0)
		return false;
	std::string s(bv->GetPointer(), bv->GetLength());
	char *end = nullptr;
	double d = strtod(s.c_str(), &end);
	if (end == s.c_str() || !std::isfinite(d))
		return false;
	*v = d;
	return true;
}

/* Stored sample i of a grey frame, its unused high bits dropped and
 * its sign extended as Pixel Representation says. */
double sample(const unsigned char *p, size_t i, int bytes, int bits, bool sign)
{
	uint32_t v;
	if (bytes == 1) {
		v = p[i];
	} else if (bytes == 2) {
		uint16_t u;
		memcpy(&u, p + 2 * i, 2);
		v = u;
	} else {
		memcpy(&v, p + 4 * i, 4);
	}
	if (bits < 32) {
		v &= (1u << bits) - 1;
		if (sign && (v >> (bits - 1)) & 1)
			return (double)v - (double)(1ull << bits);
	} else if (sign) {
		return (double)(int32_t)v;
	}
	return (double)v;
}

/* A grey frame into 8 bits: rescaled (modality), windowed as DICOM's
 * linear VOI function (PS3.3 C.11.2.1.2.1) with the file's first window,
 * else over the frame's range; 8-bit frames without either as they
 * are; MONOCHROME1 inverted. */
void grey(const gdcm::DataSet &ds, const gdcm::Image &im,
	  const unsigned char *p, size_t n, int bytes, int bits, bool sign,
	  bool mono1, unsigned char *out)
{
	double slope = im.GetSlope(), icpt = im.GetIntercept();
	if (!std::isfinite(slope) || slope == 0)
		slope = 1;
	if (!std::isfinite(icpt))
		icpt = 0;
	double c = 0, w = 0;
	bool window = first_number(ds, 0x0028, 0x1050, &c) &&
		      first_number(ds, 0x0028, 0x1051, &w) && w >= 1;
	bool as_is = !window && bits <= 8 && !sign && slope == 1 && icpt == 0;
	if (!window && !as_is) {
		double lo = std::numeric_limits<double>::max(), hi = -lo;
		for (size_t i = 0; i < n; i++) {
			double s = sample(p, i, bytes, bits, sign);
			lo = s < lo ? s : lo;
			hi = s > hi ? s : hi;
		}
		lo = lo * slope + icpt, hi = hi * slope + icpt;
		if (lo > hi) /* a negative slope */
			std::swap(lo, hi);
		/* the window whose ends are the range's */
		w = hi - lo + 1;
		c = lo + 0.5 + (w - 1) / 2;
	}
	auto map = [&](double s) {
		double x = s * slope + icpt, y;
		if (as_is)
			y = x;
		else if (x <= c - 0.5 - (w - 1) / 2)
			y = 0;
		else if (x > c - 0.5 + (w - 1) / 2)
			y = 255;
		else
			y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255;
		long v = lround(y);
		v = v < 0 ? 0 : v > 255 ? 255 : v;
		return (unsigned char)(mono1 ? 255 - v : v);
	};
	if (bytes > 2) {
		for (size_t i = 0; i < n; i++)
			out[i] = map(sample(p, i, bytes, bits, sign));
		return;
	}
	/* up to 16 bits: a table of every stored value's grey */
	std::vector<unsigned char> lut(size_t(1) << bits);
	for (size_t v = 0; v < lut.size(); v++) {
		unsigned char b[2] = {(unsigned char)v,
				      (unsigned char)(v >> 8)};
		lut[v] = map(sample(b, 0, 2, bits, sign));
	}
	uint32_t mask = (uint32_t)lut.size() - 1;
	for (size_t i = 0; i < n; i++) {
		uint32_t v = p[bytes * i];
		if (bytes == 2)
			v |= (uint32_t)p[2 * i + 1] << 8;
		out[i] = lut[v & mask];
	}
}

/* img reduced by fx x fy, each block of its pixels averaged (those at
 * the edges of what is left), as Pillow's reduce() does before its
 * Lanczos pass (thumb_load_size's factors); false when out of memory. */
bool box_reduce(struct thumb_image *img, int fx, int fy)
{
	int ch = img->channels, iw = img->width, ih = img->height;
	int w = (iw + fx - 1) / fx, h = (ih + fy - 1) / fy;
	unsigned char *out = (unsigned char *)malloc((size_t)w * h * ch);
	std::vector<uint32_t> sum((size_t)w * ch);
	if (!out)
		return false;
	for (int oy = 0; oy < h; oy++) {
		std::fill(sum.begin(), sum.end(), 0);
		int y0 = oy * fy, y1 = std::min(y0 + fy, ih);
		for (int y = y0; y < y1; y++) {
			const unsigned char *row =
			    img->pixels + (size_t)y * iw * ch;
			for (int x = 0; x < iw; x++)
				for (int k = 0; k < ch; k++)
					sum[(size_t)(x / fx) * ch + k] +=
					    row[(size_t)x * ch + k];
		}
		for (int ox = 0; ox < w; ox++) {
			uint32_t cnt =
			    (uint32_t)(std::min((ox + 1) * fx, iw) - ox * fx) *
			    (uint32_t)(y1 - y0);
			for (int k = 0; k < ch; k++)
				out[((size_t)oy * w + ox) * ch + k] =
				    (unsigned char)((sum[(size_t)ox * ch + k] +
						     cnt / 2) /
						    cnt);
		}
	}
	free(img->pixels);
	img->pixels = out;
	img->width = w;
	img->height = h;
	return true;
}

unsigned char clamp8(double v)
{
	long r = lround(v);
	return (unsigned char)(r < 0 ? 0 : r > 255 ? 255 : r);
}

/* An 8-bit colour frame into interleaved RGB: planes interleaved, YBR
 * (full range, PS3.3 C.7.6.3.1.2) converted. */
void colour(const unsigned char *p, size_t n, bool planar, bool ybr,
	    unsigned char *out)
{
	for (size_t i = 0; i < n; i++) {
		double a = planar ? p[i] : p[3 * i];
		double b = planar ? p[n + i] : p[3 * i + 1];
		double c = planar ? p[2 * n + i] : p[3 * i + 2];
		if (ybr) {
			out[3 * i] = clamp8(a + 1.402 * (c - 128));
			out[3 * i + 1] = clamp8(a - 0.344136 * (b - 128) -
						0.714136 * (c - 128));
			out[3 * i + 2] = clamp8(a + 1.772 * (b - 128));
		} else {
			out[3 * i] = (unsigned char)a;
			out[3 * i + 1] = (unsigned char)b;
			out[3 * i + 2] = (unsigned char)c;
		}
	}
}

} // namespace

/* GDCM falls back, when libjpeg refuses a JPEG frame, to PVRG: it
 * writes the frame to a file of tempnam()'s in /tmp and runs pvrg-jpeg
 * through system() (when Debian's pvrg-jpeg is installed, as
 * libgdcm-tools has it), and leaves the file when that fails. Patient
 * pixels must not land in /tmp and a hostile file must start nothing,
 * so this program's tempnam() refuses, the dynamic linker giving GDCM
 * this definition before libc's: PVRG then gives up before it writes.
 * Nothing else in thumbfs uses tempnam(). */
extern "C" char *tempnam(const char *dir, const char *pfx) noexcept
{
	(void)dir, (void)pfx;
	errno = EPERM;
	return nullptr;
}

extern "C" int thumb_decode_dicom(const unsigned char *buf, size_t len,
				  int box_w, int box_h, uint64_t max_pixels,
				  struct thumb_image *img, int *w, int *h,
				  char *err, size_t errlen)
{
	try {
		/* GDCM's own messages would name tags, never a patient;
		 * they go nowhere: the file's error says what failed */
		gdcm::Trace::SetDebug(false);
		gdcm::Trace::SetWarning(false);
		gdcm::Trace::SetError(false);
		size_t at = 0;
		long coded_w = -1, coded_h = -1;
		int coded_bits = 0;
		if (len < 132 || !whole_file(buf, len, &at, &coded_w, &coded_h,
					     &coded_bits)) {
			snprintf(err, errlen,
				 "a DICOM file cut short, malformed or without "
				 "pixel data (walked to byte %zu)",
				 at);
			return -EINVAL;
		}
		/* GDCM asserts on any other, reading the header */
		if (coded_bits && coded_bits != 8 && coded_bits != 12 &&
		    coded_bits != 16) {
			snprintf(err, errlen,
				 "a DICOM frame of %d-bit JPEG samples, which "
				 "GDCM does not decode",
				 coded_bits);
			return -ENOTSUP;
		}
		membuf mb(buf, len);
		std::istream is(&mb);
		gdcm::ImageReader r;
		r.SetStream(is);
		if (!r.Read()) {
			snprintf(err, errlen,
				 "not a DICOM image GDCM reads (no pixel data, "
				 "or a damaged file)");
			return -EINVAL;
		}
		const gdcm::Image &im = r.GetImage();
		const unsigned int *d = im.GetDimensions();
		unsigned int nd = im.GetNumberOfDimensions();
		if (!d || nd < 2 || d[0] > 65535 || d[1] > 65535) {
			snprintf(err, errlen, "a DICOM image of no size");
			return -EINVAL;
		}
		int cols = (int)d[0], rows = (int)d[1];
		int ret = thumb_check_size(cols, rows, max_pixels, err, errlen);
		if (ret)
			return ret;
		/* GDCM trusts the header over the stream (and asserts, or
		 * would write past its buffer without assertions) */
		if (coded_w >= 0 && (coded_w != cols || coded_h != rows)) {
			snprintf(
			    err, errlen,
			    "a DICOM frame coded as %ldx%ld under a header "
			    "of %dx%d",
			    coded_w, coded_h, cols, rows);
			return -EINVAL;
		}
		gdcm::PixelFormat pf = im.GetPixelFormat();
		int spp = pf.GetSamplesPerPixel();
		int alloc = pf.GetBitsAllocated(), bits = pf.GetBitsStored();
		bool sign = pf.GetPixelRepresentation() == 1;
		gdcm::PhotometricInterpretation pi =
		    im.GetPhotometricInterpretation();
		bool mono =
		    pi == gdcm::PhotometricInterpretation::MONOCHROME1 ||
		    pi == gdcm::PhotometricInterpretation::MONOCHROME2;
		bool rgb = pi == gdcm::PhotometricInterpretation::RGB;
		bool packed = r.GetFile()
				  .GetHeader()
				  .GetDataSetTransferSyntax()
				  .IsEncapsulated();
		/* JPEG 2000's component transforms are undone by its
		 * decoder; a compressed 4:2:2 frame is decoded to full
		 * resolution, still YBR */
		rgb = rgb || (packed &&
			      (pi == gdcm::PhotometricInterpretation::YBR_ICT ||
			       pi == gdcm::PhotometricInterpretation::YBR_RCT));
		bool ybr =
		    pi == gdcm::PhotometricInterpretation::YBR_FULL ||
		    (packed &&
		     pi == gdcm::PhotometricInterpretation::YBR_FULL_422);
		if (!((mono && spp == 1 &&
		       (alloc == 8 || alloc == 16 || alloc == 32)) ||
		      ((rgb || ybr) && spp == 3 && alloc == 8)) ||
		    bits < 1 || bits > alloc) {
			snprintf(err, errlen,
				 "a DICOM image of %s, %d samples of %d bits "
				 "(%d stored), not one thumbfs reads",
				 pi.GetString() ? pi.GetString() : "?", spp,
				 alloc, bits);
			return -ENOTSUP;
		}
		size_t n = (size_t)cols * (size_t)rows;
		size_t frame = n * (size_t)spp * (size_t)(alloc / 8);
		unsigned long whole = im.GetBufferLength();
		/* every frame is decoded: a bound on all of them */
		if (whole < frame || whole > (1ul << 31)) {
			snprintf(err, errlen,
				 "a DICOM image of %lu bytes of pixels, over "
				 "what is decoded whole (2 GiB)",
				 whole);
			return -EFBIG;
		}
		const gdcm::ByteValue *raw = im.GetDataElement().GetByteValue();
		if (!packed && (!raw || raw->GetLength() < whole)) {
			snprintf(err, errlen,
				 "the DICOM pixel data is %lu bytes of the %lu "
				 "its size says (truncated?)",
				 raw ? (unsigned long)raw->GetLength() : 0ul,
				 whole);
			return -EINVAL;
		}
		/* a codec that gives fewer bytes leaves black: zeroed when
		 * compressed (native data was checked to be whole) */
		std::unique_ptr<char[]> px(
		    packed ? new (std::nothrow) char[whole]()
			   : new (std::nothrow) char[whole]);
		if (!px) {
			snprintf(err, errlen, "out of memory for %lu bytes",
				 whole);
			return -ENOMEM;
		}
		if (!im.GetBuffer(px.get())) {
			snprintf(err, errlen,
				 "the DICOM pixel data could not be decoded "
				 "(%s)",
				 gdcm::TransferSyntax::GetTSString(
				     r.GetFile()
					 .GetHeader()
					 .GetDataSetTransferSyntax()));
			return -EINVAL;
		}
		img->pixels = (unsigned char *)malloc(n * (mono ? 1 : 3));
		if (!img->pixels) {
			snprintf(err, errlen, "out of memory for %dx%d", cols,
				 rows);
			return -ENOMEM;
		}
		const unsigned char *p =
		    reinterpret_cast<const unsigned char *>(px.get());
		if (mono)
			grey(r.GetFile().GetDataSet(), im, p, n, alloc / 8,
			     bits, sign,
			     pi == gdcm::PhotometricInterpretation::MONOCHROME1,
			     img->pixels);
		else
			colour(p, n, im.GetPlanarConfiguration() == 1, ybr,
			       img->pixels);
		img->width = cols;
		img->height = rows;
		img->channels = mono ? 1 : 3;
		img->orientation = 1;
		int tw = cols, th = rows;
		if (box_w > 0 && box_h > 0)
			thumb_target(cols, rows, 1, box_w, box_h, &tw, &th);
		int fx = std::max(cols / tw / 2, 1),
		    fy = std::max(rows / th / 2, 1);
		if ((fx > 1 || fy > 1) && !box_reduce(img, fx, fy)) {
			thumb_image_release(img);
			snprintf(err, errlen, "out of memory reducing %dx%d",
				 cols, rows);
			return -ENOMEM;
		}
		*w = cols;
		*h = rows;
		return 0;
	} catch (const std::bad_alloc &) {
		thumb_image_release(img);
		snprintf(err, errlen, "out of memory decoding a DICOM image");
		return -ENOMEM;
	} catch (const std::exception &e) {
		thumb_image_release(img);
		snprintf(err, errlen, "a DICOM file GDCM cannot read: %s",
			 e.what());
		return -EINVAL;
	}
}
