"""bench/store's measurements (run through bench/store): the photographs of
DESIGN.md's "Test corpus", COPIES times, uploaded to one s3rver by thumbfs's
store client (bench/store_put: s3_put_file, 1 and 4 at once; the mount's
default is two job runners per core), by s3fs (cp -r onto its mount) and
by curl -T per file; then the client's peak memory for a 64 MiB and a
2 GiB file; then the mount's peak memory (VmHWM) while 4 job runners
ingest the small photographs, 4 files of 200 MiB of JPEG-named random
data, and 4 100-megapixel baseline JPEGs, each in a mount of its own."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import RGW, RGW_TOOL, Mount, S3Server, wait_for  # noqa
from PIL import Image  # noqa

COPIES = 3
PUT = ROOT / "build/store_put"


def corpus(dest):
    photos = sorted(Path("/usr/share/backgrounds").rglob("*.jpg"))
    files = []
    for k in range(COPIES):
        for p in photos:
            f = dest / f"c{k}_{p.name.replace(' ', '_')}"
            shutil.copy(p, f)
            files.append(f)
    return files


def bucket(srv, name):
    b = name + os.urandom(4).hex()
    srv.client().create_bucket(Bucket=b)
    return b


def store_put(srv, files, threads):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=srv.access_key,
               AWS_SECRET_ACCESS_KEY=srv.secret_key)
    out = subprocess.run([str(PUT), srv.endpoint, bucket(srv, "put"),
                          str(threads)] + [str(f) for f in files],
                         check=True, capture_output=True, text=True,
                         env=env).stdout
    v = out.split()
    return float(v[1]), int(v[9])


def big_file(path, size):
    block = os.urandom(64 << 20)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def mount_peak(tmp, srv, name, files):
    """Copy files onto a fresh mount (4 job runners, S3 on srv) and wait
    until they are stored: the daemon's peak RSS, MiB, and seconds."""
    base = tmp / name
    base.mkdir()
    m = Mount(ROOT / "build/thumbfs", base, "s3", srv)
    m.config["fs"]["workers"] = "4"
    m.start()
    try:
        idle = peak_rss_mib(m.proc.pid)
        t0 = time.monotonic()
        d = m.batch()
        for f in files:
            shutil.copy(f, d / f.name)
        for f in files:
            m.wait_uploaded(f.name, 1800)
        secs = time.monotonic() - t0
        return idle, peak_rss_mib(m.proc.pid), secs
    finally:
        m.stop()
        shutil.rmtree(base, ignore_errors=True)


def memory(tmp, srv, photos):
    big = tmp / "big"
    big.mkdir()
    noise = []
    for i in range(4):
        f = big / f"noise{i}.jpg"
        big_file(f, 200 << 20)
        noise.append(f)
    src = Image.open(max(photos, key=lambda p: p.stat().st_size))
    huge = src.convert("RGB").resize((10000, 10000))
    mp100 = []
    for i in range(4):
        f = big / f"mp100_{i}.jpg"
        huge.save(f, "JPEG", quality=92 - i, progressive=False)
        mp100.append(f)
    del huge
    print("  the mount's peak memory (VmHWM) with 4 job runners, each set "
          "in a mount of its own:")
    for k, (name, files) in enumerate((
            ("small photographs", photos[:40]),
            ("4 x 200 MiB random .jpg", noise),
            ("4 x 100-megapixel baseline JPEG", mp100))):
        idle, peak, secs = mount_peak(tmp, srv, f"mount{k}", files)
        size = sum(f.stat().st_size for f in files) / (1 << 20)
        print(f"    {name:32} {len(files):3} files, {size:6.0f} MiB: "
              f"peak {peak:6.1f} MiB (idle {idle:.1f}), {secs:.1f} s")
    shutil.rmtree(big, ignore_errors=True)


def main():
    tmp = Path(tempfile.mkdtemp(prefix="thumbfs-bench-store-"))
    src = tmp / "src"
    src.mkdir()
    files = corpus(src)
    servers = [("s3rver", S3Server(tmp / "server-s3rver"))]
    if (RGW_TOOL / "start").exists():
        servers.append(("Ceph RGW", RGW(tmp / "server-rgw")))
    try:
        for k, (name, srv) in enumerate(servers):
            (tmp / name.replace(" ", "_")).mkdir()
            srv.dir.mkdir(exist_ok=True)
            srv.start()
            try:
                one_server(tmp / name.replace(" ", "_"), src, files, name,
                           srv, memory_too=k == 0)
            finally:
                srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def one_server(tmp, src, files, name, srv, memory_too):
    n = len(files)
    mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"corpus: {n} photographs, {mb:.0f} MB; {name} on "
          "127.0.0.1; 2 cores")
    res = {}
    res["thumbfs client, 4 at once"] = store_put(srv, files, 4)[0]
    res["thumbfs client, 1 at a time"] = store_put(srv, files, 1)[0]

    b = bucket(srv, "s3fs")
    pw = tmp / "s3fs.passwd"
    pw.write_text(f"{srv.access_key}:{srv.secret_key}\n")
    pw.chmod(0o600)
    mnt = tmp / "s3fs-mnt"
    mnt.mkdir()
    subprocess.run(["s3fs", b, str(mnt), "-o", f"url={srv.endpoint}",
                    "-o", "use_path_request_style", "-o",
                    f"passwd_file={pw}"], check=True)
    wait_for(lambda: os.path.ismount(mnt), 30, "s3fs to mount")
    try:
        t0 = time.monotonic()
        subprocess.run(["cp", "-r", str(src), str(mnt)], check=True)
        res["s3fs (cp -r)"] = time.monotonic() - t0
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)])
    assert len([k for k in srv.keys(b) if k.endswith(".jpg")]) == n

    b = bucket(srv, "curl")
    t0 = time.monotonic()
    for f in files:
        subprocess.run(["curl", "-sSf", "--aws-sigv4",
                        "aws:amz:us-east-1:s3", "--user",
                        f"{srv.access_key}:{srv.secret_key}", "-H",
                        # curl 7.88 does not send it; S3 wants it
                        "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                        "-T", str(f),
                        f"{srv.endpoint}/{b}/{f.name}"],
                       check=True, stdout=subprocess.DEVNULL)
    res["curl -T per file"] = time.monotonic() - t0
    assert len(srv.keys(b)) == n

    base = res["thumbfs client, 4 at once"]
    for k, t in res.items():
        print(f"  {k:30} {n / t:7.1f} files/s {mb / t:7.1f} MB/s   "
              f"thumbfs client (4) / this = {t / base:.2f}x")

    for size in (64 << 20, 2 << 30):
        f = tmp / f"big{size >> 20}"
        big_file(f, size)
        secs, rss = store_put(srv, [f], 1)
        print(f"  one {size >> 20} MiB file (multipart over 64 MiB, "
              f"16 MiB parts): {size / 1e6 / secs:.1f} MB/s, peak "
              f"memory {rss / 1024:.1f} MiB")
        f.unlink()
    if memory_too:
        memory(tmp, srv, files)


main()
