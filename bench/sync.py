"""bench/sync's measurements (run through bench/sync)."""
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import Mount, Postgres, wait_for  # noqa: E402

N = int(sys.argv[1])
UPSERT_BATCH = """
INSERT INTO images_batch (id, patient_id, batch_date, name, uploaded_by,
  created_at, updated_at) VALUES (%s, 'P1', '2025-11-10', 'P1 2025-11-10',
  'bench', now(), now()) ON CONFLICT (patient_id, batch_date)
  DO UPDATE SET updated_at = now() RETURNING id"""
UPSERT_IMAGE = """
INSERT INTO images_image (id, batch_id, s3_key, s3_thumbnail_key, s3_bucket,
  original_filename, file_size, thumbnail_size, mime_type, width, height,
  uploaded_by, sha256, created_at, updated_at) VALUES (%s, %s, %s, %s,
  'bench', %s, 2000000, 20000, 'image/jpeg', 4032, 3024, 'bench', %s, now(),
  now()) ON CONFLICT (batch_id, original_filename) DO UPDATE SET
  s3_key = EXCLUDED.s3_key, sha256 = EXCLUDED.sha256,
  updated_at = EXCLUDED.updated_at"""

DJANGO = r'''
import sys, time, uuid, datetime
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=["images"], USE_TZ=True,
    DATABASES={"default": {"ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1", "PORT": sys.argv[1], "NAME": "thumbfs",
        "USER": "postgres"}})
django.setup()
from images.models import Batch, Image
n = int(sys.argv[2])
t0 = time.monotonic()
for i in range(n):
    b, _ = Batch.objects.get_or_create(patient_id="P1",
        batch_date=datetime.date(2025, 11, 10),
        defaults={"name": "P1 2025-11-10", "uploaded_by": "bench"})
    Image.objects.update_or_create(batch=b, original_filename=f"IMG_{i:05}.jpg",
        defaults={"s3_key": f"k/IMG_{i:05}.jpg", "s3_thumbnail_key": "t",
                  "s3_bucket": "bench", "file_size": 2000000,
                  "thumbnail_size": 20000, "mime_type": "image/jpeg",
                  "width": 4032, "height": 3024, "sha256": "0" * 64})
print(n, time.monotonic() - t0)
'''


def psycopg2_loop(pg, n):
    import uuid
    import psycopg2
    conn = psycopg2.connect(pg.dsn)
    t0 = time.monotonic()
    for i in range(n):
        with conn:  # one transaction per row, as the sync does
            with conn.cursor() as c:
                c.execute(UPSERT_BATCH, (str(uuid.uuid4()),))
                bid = c.fetchone()[0]
                name = f"IMG_{i:05}.jpg"
                c.execute(UPSERT_IMAGE, (str(uuid.uuid4()), bid, f"k/{name}",
                                         f"k/t_{name}", name, "0" * 64))
    dt = time.monotonic() - t0
    conn.close()
    return n, dt


def clear(pg):
    pg.psql("DELETE FROM images_image; DELETE FROM images_batch")


def main():
    tmp = Path(tempfile.mkdtemp(prefix="thumbfs-bench-"))
    pg = Postgres(tmp)
    pg.start("-c track_commit_timestamp=on")
    try:
        pg.psql("CREATE DATABASE thumbfs", db="postgres")
        pg.psql(subprocess.run([str(ROOT / "build/thumbfs"), "schema"],
                               check=True, capture_output=True,
                               text=True).stdout)
        results = {}
        cat = tmp / "catalog"
        cat.mkdir()
        out = subprocess.run([str(ROOT / "build/sync_drain"), str(cat),
                              pg.dsn, str(N)], check=True,
                             capture_output=True, text=True).stdout.split()
        results["thumbfs sync runner"] = (int(out[0]), float(out[1]))
        assert pg.rows("SELECT count(*) FROM images_image") == [[str(N)]]
        clear(pg)
        results["psycopg2 loop (same SQL)"] = psycopg2_loop(pg, N)
        clear(pg)
        out = subprocess.run([sys.executable, "-c", DJANGO, str(pg.port),
                              str(N)], check=True, capture_output=True,
                             text=True, cwd=ROOT / "tests/django_project"
                             ).stdout.split()
        results["Django ORM update_or_create"] = (int(out[0]), float(out[1]))
        clear(pg)

        base = results["thumbfs sync runner"]
        base_rate = base[0] / base[1]
        print(f"rows synced to PostgreSQL, {N} rows (thumbfs: up to 200 a transaction; the others: one each, as a per-row script does):")
        for name, (n, dt) in results.items():
            rate = n / dt
            print(f"  {name:30} {rate:8.0f} rows/s  "
                  f"thumbfs = {base_rate / rate:.2f}x")

        # latency from upload (the catalog's updated_at) to commit in PG
        mdir = tmp / "mount"
        mdir.mkdir()
        m = Mount(ROOT / "build/thumbfs", mdir, "file")
        m.config["postgres"] = {"dsn": pg.dsn}
        m.start()
        photos = sorted(Path("/usr/share/backgrounds").rglob("*.jpg"))[:20]
        d = m.batch()
        for p in photos:
            shutil.copy(p, d / p.name)
        wait_for(lambda: pg.rows("SELECT count(*) FROM images_image") ==
                 [[str(len(photos))]], 300, "the photos in PostgreSQL")
        m.stop()
        lat = [float(r[0]) * 1000 for r in pg.rows(
            "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - "
            "updated_at) FROM images_image")]
        lat.sort()
        print(f"upload -> row in PostgreSQL on a mount, {len(lat)} photos: "
              f"p50 {statistics.median(lat):.1f} ms, "
              f"p99 {lat[min(len(lat) - 1, int(len(lat) * 0.99))]:.1f} ms, "
              f"max {lat[-1]:.1f} ms")
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


main()
