"""Rows the store has without a thumbnail (the FileMaker import, from before
thumbnails): made on first listing or read, and by `thumbfs backfill`,
which is safe to interrupt and to run again. Real PostgreSQL and s3rver."""
import io
import signal
import subprocess
import uuid

from PIL import Image

from conftest import SANITIZER_MARKS, pg_mount, photos, wait_for

PREFIX = "patients/filemaker-import/images"


def seed(pg, s3, bucket, patient, date, items):
    """Rows and objects as the FileMaker import left them: no thumbnail,
    no width or height."""
    batch = str(uuid.uuid4())
    pg.psql("INSERT INTO images_batch (id, patient_id, batch_date, name) "
            f"VALUES ('{batch}', '{patient}', '{date}', 'FileMaker')")
    c = s3.client()
    values = []
    for i, (name, data) in enumerate(sorted(items.items())):
        key = f"{PREFIX}/{patient}/{date}/{name}"
        c.put_object(Bucket=bucket, Key=key, Body=data)
        values.append(
            f"('{uuid.uuid4()}', '{batch}', '{key}', '{bucket}', '{name}',"
            f" {len(data)}, 'image/jpeg', 'FM-{i}', 'FileMaker import',"
            " '2019-03-04 10:00:00+00', '2019-03-04 10:00:00+00')")
    pg.psql("INSERT INTO images_image (id, batch_id, s3_key, s3_bucket,"
            " original_filename, file_size, mime_type, filemaker_id,"
            " uploaded_by, created_at, updated_at) VALUES " +
            ", ".join(values))


def pg_rows(pg, patient):
    return pg.rows(
        "SELECT i.original_filename, i.s3_thumbnail_key, i.thumbnail_size,"
        " i.width, i.height, i.filemaker_id, i.uploaded_by FROM"
        " images_image i JOIN images_batch b ON b.id = i.batch_id WHERE"
        f" b.patient_id = '{patient}' ORDER BY 1")


def jpeg(w, h, seed_):
    img = Image.new("RGB", (w, h), (seed_ * 37 % 256, 90, 160))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_listing_makes_the_missing_thumbnails(thumbfs_bin, tmp_path,
                                              s3store, clean_postgres):
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    try:
        items = {f"IMG_{i}.jpg": p.read_bytes()
                 for i, p in enumerate(photos()[:3])}
        items["broken.jpg"] = b"\xff\xd8\xff not a photograph"
        seed(pg, s3store, m.bucket, "P7", "2019-03-04", items)
        d = m.mnt / "patients/P7/2019-03-04"
        want = sorted(list(items) + [f"IMG_{i}_thumb.jpg" for i in range(3)])
        wait_for(lambda: d.exists() and sorted(
            __import__("os").listdir(d)) == want, 90,
            "the listing to show the thumbnails made")
        rows = {r[0]: r for r in pg_rows(pg, "P7")}
        for i in range(3):
            name = f"IMG_{i}.jpg"
            w, h = Image.open(io.BytesIO(items[name])).size
            key = f"{PREFIX}/P7/2019-03-04/IMG_{i}_thumb.jpg"
            thumb = m.object(key)
            assert max(Image.open(io.BytesIO(thumb)).size) == 300
            assert (d / f"IMG_{i}_thumb.jpg").read_bytes() == thumb
            wait_for(lambda: pg_rows(pg, "P7") and
                     {r[0]: r for r in pg_rows(pg, "P7")}[name][1] == key,
                     30, "the row in PostgreSQL")
            r = {r[0]: r for r in pg_rows(pg, "P7")}[name]
            assert tuple(r[1:]) == (key, str(len(thumb)), str(w), str(h),
                             f"FM-{sorted(items).index(name)}",
                             "FileMaker import"), r
        # the broken one: the app's row stays as it was, the reason shows
        assert tuple(rows["broken.jpg"][1:5]) == ("", "", "", "")
        assert "broken.jpg" in (m.mnt / ".thumbfs/status").read_text()
        assert m.rows("name = 'broken.jpg'")[0]["error"]
        assert (d / "broken.jpg").read_bytes() == items["broken.jpg"]
    finally:
        m.stop()


def run_backfill(thumbfs_bin, m, **kw):
    m.write_config()
    return subprocess.run([str(thumbfs_bin), "backfill", str(m.conf)],
                          capture_output=True, text=True, timeout=600, **kw)


def clean(text):
    for mark in SANITIZER_MARKS:
        assert mark not in text, text


def test_backfill_command_interrupted_and_run_again(thumbfs_bin, tmp_path,
                                                    s3store, clean_postgres):
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg)
    m.config["fs"]["workers"] = "1"
    big = photos()[1].read_bytes()  # a 3840x2160 photograph
    items = {f"scan{i:02d}.jpg": big for i in range(30)}
    seed(pg, s3store, m.bucket, "P8", "2018-01-02", items)
    m.write_config()
    p = subprocess.Popen([str(thumbfs_bin), "backfill", str(m.conf)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    first = p.stdout.readline()
    assert first == "backfill: 30 stored image(s) without a thumbnail\n"
    while True:  # interrupted once the first is made
        line = p.stdout.readline()
        assert line, p.stderr.read()
        if not line.startswith("backfill: 0 of"):
            break
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    clean(err)
    assert p.returncode == 130, out + err
    assert "run it again" in out
    made = m.rows("s3_thumbnail_key != ''")  # some may wait for PostgreSQL
    assert 0 < len(made) < 30
    for r in pg_rows(pg, "P8"):  # what PostgreSQL shows is in the store
        assert not r[1] or m.object(r[1])
    r = run_backfill(thumbfs_bin, m)
    clean(r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == \
        f"backfill: {30 - len(made)} stored image(s) without a thumbnail"
    assert lines[-1] == \
        f"backfill: {30 - len(made)} of {30 - len(made)} made, 0 failed, 0 left"
    rows = pg_rows(pg, "P8")
    assert all(r[1] and r[3] == "3840" and r[4] == "2160" for r in rows)
    thumbs = s3store.keys(m.bucket, f"{PREFIX}/P8/")
    assert len(thumbs) == 60
    # nothing left: a third run does nothing
    r = run_backfill(thumbfs_bin, m)
    assert r.returncode == 0 and r.stdout == \
        "backfill: 0 stored image(s) without a thumbnail\n", r.stdout
    # and a mount shows them all, with their thumbnails
    m.start()
    try:
        d = m.mnt / "patients/P8/2018-01-02"
        wait_for(lambda: d.exists() and len(list(d.iterdir())) == 60, 60,
                 "the mount to list them")
        assert (d / "scan00.jpg").read_bytes() == big
    finally:
        m.stop()


def test_backfill_without_postgres(thumbfs_bin, tmp_path, s3store):
    """With no [postgres], the catalog's own rows: a file:// archive whose
    catalog lost its thumbnails is repaired."""
    from conftest import Mount
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        d = m.batch()
        (d / "a.jpg").write_bytes(jpeg(900, 600, 1))
        m.wait_uploaded("a.jpg")
    finally:
        m.stop()
    import sqlite3
    db = sqlite3.connect(m.data / "catalog.db")
    db.execute("UPDATE images SET s3_thumbnail_key = '', thumbnail_name = '',"
               " thumbnail_size = 0, width = 0, height = 0")
    db.commit()
    db.close()
    r = run_backfill(thumbfs_bin, m)
    clean(r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == \
        "backfill: 1 of 1 made, 0 failed, 0 left"
    row = m.rows("name = 'a.jpg'")[0]
    assert (row["width"], row["height"]) == (900, 600)
    assert row["s3_thumbnail_key"].endswith("/a_thumb.jpg")


def lose_thumbnails(m):
    import sqlite3
    db = sqlite3.connect(m.data / "catalog.db", timeout=10)
    db.execute("UPDATE images SET s3_thumbnail_key = '', thumbnail_name = '',"
               " thumbnail_size = 0, width = 0, height = 0")
    db.commit()
    db.close()


def test_backfill_beside_a_mount_hands_the_work_to_it(thumbfs_bin, tmp_path):
    """The mount owns the catalog: backfill queues the work, the mount's
    runners do it (no job runs in two processes), and backfill follows it
    to the end. Then, alone: an original that is nowhere ends as failed,
    counted, instead of staying 'left' for ever."""
    from conftest import Mount
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        d = m.batch()
        for i in range(3):
            (d / f"{i}.jpg").write_bytes(jpeg(900, 600, i))
            m.wait_uploaded(f"{i}.jpg")
        lose_thumbnails(m)
        r = run_backfill(thumbfs_bin, m)
        clean(r.stderr)
        lines = r.stdout.splitlines()
        assert lines[0] == (f"backfill: the catalog is mounted on {m.mnt}; "
                            "its runners make the thumbnails")
        assert lines[1] == "backfill: 3 stored image(s) without a thumbnail"
        assert lines[-1] == "backfill: 3 of 3 made, 0 failed, 0 left", \
            r.stdout
        assert r.returncode == 0, r.stdout + r.stderr
        assert m.log_text().count("backfilled the thumbnail of") == 3
        for i in range(3):
            row = m.rows(f"name = '{i}.jpg'")[0]
            assert (row["width"], row["height"]) == (900, 600)
    finally:
        m.stop()
    lose_thumbnails(m)
    gone = m.rows("name = '2.jpg'")[0]["s3_key"]
    (m.base / "store" / gone).unlink()
    (m.data / "spool/patients/P1/2025-11-10/2.jpg").unlink()
    r = run_backfill(thumbfs_bin, m)
    clean(r.stderr)
    assert "backfill: 2 of 3 made, 1 failed, 0 left" in \
        r.stdout.splitlines(), r.stdout
    assert f"the original '{gone}' is not in the store" in r.stderr
