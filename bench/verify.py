"""bench/verify's measurements (run through bench/verify): an archive of
N/10, then N rows is written straight into a catalog (its schema made by a
mount) and a file:// store (a small original and thumbnail per row), then
thumbfs verify runs over it, beside find(1) listing the same store (the
two peaks show whether memory follows the archive); then 500 rows (1,000
objects) on s3rver and on Ceph RGW, verify beside a boto3 listing."""
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import RGW, RGW_TOOL, Mount, S3Server  # noqa

BIN = ROOT / "build/thumbfs"
PREFIX = "patients/filemaker-import/images"
ORIGINAL, THUMB = b"o" * 2000, b"t" * 300


def rows(n):
    """(patient, date, name) of n rows: 25 per date, 20 dates a patient."""
    for i in range(n):
        yield (f"P{i // 500:05}", f"2024-01-{(i // 25) % 20 + 1:02}",
               f"IMG_{i % 25:02}.jpg")


def fill_catalog(m, n):
    db = sqlite3.connect(m.data / "catalog.db")
    now = "2026-01-01T00:00:00Z"
    db.executemany(
        "INSERT INTO images (id, patient_id, batch_date, name, state, gen,"
        " file_size, s3_key, s3_thumbnail_key, s3_bucket, thumbnail_name,"
        " thumbnail_size, mime_type, width, height, created_at, updated_at,"
        " thumb_claim) VALUES (?, ?, ?, ?, 'uploaded', 1, ?, ?, ?, ?, ?, ?,"
        " 'image/jpeg', 640, 480, ?, ?, ?)",
        ((str(uuid.uuid4()), p, d, nm, len(ORIGINAL),
          f"{PREFIX}/{p}/{d}/{nm}", f"{PREFIX}/{p}/{d}/{nm[:-4]}_thumb.jpg",
          m.bucket, nm[:-4] + "_thumb.jpg", len(THUMB), now, now,
          nm[:-4] + "_thumb.jpg") for p, d, nm in rows(n)))
    db.commit()
    db.close()


def timed(cmd):
    """(seconds, peak KiB, completed process) of cmd."""
    t0 = time.monotonic()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *map(str, cmd)],
                       capture_output=True, text=True)
    took = time.monotonic() - t0
    return took, int(r.stderr.strip().splitlines()[-1]), r


def empty_mount(base, store, srv=None):
    """A mount's catalog, made and left: the schema, no rows."""
    m = Mount(BIN, base, store, srv).start()
    m.stop()
    return m


def file_run(n):
    base = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    m = empty_mount(base, "file")
    t0 = time.monotonic()
    fill_catalog(m, n)
    for p, d, nm in rows(n):
        folder = base / "store" / PREFIX / p / d
        if nm == "IMG_00.jpg":
            folder.mkdir(parents=True, exist_ok=True)
        (folder / nm).write_bytes(ORIGINAL)
        (folder / (nm[:-4] + "_thumb.jpg")).write_bytes(THUMB)
    print(f"file:// archive of {n} rows, {2 * n} objects built in "
          f"{time.monotonic() - t0:.0f} s")
    took, kib, r = timed([BIN, "verify", m.conf])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ftook, fkib, _ = timed(["find", base / "store", "-type", "f"])
    db_mb = (m.data / "catalog.db").stat().st_size / 1e6
    print(f"  thumbfs verify    {took:7.2f} s  peak {kib / 1024:6.1f} MiB"
          f"  ({took / n * 1e6:.1f} us a row)")
    print(f"  find -type f      {ftook:7.2f} s  peak {fkib / 1024:6.1f} MiB"
          f"  (verify/find: {took / ftook:.1f}x)")
    print(f"  catalog {db_mb:.0f} MB")
    shutil.rmtree(base, ignore_errors=True)


def s3_run(name, srv, n=500):
    base = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    m = empty_mount(base, "s3", srv)
    fill_catalog(m, n)
    c = srv.client()
    for p, d, nm in rows(n):
        c.put_object(Bucket=m.bucket, Key=f"{PREFIX}/{p}/{d}/{nm}",
                     Body=ORIGINAL)
        c.put_object(Bucket=m.bucket,
                     Key=f"{PREFIX}/{p}/{d}/{nm[:-4]}_thumb.jpg", Body=THUMB)
    took, kib, r = timed([BIN, "verify", m.conf])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    t0 = time.monotonic()
    keys = 0
    for page in c.get_paginator("list_objects_v2").paginate(
            Bucket=m.bucket, Prefix=PREFIX + "/"):
        keys += len(page.get("Contents", []))
    ltook = time.monotonic() - t0
    assert keys == 2 * n
    per = 1000 / (2 * n)
    print(f"{name}: {2 * n} objects; thumbfs verify {took * per:.2f} s per "
          f"1,000 objects, boto3 listing {ltook * per:.2f} s "
          f"(verify/listing: {took / ltook:.1f}x)")
    shutil.rmtree(base, ignore_errors=True)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    # a tenth, then all: the peak memory should not follow the archive
    file_run(n // 10)
    file_run(n)
    tmp = Path(tempfile.mkdtemp(prefix="bench-verify-s3-"))
    srv = S3Server(tmp)
    srv.start(())
    try:
        s3_run("s3rver", srv)
    finally:
        srv.stop()
    if (RGW_TOOL / "start").exists():
        rgw = RGW(tmp)
        rgw.start()
        try:
            s3_run("Ceph RGW", rgw)
        finally:
            rgw.stop()
    else:
        print(f"Ceph RGW: skipped (no tool at {RGW_TOOL})")
    shutil.rmtree(tmp, ignore_errors=True)


main()
