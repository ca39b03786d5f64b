"""bench/thumb's measurements (run through bench/thumb)."""
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
# THUMBFS_THUMB: another build's thumbnailer (a before/after figure)
THUMB = Path(os.environ.get("THUMBFS_THUMB", ROOT / "build/thumbfs-thumb"))
PILLOW = r'''
import io, sys
from PIL import Image
for p in sys.argv[1:]:
    img = Image.open(p)
    t = img.copy()
    t.thumbnail((300, 300), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if img.format in ("JPEG", "PNG"):
        t.save(buf, format=img.format, quality=85)
    else:  # what thumbfs writes for the other formats
        t.convert("RGB").save(buf, format="JPEG", quality=85)
'''


def one_core(args):
    return ["taskset", "-c", "0", *args]


def timed(args):
    t0 = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def fit(w, h, box=300):
    """Pillow's thumbnail() size (as thumb_fit)."""
    if w <= box and h <= box:
        return w, h
    aspect = w / h
    if 1 >= aspect:
        x = max(min(math.floor(box * aspect), math.ceil(box * aspect),
                    key=lambda n: abs(aspect - n / box)), 1)
        return x, box
    y = max(min(math.floor(box / aspect), math.ceil(box / aspect),
                key=lambda n: 0 if n == 0 else abs(aspect - box / n)), 1)
    return box, y


def djpeg_scale(w, h):
    tw, th = fit(w, h)
    for d in (8, 4, 2):
        if -(-w // d) >= 2 * tw and -(-h // d) >= 2 * th:
            return d
    return 1


def peak_rss_kb(args):
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *args],
                       capture_output=True, text=True, check=True)
    return int(r.stderr.strip().splitlines()[-1])


def bench(name, files, out, floor=True, pillow=True):
    """Each tool over files on one core (djpeg's floor for JPEGs; Pillow
    where it reads the format), thumbfs on two, and peak memory."""
    n = len(files)
    out.mkdir(parents=True, exist_ok=True)
    fs = list(map(str, files))
    tools = {
        "thumbfs-thumb": one_core([str(THUMB), "-d", str(out), *fs]),
        # as the mount makes them: in a worker process (thumb/worker.h)
        "isolated (the mount's worker)": one_core(
            [str(THUMB), "--isolated", "-d", str(out), *fs]),
        "vipsthumbnail": one_core(["vipsthumbnail", "-s", "300x300", "-o",
                                   f"{out}/%s_v.jpg[Q=85]", *fs]),
    }
    if pillow:
        tools["Pillow (the app's code)"] = one_core(
            ["/usr/bin/python3", "-c", PILLOW, *fs])
    res = {k: timed(v) * 1000 / n for k, v in tools.items()}
    if floor:
        jpeg_floor(files, out, res)
    report(name, files, out, res, pillow)


def jpeg_floor(files, out, res):
    # the floor: libjpeg-turbo's own scaled decode at thumbfs's scale
    t = 0.0
    for f in files:
        w, h = Image.open(f).size
        d = djpeg_scale(w, h)
        t += timed(one_core(["djpeg", "-scale", f"1/{d}", "-outfile",
                             "/dev/null", str(f)]))
    # One djpeg process per image: its start-up, measured on an 8x8 JPEG,
    # is taken off, since thumbfs-thumb and the others run one process.
    tiny = out / "tiny.jpg"
    Image.new("RGB", (8, 8)).save(tiny)
    start = min(timed(one_core(["djpeg", "-outfile", "/dev/null",
                                str(tiny)])) for _ in range(20))
    res["djpeg -scale 1/d (floor)"] = (t / len(files) - start) * 1000


def report(name, files, out, res, pillow):
    n, fs = len(files), list(map(str, files))
    base = res["thumbfs-thumb"]
    print(f"{name}: {n} images, one core, ms per image")
    for k, v in res.items():
        print(f"  {k:26} {v:7.1f} ms   thumbfs / {k.split()[0]} = "
              f"{base / v:.2f}x")
    # two cores: two images at once, each core running the whole corpus
    t0 = time.monotonic()
    ps = [subprocess.Popen(["taskset", "-c", str(i), str(THUMB), "-d",
                            str(out / f"core{i}"), *fs],
                           stdout=subprocess.DEVNULL) for i in range(2)
          if (out / f"core{i}").mkdir(exist_ok=True) is None]
    for p in ps:
        p.wait()
    two = (time.monotonic() - t0) * 1000 / (2 * n)
    print(f"  two cores, two images at once: {two:.1f} ms per image, "
          f"throughput {base / two:.2f}x of one core")
    big = max(files, key=lambda f: f.stat().st_size)
    peak(f"the largest ({big.name})", big, out, pillow)


def peak(what, path, out, pillow=True):
    line = (f"  peak RSS on {what}: thumbfs "
            f"{peak_rss_kb([str(THUMB), str(path), f'{out}/b.jpg']) // 1024}"
            f" MiB, vipsthumbnail "
            f"{peak_rss_kb(['vipsthumbnail', '-s', '300x300', '-o', f'{out}/%s_b.jpg', str(path)]) // 1024}"
            " MiB")
    if pillow:
        line += (", Pillow " + str(peak_rss_kb(
            ["/usr/bin/python3", "-c", PILLOW, str(path)]) // 1024) + " MiB")
    print(line)


def encode(img, path, heif_args=()):
    """img saved as path's format; HEIC through heif-enc (Pillow has no
    HEIF writer: pillow-heif is not packaged in Debian 12, and only
    Debian's registry is reachable here), a TIFF pyramid through vips."""
    if path.suffix == ".heic":
        png = path.with_suffix(".src.png")
        img.save(png, compress_level=1)
        subprocess.run(["heif-enc", "-q", "85", *heif_args, str(png), "-o",
                        str(path)], check=True, capture_output=True)
        png.unlink()
    elif path.name.endswith(".pyramid.tif"):
        png = path.with_suffix(".src.png")
        img.save(png, compress_level=1)
        subprocess.run(["vips", "tiffsave", str(png), str(path),
                        "--compression", "lzw", "--tile", "--pyramid"],
                       check=True, capture_output=True)
        png.unlink()
    elif path.suffix == ".webp":
        img.save(path, quality=90)
    elif path.suffix == ".tif":
        img.save(path, compression="tiff_lzw")
    else:
        img.save(path)


FORMATS = [  # (row, file name ending, heif-enc's extra arguments)
    ("WebP q90", ".webp", ()), ("TIFF (LZW)", ".tif", ()),
    ("TIFF pyramid (LZW, tiled)", ".pyramid.tif", ()), ("PNG", ".png", ()),
    ("HEIC without a thumbnail item", ".heic", ()),
    ("HEIC with a 320x240 thumbnail item", ".thumb.heic", ("-t", "320")),
]


def formats(shipped, tmp):
    """The formats beyond JPEG: 8 shipped photographs at 4000x3000 each."""
    srcs = [Image.open(f).convert("RGB").resize((4000, 3000),
                                                Image.Resampling.BICUBIC)
            for f in shipped[:8]]
    big = Image.open(shipped[0]).convert("RGB").resize(
        (11520, 8640), Image.Resampling.BICUBIC)  # 99.5 megapixels
    for row, end, heif in FORMATS:
        d = tmp / f"fmt{end}"
        d.mkdir()
        files = []
        for i, img in enumerate(srcs):
            files.append(d / f"p{i}{end}")
            encode(img, files[-1], heif)
        pillow = not end.endswith(".heic")
        bench(f"{row}, 4000x3000", files, d / "out", floor=False,
              pillow=pillow)
        if end == ".webp" and max(big.size) > 16383 or "quick" in sys.argv:
            continue  # bench/thumb quick: no 100-megapixel peaks
        b = d / f"big{end}"
        encode(big, b, heif)
        peak("a 100-megapixel one (11520x8640, under max_pixels)", b,
             d / "out", pillow)
        b.unlink()
    # PDF: scanned pages (A4 at 150 dpi, as a referral letter is scanned);
    # poppler draws them for both, at the thumbnail's size
    d = tmp / "fmtpdf"
    d.mkdir()
    pdfs = []
    for i, img in enumerate(srcs):
        pdfs.append(d / f"p{i}.pdf")
        img.resize((1240, 1754)).save(pdfs[-1], resolution=150)
    bench("PDF, scanned A4 pages at 150 dpi", pdfs, d / "out", floor=False,
          pillow=False)


def videos(shipped, tmp):
    """Video: 8 phone-style clips (1920x1080 H.264, 30 frames a second,
    6 s, a photograph panned), each opening with half a second of black
    as a recording often does; thumbfs looks past it. Beside ffmpeg's
    first frame (what a script would run) and ffmpegthumbnailer (what a
    Linux desktop runs; it seeks to 10% of the video). One process per
    video for these two, so thumbfs-thumb is run so too."""
    d = tmp / "fmtvideo"
    (d / "out").mkdir(parents=True)
    files = []
    for i, f in enumerate(shipped[:8]):
        files.append(d / f"v{i}.mp4")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-loop", "1", "-t", "6", "-i",
             str(f), "-vf", "scale=2400:1350,crop=1920:1080:t*40:t*20,"
             "fade=in:st=0.5:d=0.2,format=yuv420p", "-r", "30", "-c:v",
             "libx264", "-preset", "veryfast", str(files[-1])], check=True)
    tools = {
        "thumbfs-thumb": lambda f, o: [str(THUMB), str(f), f"{o}/t.jpg"],
        "isolated (the mount's worker)": lambda f, o: [
            str(THUMB), "--isolated", str(f), f"{o}/i.jpg"],
        "ffmpeg -frames:v 1 (first frame)": lambda f, o: [
            "ffmpeg", "-v", "error", "-y", "-threads", "1", "-i", str(f),
            "-frames:v", "1", "-vf", "scale=300:300:force_original_aspect_"
            "ratio=decrease:flags=lanczos", "-q:v", "3", f"{o}/f.jpg"],
        "ffmpegthumbnailer -s 300": lambda f, o: [
            "ffmpegthumbnailer", "-i", str(f), "-o", f"{o}/g.jpg", "-s",
            "300", "-q", "8"],
    }
    res = {k: sum(timed(one_core(t(f, d / "out"))) for f in files) * 1000
           / len(files) for k, t in tools.items()}
    base = res["thumbfs-thumb"]
    print(f"video, 1920x1080 H.264 6 s (poster after 0.5 s of black): "
          f"{len(files)} videos, one core, one process each, ms per video")
    for k, v in res.items():
        print(f"  {k:34} {v:7.1f} ms   thumbfs / {k.split()[0]} = "
              f"{base / v:.2f}x")
    print("  peak RSS: thumbfs " + str(peak_rss_kb(
        tools["thumbfs-thumb"](files[0], d / "out")) // 1024) +
        " MiB, ffmpeg " + str(peak_rss_kb(tools[
            "ffmpeg -frames:v 1 (first frame)"](files[0], d / "out")) //
        1024) + " MiB, ffmpegthumbnailer " + str(peak_rss_kb(tools[
            "ffmpegthumbnailer -s 300"](files[0], d / "out")) // 1024) +
        " MiB")


def dicoms(shipped, tmp):
    """DICOM: 8 radiographs as a CR or DX device writes them (2048x2500,
    12 bits in 16, MONOCHROME1 with a window), made from photographs,
    uncompressed and JPEG lossless; beside DCMTK's dcmj2pnm (what a
    DICOM user runs: the file's first window, scaled to 300 wide,
    written as JPEG). One process per file for both."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_dicom import make_dicom  # noqa: E402 (the tests' maker)
    import numpy as np
    d = tmp / "fmtdicom"
    (d / "out").mkdir(parents=True)
    rows = {"uncompressed": [], "JPEG lossless": []}
    for i, f in enumerate(shipped[:8]):
        a = np.asarray(Image.open(f).convert("L").resize((2048, 2500)),
                       dtype=np.float64) * 16
        plain = make_dicom(d / f"x{i}.dcm", a[None], bits=12,
                           photometric="MONOCHROME1", window=(2048, 3500))
        rows["uncompressed"].append(plain)
        packed = d / f"x{i}-jpeg.dcm"
        subprocess.run(["gdcmconv", "--jpeg", str(plain), str(packed)],
                       check=True)
        rows["JPEG lossless"].append(packed)
    tools = {
        "thumbfs-thumb": lambda f, o: [str(THUMB), str(f), f"{o}/t.jpg"],
        "dcmj2pnm +Wi 1 +Sxv 300 +oj": lambda f, o: [
            "dcmj2pnm", "+Wi", "1", "+Sxv", "300", "+oj", "+Jq", "85",
            str(f), f"{o}/d.jpg"],
    }
    for row, files in rows.items():
        res = {k: sum(timed(one_core(t(f, d / "out"))) for f in files) *
               1000 / len(files) for k, t in tools.items()}
        # as the mount makes them: one worker for all (its start and its
        # libraries' once, its heap kept)
        res["worker: one for the 8 (as the mount)"] = timed(one_core(
            [str(THUMB), "--isolated", "-d", str(d / "out"),
             *map(str, files)])) * 1000 / len(files)
        base = res["thumbfs-thumb"]
        print(f"DICOM 2048x2500 12-bit MONOCHROME1, {row}: {len(files)} "
              "files, one core, one process each, ms per file")
        for k, v in res.items():
            print(f"  {k:34} {v:7.1f} ms   thumbfs / {k.split()[0]} = "
                  f"{base / v:.2f}x")


def main():
    shipped = sorted(Path("/usr/share/backgrounds").rglob("*.jpg"))
    tmp = Path(tempfile.mkdtemp(prefix="thumbfs-bench-"))
    try:
        # bench/thumb formats, video, dicom: only those
        if not {"formats", "video", "dicom"} & set(sys.argv[1:]):
            camera = []
            for i, f in enumerate(shipped):
                img = Image.open(f).convert("RGB")
                s = math.sqrt(12e6 / (img.size[0] * img.size[1]))
                img = img.resize((round(img.size[0] * s),
                                  round(img.size[1] * s)),
                                 Image.Resampling.BICUBIC)
                p = tmp / f"cam{i:02}.jpg"
                img.save(p, quality=92, subsampling=2, progressive=False)
                camera.append(p)
            bench("shipped photographs (mostly progressive)", shipped,
                  tmp / "a")
            bench("camera-style 12 MP baseline 4:2:0 q92", camera,
                  tmp / "b")
        if not {"video", "dicom"} & set(sys.argv[1:]):
            formats(shipped, tmp)  # bench/thumb video, dicom: only those
        if "dicom" not in sys.argv[1:]:
            videos(shipped, tmp)
        if "video" not in sys.argv[1:]:
            dicoms(shipped, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


main()
