"""bench/ingest's measurements (run through bench/ingest): the same folder of
photographs copied with `cp -r` onto thumbfs (S3 store on s3rver, until
every thumbnail and both objects are stored), onto s3fs on the same
s3rver, onto a local directory, and pushed by the seed's pipeline (Pillow
thumbnail + two PUTs per file); then close() latency on thumbfs, on s3fs
and on the local directory."""
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import RGW, RGW_TOOL, Mount, S3Server, wait_for  # noqa

COPIES = 5  # patients; the corpus once per patient
BINARY = Path(os.environ.get("THUMBFS_BIN", ROOT / "build/thumbfs"))

SEED = r'''
import io, sys, boto3
from pathlib import Path
from PIL import Image
from botocore.config import Config
endpoint, bucket, src, key, secret = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key, aws_secret_access_key=secret,
                  config=Config(s3={"addressing_style": "path"}))
for p in sorted(Path(src).rglob("*.jpg")):
    key = str(p.relative_to(src))
    data = p.read_bytes()
    img = Image.open(io.BytesIO(data))
    t = img.copy()
    t.thumbnail((300, 300), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    t.save(buf, format=img.format or "JPEG", quality=85)
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/jpeg")
    s3.put_object(Bucket=bucket, Key=key[:-4] + "_thumb.jpg",
                  Body=buf.getvalue(), ContentType="image/jpeg")
'''


def corpus(dest):
    photos = sorted(Path("/usr/share/backgrounds").rglob("*.jpg"))
    files = []
    for k in range(1, COPIES + 1):
        d = dest / "patients" / f"P{k}" / "2025-11-10"
        d.mkdir(parents=True)
        for p in photos:
            shutil.copy(p, d / p.name.replace(" ", "_"))
            files.append(d / p.name.replace(" ", "_"))
    return files


def status(mnt):
    text = (mnt / ".thumbfs" / "status").read_text()
    return dict(line.split(": ", 1) for line in text.splitlines()
                if ": " in line)


def copy_timed(files, src, dst):
    """Copy as cp does (128 KiB writes) into dst/patients/Q<id>/...,
    timing each close()."""
    lat = []
    for f in files:
        rel = f.relative_to(src).parts
        out = dst / "patients" / ("Q" + rel[0]) / Path(*rel[1:])
        out.parent.mkdir(parents=True, exist_ok=True)
        data = f.read_bytes()
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for off in range(0, len(data), 128 << 10):
            os.write(fd, data[off:off + (128 << 10)])
        t0 = time.perf_counter()
        os.close(fd)
        lat.append(time.perf_counter() - t0)
    return lat


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    tmp = Path(tempfile.mkdtemp(prefix="thumbfs-bench-ingest-"))
    src = tmp / "src"
    files = corpus(src)
    servers = [("s3rver", S3Server(tmp / "server-s3rver"))]
    (tmp / "server-s3rver").mkdir()
    if (RGW_TOOL / "start").exists():
        servers.append(("Ceph RGW", RGW(tmp / "server-rgw")))
        (tmp / "server-rgw").mkdir()
    try:
        for name, srv in servers:
            srv.start()
            try:
                one_server(tmp / ("run-" + name.replace(" ", "_")), src,
                           files, name, srv)
            finally:
                srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def one_server(tmp, src, files, name, srv):
    tmp.mkdir()
    n = len(files)
    mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"corpus: {n} photographs ({COPIES} patients x "
          f"{n // COPIES}), {mb:.0f} MB; {name} on 127.0.0.1; "
          f"2 cores")
    res = {}

    # (a) thumbfs, until every object pair is stored
    base = tmp / "thumbfs"
    base.mkdir()
    m = Mount(BINARY, base, "s3", srv)
    m.config["fs"].pop("workers")  # the default: two per core
    m.start()
    t0 = time.monotonic()
    subprocess.run(["cp", "-r", str(src / "patients"), str(m.mnt)],
                   check=True)
    t_cp = time.monotonic() - t0
    wait_for(lambda: status(m.mnt)["images uploaded"] == str(n) and
             status(m.mnt)["queue ingest"] == "0", 1800,
             "thumbfs to upload everything")
    res["thumbfs (cp -r, then until stored)"] = time.monotonic() - t0
    keys = sum(len(m.object_keys(
        f"patients/filemaker-import/images/P{k}/"))
        for k in range(1, COPIES + 1))
    assert keys == 2 * n, f"{keys} objects for {n} files"
    print(f"  thumbfs: cp -r returned after {t_cp:.1f} s; "
          f"{keys} objects stored (original + thumbnail each)")
    # close() latency: the same files again, under other patients
    lat_t = copy_timed(files, src / "patients", m.mnt)
    m.stop()

    # (b) s3fs on the same s3rver (originals only)
    bucket = "s3fs" + os.urandom(4).hex()
    srv.client().create_bucket(Bucket=bucket)
    pw = tmp / "s3fs.passwd"
    pw.write_text(f"{srv.access_key}:{srv.secret_key}\n")
    pw.chmod(0o600)
    mnt = tmp / "s3fs-mnt"
    mnt.mkdir()
    subprocess.run(["s3fs", bucket, str(mnt), "-o",
                    f"url={srv.endpoint}", "-o", "use_path_request_style",
                    "-o", f"passwd_file={pw}"], check=True)
    wait_for(lambda: os.path.ismount(mnt), 30, "s3fs to mount")
    try:
        t0 = time.monotonic()
        subprocess.run(["cp", "-r", str(src / "patients"), str(mnt)],
                       check=True)
        res["s3fs (cp -r)"] = time.monotonic() - t0
        lat_s = copy_timed(files, src / "patients", mnt)
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)])
    got = sum(1 for k in range(1, COPIES + 1)  # and folder objects
              for key in srv.keys(bucket, f"patients/P{k}/")
              if key.endswith(".jpg"))
    assert got == n, f"s3fs stored {got} of {n}"

    # (c) a local directory
    local = tmp / "local"
    local.mkdir()
    t0 = time.monotonic()
    subprocess.run(["cp", "-r", str(src / "patients"), str(local)],
                   check=True)
    res["local directory (cp -r)"] = time.monotonic() - t0
    lat_l = copy_timed(files, src / "patients", local)

    # (d) the seed's pipeline: Pillow thumbnail + two PUTs per file
    bucket = "seed" + os.urandom(4).hex()
    srv.client().create_bucket(Bucket=bucket)
    t0 = time.monotonic()
    subprocess.run(["/usr/bin/python3", "-c", SEED, srv.endpoint, bucket,
                    str(src), srv.access_key, srv.secret_key],
                   check=True)
    res["seed pipeline (Pillow + 2 PUTs)"] = time.monotonic() - t0

    base_t = res["thumbfs (cp -r, then until stored)"]
    for k, t in res.items():
        print(f"  {k:36} {n / t:7.1f} files/s {mb / t:7.1f} MB/s   "
              f"thumbfs / this = {t / base_t:.2f}x")
    p50t, p99t = pct(lat_t, 50) * 1e3, pct(lat_t, 99) * 1e3
    p50l, p99l = pct(lat_l, 50) * 1e3, pct(lat_l, 99) * 1e3
    p50s, p99s = pct(lat_s, 50) * 1e3, pct(lat_s, 99) * 1e3
    print(f"  close() on thumbfs: p50 {p50t:.2f} ms, p99 {p99t:.2f} ms;"
          f" local directory: p50 {p50l:.3f} ms, p99 {p99l:.3f} ms; "
          f"s3fs: p50 {p50s:.1f} ms, p99 {p99s:.1f} ms; thumbfs mean "
          f"{statistics.mean(lat_t) * 1e3:.2f} ms")


main()
