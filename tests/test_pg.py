"""The sync to the web app's PostgreSQL tables, against a real PostgreSQL
started by the tests (conftest.Postgres) and s3rver."""
import hashlib
import io
import os
import shutil
import sqlite3
import subprocess
import time

from PIL import Image

from conftest import ROOT, Mount, photos, wait_for
from conftest import pg_mount as base_mount

PREFIX = "patients/filemaker-import/images/P1/2025-11-10/"
IMAGE_COLS = ("original_filename, s3_key, s3_thumbnail_key, s3_bucket, "
              "file_size, thumbnail_size, mime_type, width, height, sha256, "
              "uploaded_by, category, coalesce(filemaker_id, '-')")


def pg_mount(thumbfs_bin, tmp_path, s3store, pg):
    m = base_mount(thumbfs_bin, tmp_path, s3store, pg,
                   batch_name="Import {date}")
    m.config["fs"]["uploaded_by"] = "%u via FileMaker import"
    return m


def pg_images(pg, where="true"):
    return pg.rows(f"SELECT {IMAGE_COLS} FROM images_image WHERE {where} "
                   "ORDER BY original_filename")


def test_schema_command_prints_the_ddl(thumbfs_bin):
    out = subprocess.run([str(thumbfs_bin), "schema"], check=True,
                         capture_output=True, text=True).stdout
    assert out == (ROOT / "schema/postgres.sql").read_text()


def test_sync_upserts_updates_and_deletes(thumbfs_bin, tmp_path, s3store,
                                          clean_postgres):
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    d = m.batch()
    srcs = photos()[:3]
    for s in srcs:
        shutil.copy(s, d / s.name)
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    wait_for(lambda: len(pg_images(pg)) == 3, 60, "3 rows in PostgreSQL")
    m.wait_uploaded("corrupt.jpg")
    wait_for(lambda: "queue postgres: 0" in
             (m.mnt / ".thumbfs/status").read_text(), 30, "the sync queue")
    rows = {r[0]: r for r in pg_images(pg)}
    assert "corrupt.jpg" not in rows  # no thumbnail: not shown to the app
    for s in srcs:
        data = s.read_bytes()
        r = rows[s.name]
        stem = s.name.rsplit(".", 1)[0]
        assert r[1] == PREFIX + s.name
        assert r[2] == PREFIX + stem + "_thumb.jpg"
        assert r[3] == m.bucket
        assert int(r[4]) == len(data)
        thumb = m.object(r[2])
        assert int(r[5]) == len(thumb)
        assert r[6] == "image/jpeg"
        assert (int(r[7]), int(r[8])) == Image.open(s).size
        assert r[9] == hashlib.sha256(data).hexdigest()
        assert r[10] == "root via FileMaker import"  # %u: the writer
        assert Image.open(io.BytesIO(thumb)).size == \
            Image.open(d / f"{stem}_thumb.jpg").size
    batch = pg.rows("SELECT patient_id, batch_date, name, uploaded_by, "
                    "(SELECT count(*) FROM images_image) FROM images_batch")
    assert batch == [["P1", "2025-11-10", "Import 2025-11-10",
                      "root via FileMaker import", "3"]]

    # category and filemaker_id come from user.* xattrs: set after the
    # upload, or before it (rsync -X sets them on its temp file)
    os.setxattr(d / srcs[1].name, "user.category", b"xray")
    os.setxattr(d / srcs[1].name, "user.filemaker_id", b"FM-0042")
    wait_for(lambda: pg_images(pg, f"original_filename = '{srcs[1].name}'"
                               )[0][11:] == ["xray", "FM-0042"], 30,
             "category and filemaker_id in PostgreSQL")
    tmp = d / ".late.jpg.a1B2c3"
    shutil.copy(photos()[4], tmp)
    os.setxattr(tmp, "user.filemaker_id", b"FM-7")
    os.rename(tmp, d / "late.jpg")
    wait_for(lambda: pg_images(pg, "original_filename = 'late.jpg'"), 60,
             "late.jpg in PostgreSQL")
    assert pg_images(pg, "original_filename = 'late.jpg'")[0][11:] == \
        ["", "FM-7"]
    os.unlink(d / "late.jpg")
    wait_for(lambda: not pg_images(pg, "original_filename = 'late.jpg'"),
             30, "late.jpg to go")

    # rewrite: the same row, new content
    first = srcs[0].name
    ids = dict(pg.rows("SELECT original_filename, id FROM images_image"))
    shutil.copy(photos()[3], d / first)
    want = hashlib.sha256(photos()[3].read_bytes()).hexdigest()
    wait_for(lambda: pg_images(pg, f"original_filename = '{first}'")[0][9]
             == want, 60, "the rewrite in PostgreSQL")
    assert dict(pg.rows("SELECT original_filename, id FROM images_image"))[
        first] == ids[first]

    # unlink: the row goes, and the batch with its last image
    for s in srcs:
        os.unlink(d / s.name)
    wait_for(lambda: pg.rows("SELECT count(*) FROM images_batch") == [["0"]],
             60, "the empty batch to be deleted")
    assert pg_images(pg) == []
    m.stop()


def test_postgres_away_during_ingest_loses_nothing(thumbfs_bin, tmp_path,
                                                   s3store, clean_postgres):
    """PostgreSQL stopped while 200 files are written, then started: every
    file is there to read meanwhile, its upload waits for the claim of its
    keys (docs/design.md, "One owner per store key"), and then 200 rows,
    none twice, with no remount."""
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    d = m.batch()
    pg.stop()
    try:
        want = {}
        for i in range(200):
            img = Image.new("RGB", (64 + i, 48), (i, 255 - i, 128))
            img.save(d / f"scan_{i:03}.png")
            want[f"scan_{i:03}.png"] = (d / f"scan_{i:03}.png").read_bytes()
        wait_for(lambda: "cannot be claimed in PostgreSQL" in m.log_text(),
                 60, "the wait said in the log")
        for name, data in want.items():
            assert (d / name).read_bytes() == data, name
        assert m.rows("state = 'uploaded'") == []
        status = (m.mnt / ".thumbfs/status").read_text()
        assert "postgres: waiting:" in status, status
    finally:
        pg.start()
    wait_for(lambda: len(m.rows("state = 'uploaded'")) == 200, 180,
             "200 uploads")
    assert "PostgreSQL answers again: uploads go on" in m.log_text()
    wait_for(lambda: pg.rows("SELECT count(*) FROM images_image") ==
             [["200"]], 120, "200 rows in PostgreSQL")
    assert pg.rows("SELECT count(DISTINCT original_filename), count(*) "
                   "FROM images_image") == [["200", "200"]]
    wait_for(lambda: "postgres: ok" in
             (m.mnt / ".thumbfs/status").read_text(), 30, "status ok")
    m.stop()


def test_missing_tables_stop_the_mount(thumbfs_bin, tmp_path, s3store,
                                       postgres):
    postgres.psql("DROP DATABASE IF EXISTS empty", db="postgres")
    postgres.psql("CREATE DATABASE empty", db="postgres")
    m = pg_mount(thumbfs_bin, tmp_path, s3store, postgres)
    m.config["postgres"]["dsn"] = postgres.dsn.replace("dbname=thumbfs",
                                                       "dbname=empty")
    m.write_config()
    r = subprocess.run([str(thumbfs_bin), str(m.conf), str(m.mnt), "-f"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    # whole tables named as tables: the message is whole, not cut
    assert ("PostgreSQL lacks the table images_batch, the table "
            "images_image, the table thumbfs_tombstone, the table "
            "thumbfs_change, the table thumbfs_change_horizon (create the "
            "tables with: thumbfs schema | psql DSN)") in r.stderr, r.stderr
    assert not os.path.ismount(m.mnt)
    # one column missing is named as a column
    postgres.psql(subprocess.run([str(thumbfs_bin), "schema"], check=True,
                                 capture_output=True, text=True).stdout,
                  db="empty")
    postgres.psql("ALTER TABLE images_image DROP COLUMN sha256", db="empty")
    r = subprocess.run([str(thumbfs_bin), str(m.conf), str(m.mnt), "-f"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "PostgreSQL lacks images_image.sha256 (create" in r.stderr
    # a schema of before the record of changes says so too
    postgres.psql("ALTER TABLE images_image ADD COLUMN sha256 varchar(64)"
                  " NOT NULL DEFAULT ''; DROP TABLE thumbfs_change",
                  db="empty")
    r = subprocess.run([str(thumbfs_bin), str(m.conf), str(m.mnt), "-f"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "PostgreSQL lacks the table thumbfs_change (create" in r.stderr


def test_schema_on_a_fresh_database_says_nothing(thumbfs_bin, postgres):
    """thumbfs schema | psql on a fresh database: no NOTICE, no error;
    and again on the same database (the trigger replaced), no error."""
    postgres.psql("DROP DATABASE IF EXISTS fresh", db="postgres")
    postgres.psql("CREATE DATABASE fresh", db="postgres")
    ddl = subprocess.run([str(thumbfs_bin), "schema"], check=True,
                         capture_output=True, text=True).stdout
    r = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1",
                        f"host=127.0.0.1 port={postgres.port} dbname=fresh "
                        "user=postgres"], input=ddl, capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1",
                        f"host=127.0.0.1 port={postgres.port} dbname=fresh "
                        "user=postgres"], input=ddl, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "ERROR" not in r.stderr, r.stderr


def test_empty_dsn_never_touches_postgres(thumbfs_bin, tmp_path, s3store,
                                          clean_postgres):
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    d = m.batch()
    shutil.copy(photos()[0], d / "a.jpg")
    m.wait_uploaded("a.jpg")
    assert "postgres: off (no dsn)" in (m.mnt / ".thumbfs/status").read_text()
    m.stop()
    assert clean_postgres.rows("SELECT count(*) FROM images_image") == [["0"]]
    assert "PostgreSQL" not in m.log_text()


TOMB_COLS = ("original_filename, patient_id, batch_date, s3_key, "
             "s3_thumbnail_key, sha256, file_size, deleted_by, objects_kept")


def tombstones(pg):
    return pg.rows(f"SELECT {TOMB_COLS} FROM thumbfs_tombstone "
                   "ORDER BY deleted_at")


def test_unlink_is_a_tombstone_before_the_objects_go(thumbfs_bin, tmp_path,
                                                     s3store, clean_postgres):
    """The tombstone reaches PostgreSQL before the store's objects are
    deleted: with PostgreSQL away, the objects stay until it is back."""
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    try:
        d = m.batch()
        src = photos()[0]
        shutil.copy(src, d / "a.jpg")
        wait_for(lambda: pg_images(pg), 60, "the row in PostgreSQL")
        row = m.wait_uploaded("a.jpg")
        keys = [PREFIX + "a.jpg", PREFIX + "a_thumb.jpg"]
        assert m.object_keys(PREFIX) == keys
        pg.stop()
        try:
            os.unlink(d / "a.jpg")
            assert "a.jpg" not in os.listdir(d)
            assert m.rows() == []
            wait_for(lambda: "to PostgreSQL failed" in m.log_text(), 30,
                     "a failed sync")
            assert m.object_keys(PREFIX) == keys  # not before the tombstone
        finally:
            pg.start()
        wait_for(lambda: tombstones(pg), 60, "the tombstone in PostgreSQL")
        assert tombstones(pg) == [[
            "a.jpg", "P1", "2025-11-10", keys[0], keys[1], row["sha256"],
            str(src.stat().st_size), "root", "f"]]
        assert pg_images(pg) == []
        wait_for(lambda: m.object_keys(PREFIX) == [], 60, "the deletes")
        con = sqlite3.connect(m.data / "catalog.db")  # its own record
        assert con.execute("SELECT name, sha256, deleted_by, objects_kept "
                           "FROM tombstones").fetchall() == [
            ("a.jpg", row["sha256"], "root", 0)]
        con.close()
    finally:
        m.stop()


def test_delete_keep_leaves_the_objects(thumbfs_bin, tmp_path, s3store,
                                        clean_postgres):
    """[store] delete = keep: the mount and the app no longer show the
    image; the store keeps both objects, and the tombstone says so."""
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg)
    m.config["store"]["delete"] = "keep"
    m.start()
    try:
        d = m.batch()
        shutil.copy(photos()[1], d / "b.jpg")
        wait_for(lambda: pg_images(pg), 60, "the row in PostgreSQL")
        keys = [PREFIX + "b.jpg", PREFIX + "b_thumb.jpg"]
        os.unlink(d / "b.jpg")
        wait_for(lambda: tombstones(pg), 60, "the tombstone")
        assert tombstones(pg)[0][8] == "t"  # objects_kept
        wait_for(lambda: "queue postgres: 0" in
                 (m.mnt / ".thumbfs/status").read_text(), 30, "the queue")
        status = (m.mnt / ".thumbfs/status").read_text()
        assert "queue delete: 0" in status, status
        assert m.object_keys(PREFIX) == keys
        assert pg_images(pg) == [] and os.listdir(d) == []
        m.stop()
        m.start()  # and after a remount (a full read of PostgreSQL)
        wait_for(lambda: "postgres: ok" in
                 (m.mnt / ".thumbfs/status").read_text(), 30, "the sync")
        assert os.listdir(m.batch()) == []
        assert m.object_keys(PREFIX) == keys
    finally:
        m.stop()


def test_a_folder_move_reaches_postgresql(thumbfs_bin, tmp_path, s3store,
                                          clean_postgres):
    """mv of a date's folder: PostgreSQL's rows move to the new batch with
    their new keys, and the old batch, now empty, goes."""
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    try:
        d = m.batch()
        srcs = photos()[:2]
        for s in srcs:
            shutil.copy(s, d / s.name)
        wait_for(lambda: len(pg_images(pg)) == 2, 60, "2 rows")
        os.rename(d, m.mnt / "patients/P1/2025-11-12")
        new = "patients/filemaker-import/images/P1/2025-11-12/"

        def moved():
            rows = pg_images(pg)
            return len(rows) == 2 and all(r[1].startswith(new)
                                          for r in rows)
        wait_for(moved, 60, "the rows at their new place")
        batches = pg.rows("SELECT batch_date::text FROM images_batch")
        assert batches == [["2025-11-12"]]
        for r in pg_images(pg):
            assert m.object(r[1]) == next(
                s for s in srcs if s.name == r[0]).read_bytes()
            m.object(r[2])
    finally:
        m.stop()


def test_a_row_postgresql_refuses_for_good_waits_alone(thumbfs_bin, tmp_path,
                                                      s3store,
                                                      clean_postgres):
    """One row PostgreSQL refuses for good (here a CHECK constraint the
    clinic added) waits, parked with the reason, and every other row
    syncs; it is not retried again and again; thumbfs retry lets it go
    once the constraint is gone."""
    pg = clean_postgres
    pg.psql("ALTER TABLE images_image ADD CONSTRAINT no_refused CHECK"
            " (original_filename NOT LIKE 'refused%')")
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    try:
        d = m.batch()
        srcs = photos()[:3]
        shutil.copy(srcs[0], d / "refused.jpg")
        for s in srcs[1:]:
            shutil.copy(s, d / s.name)
        wait_for(lambda: sorted(r[0] for r in pg_images(pg)) ==
                 sorted(s.name for s in srcs[1:]), 60, "the good rows")
        wait_for(lambda: "refused for good" in m.log_text(), 30,
                 "the refusal")
        time.sleep(3)  # a retry, if there were one, would come by now
        log = m.log_text()
        assert "sync of 'patients/P1/2025-11-10/refused.jpg' to " \
            "PostgreSQL refused for good: " in log
        assert "no_refused" in log
        assert log.count("refused for good") == 1  # parked, not retried
        status = (m.mnt / ".thumbfs/status").read_text()
        assert "failed for good (thumbfs retry): 1" in status
        assert "postgres: ok" in status
        assert "patients/P1/2025-11-10/refused.jpg: failed for good: " in \
            status
        pg.psql("ALTER TABLE images_image DROP CONSTRAINT no_refused")
        r = subprocess.run([str(thumbfs_bin), "retry", str(m.conf)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: len(pg_images(pg)) == 3, 60, "the row let go")
    finally:
        m.stop()


def test_unmount_stops_a_long_read_of_postgresql(thumbfs_bin, tmp_path,
                                                 s3store, clean_postgres):
    """The first read of a large archive (200,000 rows) is under way when
    the mount is unmounted: the read is cancelled on the server and the
    daemon ends within seconds, not after the whole table."""
    pg = clean_postgres
    pg.psql("INSERT INTO images_batch (id, patient_id, batch_date, name) "
            "SELECT gen_random_uuid(), 'Q' || p, date '2020-01-01' + d, 'b' "
            "FROM generate_series(1, 400) p, generate_series(0, 4) d")
    pg.psql("INSERT INTO images_image (id, batch_id, s3_key, s3_bucket, "
            "original_filename, file_size, mime_type, s3_thumbnail_key, "
            "thumbnail_size, width, height, uploaded_by, created_at, "
            "updated_at) SELECT gen_random_uuid(), b.id, "
            "'k/' || b.patient_id || '/' || b.batch_date || '/' || i || "
            "'.jpg', 'photos', i || '.jpg', 1000, 'image/jpeg', "
            "'k/' || b.patient_id || '/' || b.batch_date || '/' || i || "
            "'_thumb.jpg', 100, 640, 480, 'import', now(), now() "
            "FROM images_batch b, generate_series(1, 100) i")
    try:
        m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
        wait_for(lambda: len(m.rows("1 LIMIT 2000")) >= 2000, 120,
                 "the read to be under way")
        t0 = time.monotonic()
        subprocess.run(["fusermount3", "-u", str(m.mnt)], check=True)
        rc = m.proc.wait(60)
        took = time.monotonic() - t0
        m.proc = None
        m.logf.close()
        assert rc == 0, m.log_text()
        print(f"the daemon ended {took:.2f} s after fusermount3 -u")
        assert took < 10, f"the daemon took {took:.1f} s to end"
        assert len(m.rows()) < 200000  # it did stop half-way
    finally:
        pg.psql("DELETE FROM images_image; DELETE FROM images_batch")
