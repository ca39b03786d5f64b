"""DICOM (#31): the first frame through GDCM, grey levels windowed as the
file says (else over the frame's range), MONOCHROME1 inverted, colour as
RGB; every transfer syntax a clinic's devices write. Files are made by
pydicom (16-bit, signed, windows, multi-frame), DCMTK's img2dcm (JPEG
baseline from a photograph) and GDCM's gdcmconv (RLE, JPEG lossless,
JPEG-LS, JPEG 2000); pixels are checked against pydicom's windowed array
fit as Pillow fits it. The patient's name and id reach nothing."""
import os
import shutil
import subprocess

import pytest
from PIL import Image

from conftest import BUILD, Mount, check_broken, thumb_png, photos, psnr

np = pytest.importorskip("numpy", reason="python3-numpy is not installed")
pydicom = pytest.importorskip("pydicom",
                              reason="python3-pydicom is not installed")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.pixel_data_handlers.util import (  # noqa: E402
    apply_modality_lut, apply_voi_lut)
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

THUMB = BUILD / "thumbfs-thumb"
# both sides fit the same 8-bit frame by Lanczos: rounding is what is left
PSNR_MIN = 40
NAME, PID = "Doe^Jane", "PID-7788-SECRET"
CUT = "a DICOM file cut short, malformed or without pixel data"

needs_gdcmconv = pytest.mark.skipif(not shutil.which("gdcmconv"),
                                    reason="gdcmconv (libgdcm-tools) absent")
needs_img2dcm = pytest.mark.skipif(not shutil.which("img2dcm"),
                                   reason="img2dcm (dcmtk) is not installed")


def gradient(w, h, lo, hi, frames=1):
    """A frame whose values run from lo to hi, with a shape on it (so a
    wrong turn or a wrong frame shows); frame k is offset by k."""
    y, x = np.mgrid[0:h, 0:w]
    a = lo + (hi - lo) * (x + y) / (w + h - 2)
    a[h // 4:h // 2, w // 5:w // 2] = lo + (hi - lo) * 0.8
    return np.stack([a + k * (hi - lo) / 4 for k in range(frames)])


def make_dicom(path, arr, bits=16, signed=False, photometric="MONOCHROME2",
               window=None, rescale=None, planar=0):
    """A DICOM file (explicit VR little endian) of arr: frames x rows x
    cols (grey) or frames x rows x cols x 3 (colour)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID = NAME, PID
    ds.Modality = "OT"
    frames, rows, cols = arr.shape[:3]
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    colour = arr.ndim == 4
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    alloc = 8 if bits <= 8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = alloc, bits, bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    if colour:
        ds.PlanarConfiguration = planar
        if planar:
            arr = arr.transpose(0, 3, 1, 2)
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    dtype = {(8, False): np.uint8, (16, False): np.uint16,
             (16, True): np.int16}[(alloc, signed)]
    ds.PixelData = np.ascontiguousarray(arr.astype(dtype)).tobytes()
    ds.save_as(path, write_like_original=False)
    return path


def expected(path):
    """What thumbfs should show of path's first frame, as pydicom reads
    and windows it, fit in 300x300 by Pillow's Lanczos."""
    ds = pydicom.dcmread(path)
    a = ds.pixel_array
    if int(getattr(ds, "NumberOfFrames", 1)) > 1:
        a = a[0]
    if ds.SamplesPerPixel == 3:
        if ds.PhotometricInterpretation != "RGB":
            from pydicom.pixel_data_handlers.util import convert_color_space
            a = convert_color_space(a, ds.PhotometricInterpretation, "RGB")
        img = Image.fromarray(a.astype(np.uint8), "RGB")
    else:
        m = apply_modality_lut(a, ds).astype(np.float64)
        if "WindowCenter" in ds:
            v = apply_voi_lut(m, ds)
            bits = ds.BitsStored
            lo, hi = ((-2 ** (bits - 1), 2 ** (bits - 1) - 1)
                      if ds.PixelRepresentation else (0, 2 ** bits - 1))
            v = (v - lo) / (hi - lo) * 255
        elif ds.BitsStored <= 8 and not ds.PixelRepresentation:
            v = m
        else:  # no window: the frame's range
            v = (m - m.min()) / max(m.max() - m.min(), 1) * 255
        v = np.clip(np.rint(v), 0, 255).astype(np.uint8)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            v = 255 - v
        img = Image.fromarray(v, "L")
    img.thumbnail((300, 300), Image.LANCZOS)
    return img


def check(tmp_path, src, size):
    for args in ([], ["--isolated"]):
        r, out = thumb_png(tmp_path, src, *args)
        assert r.returncode == 0, r.stderr
        assert f"application/dicom {size[0]}x{size[1]}," in r.stdout, \
            r.stdout
        ref = expected(src)
        ours = Image.open(out).convert(ref.mode)
        assert ours.size == ref.size
        assert psnr(ours, ref) >= PSNR_MIN, src


GREY = {  # name: make_dicom's arguments beside the array
    "16-bit with its window": dict(
        arr=gradient(640, 512, 0, 4095), bits=12, window=(1500, 2000)),
    "signed CT, rescaled, a window of two views": dict(
        arr=gradient(512, 512, -1000, 2000), bits=16, signed=True,
        rescale=(1, -1024), window=([40, 400], [400, 1500])),
    "MONOCHROME1 (an X-ray), 12-bit": dict(
        arr=gradient(400, 600, 100, 3900), bits=12,
        photometric="MONOCHROME1", window=(2000, 3000)),
    "16-bit without a window": dict(arr=gradient(300, 200, 200, 60000)),
    "8-bit without a window": dict(arr=gradient(700, 300, 10, 240),
                                   bits=8),
    "three frames: the first": dict(
        arr=gradient(320, 240, 0, 1000, frames=3), window=(500, 1000)),
}


@pytest.mark.parametrize("name", sorted(GREY))
def test_grey_frames_windowed_as_pydicom(tmp_path, name):
    kw = dict(GREY[name])
    arr = kw.pop("arr")
    src = make_dicom(tmp_path / "g.dcm", arr, **kw)
    check(tmp_path, src, (arr.shape[2], arr.shape[1]))


@pytest.mark.parametrize("photometric,planar", [("RGB", 0), ("RGB", 1),
                                                ("YBR_FULL", 0)])
def test_colour_frames(tmp_path, photometric, planar):
    img = Image.open(photos()[2]).convert("RGB").resize((640, 360))
    a = np.asarray(img.convert("YCbCr") if photometric == "YBR_FULL"
                   else img)[None]
    src = make_dicom(tmp_path / "c.dcm", a, bits=8,
                     photometric=photometric, planar=planar)
    check(tmp_path, src, (640, 360))


@needs_gdcmconv
@pytest.mark.parametrize("syntax", ["--rle", "--jpeg", "--jpegls",
                                    "--j2k"])
def test_compressed_transfer_syntaxes(tmp_path, syntax):
    """Lossless compressions of a 16-bit frame, a colour one and three
    frames: the same pixels as the uncompressed file."""
    files = {
        "grey": make_dicom(tmp_path / "g.dcm", **{**GREY[
            "signed CT, rescaled, a window of two views"]}),
        "frames": make_dicom(tmp_path / "f.dcm", **GREY[
            "three frames: the first"]),
        "colour": make_dicom(tmp_path / "c.dcm", np.asarray(Image.open(
            photos()[1]).convert("RGB").resize((500, 400)))[None], bits=8,
            photometric="RGB"),
    }
    for name, plain in files.items():
        packed = tmp_path / f"{name}-packed.dcm"
        subprocess.run(["gdcmconv", syntax, str(plain), str(packed)],
                       check=True, capture_output=True, timeout=120)
        assert packed.read_bytes() != plain.read_bytes()
        ds = pydicom.dcmread(packed, stop_before_pixels=True)
        assert ds.file_meta.TransferSyntaxUID.is_compressed, name
        ref = expected(plain)
        for args in ([], ["--isolated"]):
            r, out = thumb_png(tmp_path, packed, *args)
            assert r.returncode == 0, (name, r.stderr)
            assert psnr(Image.open(out).convert(ref.mode), ref) >= \
                PSNR_MIN, (syntax, name)


@needs_img2dcm
def test_jpeg_baseline_from_a_photograph(tmp_path):
    """img2dcm wraps a JPEG as it is (YBR_FULL_422, JPEG baseline): the
    thumbnail is the photograph's."""
    src = tmp_path / "photo.jpg"
    Image.open(photos()[0]).convert("RGB").save(src, quality=90)
    grey = tmp_path / "grey.jpg"
    Image.open(src).convert("L").save(grey, quality=90)
    for jpg in (src, grey):
        dcm = tmp_path / "p.dcm"
        subprocess.run(["img2dcm", str(jpg), str(dcm)], check=True,
                       timeout=120)
        r, out = thumb_png(tmp_path, dcm)
        assert r.returncode == 0, r.stderr
        ref = Image.open(jpg)
        ref.thumbnail((300, 300), Image.LANCZOS)
        assert psnr(Image.open(out).convert(ref.mode), ref) >= PSNR_MIN


def tag(d, group, elem, value):
    """d with the value of the US element (group, elem) replaced."""
    key = group.to_bytes(2, "little") + elem.to_bytes(2, "little") + \
        b"US\x02\x00"
    i = d.index(key) + len(key)
    return d[:i] + value.to_bytes(2, "little") + d[i + 2:]


@needs_gdcmconv
def test_a_compressed_frame_unlike_its_header_is_an_error(tmp_path):
    """GDCM sizes its buffer by the header and asserts (or, built without
    assertions, writes past it) when the stream is larger: found by
    tests/fuzz/run with a JPEG-LS frame under a header of 11288 columns."""
    plain = make_dicom(tmp_path / "g.dcm", gradient(64, 48, 0, 4000),
                       window=(2000, 4000))
    cases = {}
    for syntax in ("--rle", "--jpeg", "--jpegls", "--j2k"):
        packed = tmp_path / f"p{syntax}.dcm"
        subprocess.run(["gdcmconv", syntax, str(plain), str(packed)],
                       check=True, capture_output=True, timeout=120)
        d = packed.read_bytes()
        says = {  # GDCM takes a JPEG's size from its stream itself
            "--jpeg": None,
            # RLE says no size: GDCM finds its segments too short
            "--rle": "the DICOM pixel data could not be decoded",
        }.get(syntax, "a DICOM frame coded as 64x48 under a header of "
              "11288x48")
        cases[syntax] = (tag(d, 0x28, 0x11, 11288), says)
    check_broken(THUMB, cases, tmp_path / "bad.dcm")


@needs_img2dcm
def test_a_corrupt_jpeg_frame_leaves_nothing_and_runs_nothing(tmp_path):
    """When libjpeg refuses a frame, GDCM falls back to writing it to a
    file of tempnam()'s and running pvrg-jpeg on it through system(),
    leaving the file when that fails: with Debian's pvrg-jpeg (which
    libgdcm-tools brings) a broken JPEG DICOM left its pixels in /tmp and
    started a program that corrupted its heap. thumbfs refuses tempnam()."""
    jpg = tmp_path / "grey.jpg"
    Image.open(photos()[0]).convert("L").resize((320, 240)).save(jpg)
    dcm = tmp_path / "p.dcm"
    subprocess.run(["img2dcm", str(jpg), str(dcm)], check=True, timeout=120)
    d = dcm.read_bytes()
    sof = d.index(b"\xff\xc0", d.index(b"\xff\xd8"))
    dht = d.index(b"\xff\xc4", sof)
    cases = {
        "its Huffman table zeroed": (
            d[:dht + 4] + bytes(20) + d[dht + 24:],
            "the DICOM pixel data could not be decoded"),
        "no components": (d[:sof + 9] + b"\x00" + d[sof + 10:],
                          "the DICOM pixel data could not be decoded"),
        # GDCM asserts on it while reading the header
        "7-bit samples": (d[:sof + 4] + b"\x07" + d[sof + 5:],
                          "a DICOM frame of 7-bit JPEG samples"),
    }
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    os.environ["TMPDIR"] = str(tmp)  # where tempnam() would write
    try:
        check_broken(THUMB, cases, tmp_path / "bad.dcm")
    finally:
        del os.environ["TMPDIR"]
    assert list(tmp.iterdir()) == []


def test_broken_and_hostile_dicom_files_are_an_error(tmp_path):
    good = make_dicom(tmp_path / "good.dcm", gradient(64, 48, 0, 4000),
                      window=(2000, 4000))
    data = good.read_bytes()

    frames = make_dicom(tmp_path / "n.dcm", gradient(64, 48, 0, 4000,
                                                     frames=2))
    nf = frames.read_bytes()
    i = nf.index(b"\x28\x00\x08\x00IS")  # NumberOfFrames, "2 "
    huge_frames = nf[:i + 6] + b"\x0a\x002147483648" + nf[i + 10:]
    cases = {
        "truncated in its pixels": (data[:len(data) - 3000], CUT),
        "truncated in its header": (data[:300], CUT),
        "its magic only": (data[:132], CUT),
        "no pixel data": (data[:data.index(b"\xe0\x7f\x10\x00")], CUT),
        "65535x65535 declared over 64x48 of pixels": (
            tag(tag(data, 0x28, 0x10, 65535), 0x28, 0x11, 65535),
            "over the limit of 100000000 pixels"),
        "4000x4000 declared over 64x48 of pixels": (
            tag(tag(data, 0x28, 0x10, 4000), 0x28, 0x11, 4000),
            "bytes of the 32000000 its size says"),
        "2^31 frames declared": (huge_frames, "over what is decoded"),
        "bits allocated 0": (tag(data, 0x28, 0x100, 0),
                             "not a DICOM image GDCM reads"),
        "12 bits allocated": (tag(data, 0x28, 0x100, 12),
                              "not one thumbfs reads"),
    }
    check_broken(THUMB, cases, tmp_path / "bad.dcm")
    for name, (d, _) in cases.items():  # errors never name the patient
        (tmp_path / "bad.dcm").write_bytes(d)
        r = subprocess.run([str(THUMB), str(tmp_path / "bad.dcm"),
                            str(tmp_path / "x.png")], capture_output=True)
        assert NAME.encode() not in r.stderr + r.stdout, name
        assert PID.encode() not in r.stderr + r.stdout, name


def test_a_dicom_file_in_the_mount_says_nothing_of_its_patient(
        thumbfs_bin, tmp_path):
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        src = make_dicom(tmp_path / "xray.dcm", gradient(800, 1000, 0, 4095),
                         bits=12, photometric="MONOCHROME1",
                         window=(2048, 4096))
        broken = tmp_path / "broken.dcm"
        broken.write_bytes(src.read_bytes()[:2000])
        row, d = m.copy_checked(src, "xray.dcm", "application/dicom",
                                (800, 1000))
        with Image.open(d / "xray_thumb.jpg") as t:
            assert t.size == (240, 300)
        shutil.copy(broken, d / "broken.dcm")
        bad = m.wait_uploaded("broken.dcm")
        assert bad["error"] and not bad["s3_thumbnail_key"], bad
        # not in the log, the catalog, the status file or any xattr
        seen = [m.log.read_bytes(), (m.mnt / ".thumbfs/status").read_bytes()]
        for f in m.data.rglob("*"):  # but the spool: the files as written
            if f.is_file() and "spool" not in f.parts:
                seen.append(f.read_bytes())
        for n in ("xray.dcm", "broken.dcm", "xray_thumb.jpg"):
            for a in os.listxattr(d / n):
                seen.append(os.getxattr(d / n, a))
        for blob in seen:
            assert NAME.encode() not in blob and PID.encode() not in blob
    finally:
        m.stop()
