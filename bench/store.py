"""bench/store's measurements (run through bench/store): the photographs of
DESIGN.md's "Test corpus", COPIES times, uploaded to one s3rver by thumbfs's
store client (bench/store_put: s3_put_file, 1 and 4 at once; the mount's
default is two job runners per core), by s3fs (cp -r onto its mount) and
by curl -T per file; then the client's peak memory for a 64 MiB and a
2 GiB file."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import S3_KEY, S3_SECRET, S3Server, wait_for  # noqa

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
    out = subprocess.run([str(PUT), srv.endpoint, bucket(srv, "put"),
                          str(threads)] + [str(f) for f in files],
                         check=True, capture_output=True, text=True).stdout
    v = out.split()
    return float(v[1]), int(v[9])


def big_file(path, size):
    block = os.urandom(64 << 20)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)


def main():
    tmp = Path(tempfile.mkdtemp(prefix="thumbfs-bench-store-"))
    srv = S3Server(tmp / "s3rver")
    (tmp / "s3rver").mkdir()
    srv.start()
    try:
        src = tmp / "src"
        src.mkdir()
        files = corpus(src)
        n = len(files)
        mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"corpus: {n} photographs, {mb:.0f} MB; s3rver on "
              "127.0.0.1; 2 cores")
        res = {}
        res["thumbfs client, 4 at once"] = store_put(srv, files, 4)[0]
        res["thumbfs client, 1 at a time"] = store_put(srv, files, 1)[0]

        b = bucket(srv, "s3fs")
        pw = tmp / "s3fs.passwd"
        pw.write_text(f"{S3_KEY}:{S3_SECRET}\n")
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
                            f"{S3_KEY}:{S3_SECRET}", "-H",
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
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


main()
