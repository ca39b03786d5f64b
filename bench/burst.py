"""bench/burst's measurements (run through bench/burst): 200 photographs
of 640x480 copied at once into one of two mounts on an N-row archive (one
PostgreSQL, one file:// store), as a nightly rsync or a dragged folder
brings them: mount A's ingest rate, and how long until mount B lists
each; beside the same burst into an empty archive, in the same run."""
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from conftest import Postgres, file_pair, photos, wait_for  # noqa: E402

BURST = 200
BIN = Path(os.environ.get("THUMBFS_BIN", ROOT / "build/thumbfs"))


def corpus(tmp):
    """BURST different 640x480 JPEGs cut from the shipped photographs."""
    from PIL import Image
    out = []
    srcs = photos()
    for i in range(BURST):
        img = Image.open(srcs[i % len(srcs)]).convert("RGB")
        w, h = img.size
        x = (i * 37) % max(1, w - 640)
        y = (i * 53) % max(1, h - 480)
        p = tmp / f"img{i:03}.jpg"
        img.crop((x, y, x + 640, y + 480)).save(p, "JPEG", quality=90)
        out.append(p)
    return out


def load(pg, n):
    """n image rows as the web app writes them (bench/scale's shape)."""
    if n == 0:
        return
    from scale import load as scale_load  # bench/scale's own
    scale_load(pg, n)


def burst(tmp, pg, files):
    """Two mounts on pg, one store; the burst into A. (rate, B's p50,
    p99, max)"""
    mounts = file_pair(BIN, tmp, pg.dsn)
    a, b = mounts
    try:
        for m in mounts:
            wait_for(lambda: "caught up with" in m.log_text(), 7200,
                     "the first read")
        # the catalogs the first reads wrote are on disk before the
        # burst: their writeback is not the burst's (at 10M rows, 16 GB)
        subprocess.run(["sync"], check=True)
        d = a.batch("BURST", "2025-11-10")
        seen = {}
        stored = []
        stop = threading.Event()
        bd = b.mnt / "patients/BURST/2025-11-10"

        def uploaded():
            import sqlite3
            db = sqlite3.connect(a.data / "catalog.db", timeout=10)
            try:
                return db.execute(
                    "SELECT count(*) FROM images WHERE patient_id = 'BURST'"
                    " AND state = 'uploaded'").fetchone()[0]
            finally:
                db.close()

        def watch():
            tick = 0
            while not stop.is_set():
                tick += 1
                if not stored and tick % 5 == 0 and uploaded() == BURST:
                    stored.append(time.monotonic())
                try:
                    names = os.listdir(bd)
                except OSError:
                    names = []
                now = time.monotonic()
                for n in names:
                    seen.setdefault(n, now)
                time.sleep(0.01)
        t = threading.Thread(target=watch)
        t.start()
        t0 = time.monotonic()
        for f in files:  # as cp does: one after another, at once
            shutil.copyfile(f, d / f.name)
        copied = time.monotonic() - t0
        wait_for(lambda: stored and all(f.name in seen for f in files), 600,
                 "A to store the burst, and B to list it")
        stop.set()
        t.join()
        log = a.log_text()
        assert log.count("imported patients/BURST/") == BURST, log[-2000:]
        last = max(seen[f.name] for f in files) - t0
        lag = sorted(seen[f.name] - t0 for f in files)
        # ingest rate: images stored a second, from the first copy to the
        # last one uploaded in A's catalog
        return {"copied": copied, "last": last,
                "p50": statistics.median(lag),
                "p99": lag[int(0.99 * (len(lag) - 1))],
                "rate": BURST / (stored[0] - t0)}
    finally:
        for m in mounts:
            m.stop()


def one(n, files):
    tmp = Path(tempfile.mkdtemp(prefix="thumbfs-burst-"))
    tmp.chmod(0o755)
    (tmp / "pg").mkdir()
    pg = Postgres(tmp / "pg")
    pg.start("-c shared_buffers=512MB -c max_wal_size=4GB")
    try:
        pg.psql("CREATE DATABASE thumbfs", db="postgres")
        pg.psql(subprocess.run([str(BIN), "schema"], check=True,
                               capture_output=True, text=True).stdout)
        t0 = time.monotonic()
        load(pg, n)
        if n:
            print(f"{n} rows written into PostgreSQL in "
                  f"{time.monotonic() - t0:.1f} s", flush=True)
        return burst(tmp, pg, files)
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    n = int(sys.argv[1])
    work = Path(tempfile.mkdtemp(prefix="thumbfs-burst-corpus-"))
    try:
        files = corpus(work)
        empty = one(0, files)
        full = one(n, files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"bench/burst, {BURST} photos of 640x480 copied at once into "
          f"mount A; mount B lists each after (from the first copy), "
          f"{BIN}:")
    for what, r in ((f"into an empty archive", empty),
                    (f"into {n} rows", full)):
        print(f"  {what:<24} A stores {r['rate']:6.1f} images/s; B lists "
              f"them after p50 {r['p50']:.2f} / p99 {r['p99']:.2f} / max "
              f"{r['last']:.2f} s (the copy took {r['copied']:.2f} s)")
    print(f"  rate at {n} rows / rate empty: "
          f"{full['rate'] / empty['rate']:.2f}x")


if __name__ == "__main__":
    main()
