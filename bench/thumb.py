"""bench/thumb's measurements (run through bench/thumb)."""
import math
import os
import shutil
import subprocess
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
    t.save(buf, format=img.format or "JPEG", quality=85)
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


def bench(name, files, out):
    n = len(files)
    out.mkdir(parents=True, exist_ok=True)
    fs = list(map(str, files))
    tools = {
        "thumbfs-thumb": one_core([str(THUMB), "-d", str(out), *fs]),
        "vipsthumbnail": one_core(["vipsthumbnail", "-s", "300x300", "-o",
                                   f"{out}/%s_v.jpg[Q=85]", *fs]),
        "Pillow (the app's code)": one_core(["/usr/bin/python3", "-c",
                                             PILLOW, *fs]),
    }
    res = {k: timed(v) * 1000 / n for k, v in tools.items()}
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
    res["djpeg -scale 1/d (floor)"] = (t / n - start) * 1000
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
    w, h = Image.open(big).size
    print(f"  peak RSS on the largest ({big.name}, {w}x{h}): "
          f"thumbfs {peak_rss_kb([str(THUMB), str(big), f'{out}/b.jpg']) // 1024}"
          f" MiB, vipsthumbnail "
          f"{peak_rss_kb(['vipsthumbnail', '-s', '300x300', '-o', f'{out}/%s_b.jpg', str(big)]) // 1024}"
          f" MiB, Pillow "
          f"{peak_rss_kb(['/usr/bin/python3', '-c', PILLOW, str(big)]) // 1024} MiB")


def main():
    shipped = sorted(Path("/usr/share/backgrounds").rglob("*.jpg"))
    tmp = Path(tempfile.mkdtemp(prefix="thumbfs-bench-"))
    try:
        camera = []
        for i, f in enumerate(shipped):
            img = Image.open(f).convert("RGB")
            s = math.sqrt(12e6 / (img.size[0] * img.size[1]))
            img = img.resize((round(img.size[0] * s), round(img.size[1] * s)),
                             Image.Resampling.BICUBIC)
            p = tmp / f"cam{i:02}.jpg"
            img.save(p, quality=92, subsampling=2, progressive=False)
            camera.append(p)
        bench("shipped photographs (mostly progressive)", shipped,
              tmp / "a")
        bench("camera-style 12 MP baseline 4:2:0 q92", camera, tmp / "b")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


main()
