"""Several mounts on one archive: two catalogs, one bucket, one database.
What one mount (or the web app) writes appears in the others."""
import hashlib
import os
import shutil

from conftest import Mount, pg_mount, photos, wait_for

PREFIX = "patients/filemaker-import/images/P1/2025-11-10/"


def two_mounts(thumbfs_bin, tmp_path, s3store, pg):
    a = Mount(thumbfs_bin, tmp_path / "a", "s3", s3store)
    b = Mount(thumbfs_bin, tmp_path / "b", "s3", s3store)
    b.bucket = a.bucket
    b.config["store"]["url"] = f"s3://{a.bucket}"
    for m in (a, b):
        m.config["postgres"] = {"dsn": pg.dsn}
    return a.start(), b.start()


def listing(m, patient="P1", date="2025-11-10"):
    d = m.mnt / "patients" / patient / date
    return sorted(os.listdir(d)) if d.exists() else []


def test_two_mounts_see_each_other(thumbfs_bin, tmp_path, s3store,
                                   clean_postgres):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = two_mounts(thumbfs_bin, tmp_path, s3store, clean_postgres)
    try:
        src = photos()[0]
        shutil.copy(src, a.batch() / "a.jpg")
        wait_for(lambda: listing(b) == ["a.jpg", "a_thumb.jpg"], 60,
                 "a.jpg and its thumbnail in the other mount")
        db = b.mnt / "patients/P1/2025-11-10"
        assert os.stat(db / "a.jpg").st_size == src.stat().st_size
        assert (db / "a.jpg").read_bytes() == src.read_bytes()
        assert (db / "a_thumb.jpg").read_bytes() == \
            (a.mnt / "patients/P1/2025-11-10/a_thumb.jpg").read_bytes()

        # the other way, in a new patient and batch
        shutil.copy(photos()[1], b.batch("P2", "2024-01-31") / "b.jpg")
        wait_for(lambda: listing(a, "P2", "2024-01-31") ==
                 ["b.jpg", "b_thumb.jpg"], 60, "b.jpg in the first mount")

        # the same name in both: one row, the later content everywhere
        shutil.copy(photos()[2], a.batch() / "x.jpg")
        wait_for(lambda: "x.jpg" in listing(b), 60, "x.jpg in b")
        later = photos()[3]
        shutil.copy(later, b.batch() / "x.jpg")
        want = later.read_bytes()
        for m in (a, b):
            wait_for(lambda: (m.mnt / "patients/P1/2025-11-10/x.jpg")
                     .read_bytes() == want, 60, "the later x.jpg")
        assert clean_postgres.rows(
            "SELECT count(*), max(sha256) FROM images_image WHERE "
            "original_filename = 'x.jpg'") == \
            [["1", hashlib.sha256(want).hexdigest()]]
        assert a.object(PREFIX + "x.jpg") == want

        # removed in one, gone from the other
        os.unlink(a.mnt / "patients/P1/2025-11-10/a.jpg")
        wait_for(lambda: "a.jpg" not in listing(b), 60, "a.jpg to go")
        assert "a_thumb.jpg" not in listing(b)
    finally:
        a.stop()
        b.stop()


def test_web_app_upload_appears(thumbfs_bin, tmp_path, s3store,
                                clean_postgres):
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    try:
        data = photos()[4].read_bytes()
        thumb = b"\xff\xd8\xff" + b"not really a thumbnail"
        key = "patients/web/P9/2025-06-01/upload.jpg"
        tkey = "patients/web/P9/2025-06-01/upload_thumb.jpg"
        c = s3store.client()
        c.put_object(Bucket=m.bucket, Key=key, Body=data)
        c.put_object(Bucket=m.bucket, Key=tkey, Body=thumb)
        pg.psql(
            "INSERT INTO images_batch (id, patient_id, batch_date) VALUES "
            "('11111111-1111-4111-8111-111111111111', 'P9', '2025-06-01');"
            "INSERT INTO images_image (id, batch_id, s3_key, s3_thumbnail_key,"
            " s3_bucket, original_filename, file_size, thumbnail_size,"
            " mime_type, width, height) VALUES ("
            "'22222222-2222-4222-8222-222222222222',"
            f" '11111111-1111-4111-8111-111111111111', '{key}', '{tkey}',"
            f" '{m.bucket}', 'upload.jpg', {len(data)}, {len(thumb)},"
            " 'image/jpeg', 640, 480)")
        wait_for(lambda: listing(m, "P9", "2025-06-01") ==
                 ["upload.jpg", "upload_thumb.jpg"], 60, "the app's upload")
        d = m.mnt / "patients/P9/2025-06-01"
        assert (d / "upload.jpg").read_bytes() == data
        assert (d / "upload_thumb.jpg").read_bytes() == thumb
        # and the app deleting it takes it off the mount
        pg.psql("DELETE FROM images_image WHERE original_filename = "
                "'upload.jpg'")
        wait_for(lambda: listing(m, "P9", "2025-06-01") == [], 60,
                 "the app's delete")
    finally:
        m.stop()
