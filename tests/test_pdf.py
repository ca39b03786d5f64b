"""PDF (#31): the first page of a scanned letter or a written one, drawn
at the thumbnail's size on white by poppler, as vipsthumbnail draws it;
the row's width and height are the page's in points (pixels at 72 dpi).
Broken and hostile PDFs are an error for that file, never a crash."""
import shutil
import subprocess

import pytest
from PIL import Image

from conftest import BUILD, Mount, check_broken, photos, psnr

THUMB = BUILD / "thumbfs-thumb"
# vipsthumbnail draws with the same poppler and cairo; the bound allows
# for the scanned page's JPEG and the thumbnail's re-encoding
PSNR_MIN = 40

needs_gs = pytest.mark.skipif(not shutil.which("gs"),
                              reason="ghostscript (gs) is not installed")
needs_vips = pytest.mark.skipif(not shutil.which("vipsthumbnail"),
                                reason="vipsthumbnail is not installed")

LETTER = """%!PS
/Helvetica findfont 24 scalefont setfont
72 700 moveto (Referral letter) show
/Times-Roman findfont 12 scalefont setfont
72 660 moveto (Dear colleague, please see the patient about the wound.) show
0.2 0.4 0.8 setrgbcolor
72 400 moveto 300 0 rlineto 0 150 rlineto -300 0 rlineto closepath fill
0 setgray 4 setlinewidth 100 100 moveto 500 300 lineto stroke
showpage
"""


def make_pdf(tmp_path, kind):
    """A PDF as a clinic has them, made by Debian's tools."""
    out = tmp_path / f"{kind}.pdf"
    if kind == "scan":  # a page scanned at 150 dpi (A4), by Pillow
        img = Image.open(photos()[3]).convert("RGB").resize((1240, 1754))
        img.save(out, resolution=150)
    elif kind == "letter":  # written: text and shapes, by ghostscript
        ps = tmp_path / "letter.ps"
        ps.write_text(LETTER)
        subprocess.run(["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE",
                        "-sDEVICE=pdfwrite", "-sPAPERSIZE=a4", "-o",
                        str(out), str(ps)], check=True, timeout=60)
    elif kind == "two-pages":  # red, then blue: the first is drawn
        red = Image.new("RGB", (600, 800), (200, 30, 30))
        red.save(out, save_all=True, resolution=72,
                 append_images=[Image.new("RGB", (600, 800), (30, 30, 200))])
    return out


def thumb(args, tmp_path, name="t.jpg"):
    out = tmp_path / name
    r = subprocess.run([str(THUMB), *args, str(out)], capture_output=True,
                       text=True, timeout=120)
    return r, out


@needs_gs
@needs_vips
@pytest.mark.parametrize("kind", ["scan", "letter", "two-pages"])
@pytest.mark.parametrize("isolated", [False, True])
def test_pdf_first_page_matches_vipsthumbnail(tmp_path, kind, isolated):
    pdf = make_pdf(tmp_path, kind)
    r, out = thumb(["--isolated", str(pdf)] if isolated else [str(pdf)],
                   tmp_path)
    assert r.returncode == 0, r.stderr
    subprocess.run(["vipsthumbnail", "-s", "300x300", "-o",
                    f"{tmp_path}/v.jpg[Q=85]", str(pdf)], check=True,
                   timeout=120)
    ours, vips = Image.open(out), Image.open(tmp_path / "v.jpg")
    assert ours.format == "JPEG" and ours.size == vips.size, \
        (ours.size, vips.size)
    assert max(ours.size) == 300
    assert psnr(ours, vips) >= PSNR_MIN
    if kind == "two-pages":
        r_, g_, b_ = ours.convert("RGB").getpixel((100, 150))
        assert r_ > 150 and b_ < 80, (r_, g_, b_)  # red: the first page


def minimal_pdf(pages, count, box):
    return (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            b"2 0 obj << /Type /Pages /Kids [" + pages + b"] /Count " +
            count + b" >> endobj\n3 0 obj << /Type /Page /Parent 2 0 R"
            b" /MediaBox [" + box + b"] >> endobj\ntrailer << /Root 1 0 R"
            b" >>\n%%EOF\n")


def test_broken_and_hostile_pdfs_are_an_error(tmp_path):
    good = make_pdf(tmp_path, "two-pages").read_bytes()
    cases = {  # what the error says; None: poppler makes do (a thumbnail)
        "truncated": (good[:len(good) // 3], "PDF document is damaged"),
        "header only": (b"%PDF-1.7\n", "PDF document is damaged"),
        "no pages": (minimal_pdf(b"", b"0", b"0 0 612 792"),
                     "a PDF without a page"),
        "2^31 pages": (minimal_pdf(b"3 0 R", b"2147483648",
                                   b"0 0 612 792"), "a PDF without a page"),
        "a page 9e8 points wide": (minimal_pdf(b"3 0 R", b"1",
                                               b"0 0 9e8 9e8"), None),
        "a page of no size": (minimal_pdf(b"3 0 R", b"1", b"0 0 0 0"),
                              None),
    }
    check_broken(THUMB, cases, tmp_path / "bad.pdf")


def test_a_blank_page_is_white(tmp_path):
    src = tmp_path / "blank.pdf"
    src.write_bytes(minimal_pdf(b"3 0 R", b"1", b"0 0 612 792"))
    r, out = thumb([str(src)], tmp_path)
    assert r.returncode == 0, r.stderr
    img = Image.open(out).convert("RGB")
    assert img.size == (232, 300)  # US letter, fit as Pillow fits
    assert img.getextrema() == ((255, 255), (255, 255), (255, 255))


def test_a_pdf_in_the_mount_gets_its_thumbnail(thumbfs_bin, tmp_path):
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        pdf = make_pdf(tmp_path, "scan")
        _, d = m.copy_checked(pdf, "referral.pdf", "application/pdf",
                              (595, 842))
        assert Image.open(d / "referral_thumb.jpg").size == (212, 300)
    finally:
        m.stop()
