"""Every statement a mount runs in PostgreSQL per image finds its rows by an
index: two mounts on an archive of some thousands of rows, the work of a
day (ingest, overwrite, rename, folder rename, unlink, colliding names,
the web app's inserts and deletes), with PostgreSQL's auto_explain logging
the plan of every statement the mounts run. A sequential scan of one of
the archive's tables fails the test unless the statement is one that reads
the whole archive on purpose (WHOLE, which says why).

The server runs with enable_seqscan off: the planner then takes an index
wherever one can answer, and a "Seq Scan" left in a plan means no index
can, which is what would cost seconds at 10M rows. (With the setting on,
a few thousand rows are too few for the planner's choice to tell.)"""
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile

import pytest

from conftest import Postgres, file_pair, photos, settled, wait_for

# The tables that grow with the archive; a scan of any other (the horizon's
# one row, the catalogs) is no scan of the archive.
ARCHIVE = ("images_image", "images_batch", "thumbfs_change",
           "thumbfs_tombstone", "thumbfs_key")

# Statements that read the whole archive on purpose, by how their text
# begins or what it holds, and why.
WHOLE = {
    # the first read of a new mount (and `thumbfs verify --pg`): every row
    "SELECT i.id, b.patient_id": "the full read takes every image",
    # the columns check at start: information_schema, not the archive
    "SELECT table_name || '.' || column_name": "the schema check",
}

ROWS = 6000  # images; 3 a batch
APP = "thumbfs-plans"


@pytest.fixture
def explained(thumbfs_bin):
    tmp = tempfile.mkdtemp(prefix="thumbfs-pgplans-")
    pg = Postgres(tmp)
    pg.start("-c session_preload_libraries=auto_explain"
             " -c auto_explain.log_min_duration=0"
             " -c auto_explain.log_nested_statements=on"
             " -c enable_seqscan=off"
             " -c log_line_prefix='@%a@ '")
    try:
        pg.psql("CREATE DATABASE thumbfs", db="postgres")
        schema = subprocess.run([str(thumbfs_bin), "schema"], check=True,
                                capture_output=True, text=True).stdout
        pg.psql(schema)
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def load(pg):
    """ROWS images as the web app writes them, their changes (the
    triggers write those), tombstones and key claims."""
    batches = ROWS // 3
    pg.psql(
        "INSERT INTO images_batch (id, patient_id, batch_date, name)"
        " SELECT gen_random_uuid(), 'Q' || (p / 10), date '2020-01-01' +"
        f" (p % 10), 'load' FROM generate_series(1, {batches}) p")
    pg.psql(
        "INSERT INTO images_image (id, batch_id, s3_key, s3_thumbnail_key,"
        " s3_bucket, original_filename, file_size, thumbnail_size,"
        " mime_type, width, height, sha256) SELECT gen_random_uuid(), b.id,"
        " 'old/' || b.patient_id || '/' || b.batch_date || '/IMG_' || i ||"
        " '.jpg', 'old/' || b.patient_id || '/' || b.batch_date || '/IMG_'"
        " || i || '_thumb.jpg', 'b', 'IMG_' || i || '.jpg', 1000, 100,"
        " 'image/jpeg', 40, 30, repeat('0', 64) FROM images_batch b,"
        " generate_series(1, 3) i")
    pg.psql(
        "INSERT INTO thumbfs_tombstone (id, image_id, patient_id,"
        " batch_date, original_filename, s3_bucket, s3_key,"
        " s3_thumbnail_key, file_size, deleted_at, objects_kept) SELECT"
        " gen_random_uuid(), gen_random_uuid(), 'Q1', date '2020-01-01',"
        " 'gone' || i || '.jpg', 'b', 'old/gone' || i || '.jpg',"
        " 'old/gone' || i || '_thumb.jpg', 1000, now() - interval '1 day',"
        " false FROM generate_series(1, 3000) i")
    pg.psql(
        "INSERT INTO thumbfs_key (key, owner, stamp, writer) SELECT"
        " 'b/old/k' || i, '', now(), 'load' FROM generate_series(1, 5000) i")
    pg.psql("VACUUM ANALYZE")


def jobs(m):
    db = sqlite3.connect(m.data / "catalog.db", timeout=10)
    try:
        return db.execute("SELECT kind, name, parked FROM jobs").fetchall()
    finally:
        db.close()


def plans(log):
    """(query text, plan) of each statement the mounts ran, from
    auto_explain's entries in the server's log."""
    out, cur = [], None
    for line in log.splitlines():
        if line.startswith(f"@{APP}@ "):
            cur = None
            if "plan:" in line:
                cur = []
                out.append(cur)
        elif line.startswith("\t") and cur is not None:
            cur.append(line.strip())
        else:
            cur = None
    res = []
    for lines in out:
        text = next((x[len("Query Text: "):] for x in lines
                     if x.startswith("Query Text: ")), "")
        res.append((text, [x for x in lines
                           if not x.startswith("Query Text: ")]))
    return res


def test_each_statement_per_image_uses_an_index(thumbfs_bin, tmp_path,
                                                explained):
    pg = explained
    load(pg)
    dsn = pg.dsn + f" application_name={APP}"
    mounts = file_pair(thumbfs_bin, tmp_path, dsn)
    a, b = mounts
    try:
        for m in mounts:
            wait_for(lambda: "caught up with" in m.log_text(), 120,
                     "the first read")
        srcs = photos()[:4]
        d = a.batch("N1", "2025-11-10")
        for s in srcs:
            shutil.copy(s, d / s.name)
        bd = b.mnt / "patients/N1/2025-11-10"
        wait_for(lambda: bd.is_dir() and sum(
            1 for x in os.listdir(bd) if "_thumb" not in x) == 4, 60,
            "B lists A's four images")
        # overwrite, rename, unlink, a name on both mounts, a folder move
        shutil.copy(srcs[1], d / srcs[0].name)
        os.rename(d / srcs[1].name, d / ("r_" + srcs[1].name))
        os.unlink(d / srcs[2].name)
        e = b.batch("N1", "2025-11-11")
        shutil.copy(srcs[3], e / "same.jpg")
        f = a.batch("N1", "2025-11-11")
        shutil.copy(srcs[2], f / "same.JPG")
        os.rename(a.mnt / "patients/N1/2025-11-10",
                  a.mnt / "patients/N1/2025-11-12")
        # the web app: an image saved again, one deleted, a batch deleted
        pg.psql("UPDATE images_image SET category = 'xray' WHERE id ="
                " (SELECT id FROM images_image ORDER BY id LIMIT 1)")
        pg.psql("DELETE FROM images_image WHERE id ="
                " (SELECT id FROM images_image ORDER BY id DESC LIMIT 1)")
        pg.psql("DELETE FROM images_batch WHERE id ="
                " (SELECT id FROM images_batch ORDER BY id LIMIT 1)")

        def both_settled():
            for m in mounts:
                names = sorted(os.listdir(m.mnt / "patients/N1"))
                if names != ["2025-11-11", "2025-11-12"]:
                    return False
                if not settled(m):
                    return False
            return True
        try:
            wait_for(both_settled, 120, "both mounts settled")
        except AssertionError:
            for m in mounts:
                print(m.base.name, sorted(os.listdir(m.mnt / "patients/N1")),
                      jobs(m), m.log_text()[-3000:])
            print(pg.rows("SELECT b.batch_date, i.original_filename FROM images_image i JOIN images_batch b ON b.id = i.batch_id WHERE b.patient_id = 'N1'"))
            print([l for l in (pg.base / "pg.log").read_text(errors="replace").splitlines() if "ERROR" in l or "FATAL" in l][:20])
            print(pg.rows("SELECT count(*), max(xid) FROM thumbfs_change"), pg.rows("SELECT pg_snapshot_xmin(pg_current_snapshot())"))
            raise
    finally:
        for m in mounts:
            m.stop()
    scans = []
    ran = plans((pg.base / "pg.log").read_text(errors="replace"))
    assert len(ran) > 50, "auto_explain logged no plans"
    for text, plan in ran:
        if any(text.startswith(k) or k in text for k in WHOLE):
            continue
        for line in plan:
            m = re.search(r"Seq Scan on (\w+)", line)
            if m and m.group(1) in ARCHIVE:
                scans.append(f"{m.group(1)}: {text}")
    assert not scans, "statements that scan the archive:\n" + "\n".join(
        sorted(set(scans)))
