"""Fixtures for the mount tests: a real S3 server (s3rver) and real mounts.

Run with Debian's /usr/bin/python3 -m pytest (scripts/test does). The daemon
under test is THUMBFS_BUILD/thumbfs (default build-asan, the AddressSanitizer
and UBSan build); a mount fails its test if the daemon's stderr shows a
sanitizer report or it does not exit cleanly on unmount.
"""
import configparser
import math
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image, ImageChops

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / os.environ.get("THUMBFS_BUILD", "build-asan")
S3_KEY = "S3RVER"  # s3rver's built-in account
S3_SECRET = "S3RVER"
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer", "ThreadSanitizer")
PHOTOS = Path("/usr/share/backgrounds/mate")
# every process a test starts (mounts, their thumbnail workers, the
# thumbnailer) leaves the libraries' own one-time leaks out of its report
os.environ.setdefault("LSAN_OPTIONS",
                      f"suppressions={ROOT / 'tests' / 'lsan.supp'}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=30.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="session", autouse=True)
def require_fuse():
    # A machine that should mount must fail loudly, not skip, without FUSE.
    if not os.path.exists("/dev/fuse"):
        pytest.fail("/dev/fuse is missing: the mount tests cannot run")


@pytest.fixture(scope="session")
def thumbfs_bin():
    b = BUILD / "thumbfs"
    assert b.exists(), f"{b} is not built (run scripts/test)"
    return b


class S3Server:
    def __init__(self, tmp):
        self.dir = Path(tmp)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, buckets=("photos",)):
        exe = ROOT / "tests/s3/node_modules/.bin/s3rver"
        args = [str(exe), "-d", str(self.dir), "-a", "127.0.0.1",
                "-p", str(self.port), "--silent"]
        for b in buckets:
            args += ["--configure-bucket", b]
        # what it says if it dies (kept beside its directory)
        self.log = Path(f"{self.dir}.log")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, 30, "s3rver to listen")

    def died(self):
        """'' while it runs, else its exit status and last words."""
        if not self.proc or self.proc.poll() is None:
            return ""
        return (f"s3rver exited with {self.proc.returncode}: "
                f"{self.log.read_bytes()[-2000:].decode(errors='replace')}")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    access_key, secret_key = S3_KEY, S3_SECRET

    def client(self):
        import boto3
        from botocore.config import Config
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}))

    def get(self, key, bucket="photos"):
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(self, bucket="photos", prefix=""):
        """Every key, page after page (a real S3 pages at 1,000)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages
                      for o in page.get("Contents", []))


RGW_TOOL = ROOT.parent / "shared/tools/ceph-rgw"


class RGW(S3Server):
    """Ceph's RADOS Gateway, a production S3 server, started by the
    project's test tool (../shared/tools/ceph-rgw) on loopback: it checks
    signatures and payload hashes, pages listings, answers multipart ETags
    as S3 does, and has RGW 16.2's own ways (README of the tool)."""

    def __init__(self, tmp):
        super().__init__(tmp)
        self.port = free_port()
        while self.port > 65000:
            self.port = free_port()

    def start(self, buckets=()):
        out = subprocess.run(["bash", str(RGW_TOOL / "start"),
                              str(self.dir / "ceph"), str(self.port)],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        v = dict(line.split("=", 1) for line in out.stdout.splitlines()
                 if "=" in line)
        self.endpoint = v["endpoint"]
        self.access_key, self.secret_key = v["access_key"], v["secret_key"]

    def stop(self):
        subprocess.run(["bash", str(RGW_TOOL / "stop"),
                        str(self.dir / "ceph")], capture_output=True)


@pytest.fixture(scope="session")
def rgw():
    """Ceph RGW for the session; skipped (and counted) where the tool
    that starts it is not beside the repository."""
    if not (RGW_TOOL / "start").exists():
        pytest.skip(f"no Ceph RGW test tool at {RGW_TOOL}")
    tmp = tempfile.mkdtemp(prefix="thumbfs-rgw-")
    srv = RGW(tmp)
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def s3store(request):
    """The S3 server every store-level and mount-level test runs on:
    Ceph RGW. (s3rver only where the RGW tool is not beside the clone, so
    that a clone alone still tests itself.)"""
    if (RGW_TOOL / "start").exists():
        return request.getfixturevalue("rgw")
    return request.getfixturevalue("s3server")


@pytest.fixture(scope="session")
def s3server():
    tmp = tempfile.mkdtemp(prefix="thumbfs-s3rver-")
    srv = S3Server(tmp)
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    srv.log.unlink(missing_ok=True)


class Postgres:
    """A real PostgreSQL (Debian's), in a temporary data directory, on a free
    loopback port; the server runs as the postgres user, as it must."""

    def __init__(self, base):
        import glob
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        assert bins, "PostgreSQL is not installed (apt-get install postgresql)"
        self.bin = Path(bins[-1]).parent
        self.base = Path(base)
        self.data = self.base / "pgdata"
        self.port = free_port()
        self.dsn = f"host=127.0.0.1 port={self.port} dbname=thumbfs user=postgres"
        shutil.chown(self.base, "postgres")
        self.as_pg([self.bin / "initdb", "-D", self.data, "-A", "trust",
                    "-U", "postgres", "-E", "UTF8", "--no-sync"])

    def as_pg(self, args, **kw):
        return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, args)],
                              check=True, capture_output=True, text=True, **kw)

    def start(self, options=""):
        self.as_pg([self.bin / "pg_ctl", "-D", self.data, "-w", "-l",
                    self.base / "pg.log", "-o",
                    f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
                    f" -c fsync=off {options}", "start"], timeout=60)

    def stop(self):
        self.as_pg([self.bin / "pg_ctl", "-D", self.data, "-w", "-m", "fast",
                    "stop"], timeout=60)

    def psql(self, sql, db="thumbfs", **kw):
        r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                            f"host=127.0.0.1 port={self.port} dbname={db} "
                            "user=postgres", "-c", sql],
                           check=True, capture_output=True, text=True, **kw)
        return r.stdout

    def rows(self, sql):
        out = self.psql(sql)
        return [line.split("|") for line in out.splitlines() if line]


@pytest.fixture(scope="session")
def postgres(thumbfs_bin):
    tmp = tempfile.mkdtemp(prefix="thumbfs-pg-")
    pg = Postgres(tmp)
    pg.start()
    pg.psql("CREATE DATABASE thumbfs", db="postgres")
    schema = subprocess.run([str(thumbfs_bin), "schema"], check=True,
                            capture_output=True, text=True).stdout
    pg.psql(schema)
    yield pg
    pg.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def clean_postgres(postgres):
    # (thumbfs_key is not there when an older build's schema was applied,
    # as when a test is shown to fail on the code before a fix)
    postgres.psql("DELETE FROM images_image; DELETE FROM images_batch; "
                  "DELETE FROM thumbfs_tombstone; DO $$ BEGIN IF"
                  " to_regclass('thumbfs_key') IS NOT NULL THEN DELETE FROM"
                  " thumbfs_key; END IF; END $$")
    return postgres


class Mount:
    """One thumbfs daemon in the foreground on a temporary mount point."""

    def __init__(self, binary, base, store, s3server=None):
        self.binary = binary
        self.base = Path(base)
        self.mnt = self.base / "mnt"
        self.data = self.base / "data"
        self.conf = self.base / "mount.conf"
        self.log = self.base / "thumbfs.log"
        self.store = store
        self.s3 = s3server
        self.proc = None
        self.args = []  # more of the daemon's options (-d, -o ...)
        self.mnt.mkdir(exist_ok=True)
        cp = configparser.ConfigParser(interpolation=None)
        self.bucket = "photos"
        if store == "s3":
            # a bucket of its own, so tests do not see each other's keys
            self.bucket = "t" + os.urandom(6).hex()
            s3server.client().create_bucket(Bucket=self.bucket)
            cp["store"] = {"url": f"s3://{self.bucket}",
                           "endpoint": s3server.endpoint,
                           "access_key_id": s3server.access_key,
                           "secret_access_key": s3server.secret_key,
                           "path_style": "true"}
        else:
            cp["store"] = {"url": f"file://{self.base}/store"}
        cp["catalog"] = {"dir": str(self.data)}
        cp["fs"] = {"workers": "2", "retry_max_s": "2"}
        self.config = cp

    def write_config(self):
        with open(self.conf, "w") as f:
            self.config.write(f)

    def start(self, check=True):
        self.write_config()
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), str(self.conf), str(self.mnt), "-f",
             *self.args],
            stdout=self.logf, stderr=self.logf,
            env={**os.environ, **getattr(self, "env", {})})
        if check:
            wait_for(lambda: os.path.ismount(self.mnt) or
                     self.proc.poll() is not None, 30, "the mount")
            assert self.proc.poll() is None, self.log_text()
        return self

    def stop(self, timeout=60):
        if not self.proc:
            return
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-u", str(self.mnt)], check=True)
        rc = self.proc.wait(timeout)
        self.proc = None
        self.logf.close()
        text = self.log_text()
        for mark in SANITIZER_MARKS:
            assert mark not in text, text
        assert rc == 0, f"thumbfs exited {rc}\n{text}"

    def kill9(self):
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None
        self.logf.close()
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)])

    def log_text(self):
        return self.log.read_text(errors="replace")

    def batch(self, patient="P1", date="2025-11-10"):
        d = self.mnt / "patients" / patient / date
        d.mkdir(parents=True, exist_ok=True)
        return d

    def rows(self, where="1", args=()):
        db = sqlite3.connect(self.data / "catalog.db", timeout=10)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute(
                f"SELECT * FROM images WHERE {where}", args)]
        finally:
            db.close()

    def object(self, key):
        if self.store == "s3":
            return self.s3.get(key, self.bucket)
        return (self.base / "store" / key).read_bytes()

    def object_keys(self, prefix=""):
        if self.store == "s3":
            return self.s3.keys(self.bucket, prefix)
        root = self.base / "store"
        return sorted(k for k in (str(p.relative_to(root))
                                  for p in root.rglob("*") if p.is_file())
                      if k.startswith(prefix))

    def copy_checked(self, src, name, mime, size):
        """src copied into a date folder as name: its row (of mime and
        size, with a thumbnail and no error) and the date folder; the
        store holds its bytes."""
        d = self.batch()
        shutil.copy(src, d / name)
        row = self.wait_uploaded(name)
        assert row["mime_type"] == mime, row
        assert (row["width"], row["height"]) == size, row
        assert row["error"] == "" and row["s3_thumbnail_key"], row
        assert self.object(row["s3_key"]) == Path(src).read_bytes()
        return row, d

    def wait_uploaded(self, name, timeout=60):
        def done():
            r = self.rows("name = ? AND state = 'uploaded'", (name,))
            return r[0] if r else None
        return wait_for(done, timeout, f"{name} to be uploaded")


@pytest.fixture
def proxy(s3server):
    """The suite's own HTTP proxy (tests/proxy.py) in front of s3rver."""
    from proxy import Proxy
    p = Proxy(s3server.port)
    yield p
    p.close()


def proxied_mount(binary, base, s3server, proxy, **store):
    """A mount on S3 through proxy ([store] keys may be added). On s3rver,
    not RGW, and only for what needs it: the proxy makes the store
    misbehave (errors for a while, dropped and stalled connections,
    corrupted bodies, refused keys, answers it rewrites), which a real
    server's signature checks would turn into other errors."""
    m = Mount(binary, base, "s3", s3server)
    m.config["store"].update({"endpoint": proxy.endpoint, **store})
    return m


def pg_mount(binary, base, s3server, pg, **postgres):
    """A mount on S3 that syncs to pg ([postgres] keys may be added)."""
    m = Mount(binary, base, "s3", s3server)
    m.config["postgres"] = {"dsn": pg.dsn, **postgres}
    return m


def file_pair(binary, base, dsn):
    """Two started mounts, base/a and base/b, on one file:// store
    (base/store) and one PostgreSQL (dsn)."""
    store = Path(base) / "store"
    store.mkdir()
    mounts = []
    for name in ("a", "b"):
        (Path(base) / name).mkdir()
        m = Mount(binary, Path(base) / name, "file")
        m.config["store"]["url"] = f"file://{store}"
        m.config["postgres"] = {"dsn": dsn}
        mounts.append(m.start())
    return mounts


def settled(m):
    """No job left in the mount's queue."""
    db = sqlite3.connect(m.data / "catalog.db", timeout=10)
    try:
        return db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
    finally:
        db.close()


@pytest.fixture(params=["file", "s3"])
def mount(request, thumbfs_bin, tmp_path):
    s3 = request.getfixturevalue("s3store") if request.param == "s3" else None
    m = Mount(thumbfs_bin, tmp_path, request.param, s3).start()
    yield m
    m.stop()


@pytest.fixture
def file_mount(thumbfs_bin, tmp_path):
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    yield m
    m.stop()


def photos():
    """The real photographs the tests use (mate-backgrounds)."""
    found = sorted(PHOTOS.rglob("*.jpg"))
    assert found, f"no photographs under {PHOTOS}: install mate-backgrounds"
    return found


def as_rgb(img):
    """RGB as shown: alpha composited over black; 16-bit gray as its high
    byte (Pillow's own RGB conversion of I;16 clips instead)."""
    if img.mode in ("I;16", "I;16B", "I"):
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        img = img.convert("RGBA")
        black = Image.new("RGBA", img.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, img).convert("RGB")
    return img.convert("RGB")


def psnr(a, b):
    a, b = as_rgb(a), as_rgb(b)
    assert a.size == b.size, (a.size, b.size)
    hist = ImageChops.difference(a, b).histogram()
    sq = sum(n * (i % 256) ** 2 for i, n in enumerate(hist))
    mse = sq / (a.size[0] * a.size[1] * 3)
    return 99.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def check_broken(thumb_bin, cases, src):
    """Each case of cases (name: (bytes, what the error says, or None when
    the decoder makes do)) written to src and given to thumbfs-thumb
    in-process and isolated: that error and exit 1, or a thumbnail that
    fits 300x300."""
    from PIL import Image
    out = src.with_name("broken_thumb.png")
    for name, (data, says) in cases.items():
        src.write_bytes(data)
        for args in ([], ["--isolated"]):
            r = subprocess.run([str(thumb_bin), "--png", *args, str(src),
                                str(out)], capture_output=True, text=True,
                               timeout=120)
            if says:
                assert r.returncode == 1 and says in r.stderr, \
                    (name, r.returncode, r.stderr)
            else:
                assert r.returncode == 0, (name, r.stderr)
                assert max(Image.open(out).size) <= 300, name


def thumb_png(tmp_path, src, *args):
    """thumbfs-thumb -v --png on src (args before it): the finished
    process (its report on stdout) and the thumbnail's path."""
    out = tmp_path / "t.png"
    r = subprocess.run([str(BUILD / "thumbfs-thumb"), "-v", "--png", *args,
                        str(src), str(out)], capture_output=True, text=True,
                       timeout=120)
    return r, out


def pictured(mime):
    """Whether a row of this type is one thumbfs draws a thumbnail of
    (the status file's images; the others are other files)."""
    return mime.startswith(("image/", "video/")) or mime in (
        "application/pdf", "application/dicom")
