"""Many actors on one archive (#32), folders: renames and removals of a
folder while another mount, the web app or an upload acts on its images.
Each test holds one actor at the point where the other's step used to do
harm, so that the interleaving happens every run (test_actors.py holds
the rest)."""
import errno
import os
import subprocess
import uuid

import pytest

from conftest import Mount, photos, settled, wait_for
from test_actors import KEYS, check_keys_follow_paths, two_mounts


def test_two_folder_renames_in_a_row(thumbfs_bin, tmp_path, s3server, proxy):
    """#32, 1: a date renamed, then its patient, while the first rename's
    copies are under way: the first move's job took the date's new key
    after the second rename had queued its own move from the old key,
    which then found 'other content since' and copied nothing. One image
    stayed under N1/2025-11-12 while listed under N2."""
    from conftest import proxied_mount
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        d = m.batch("N1", "2025-11-10")
        data = {}
        for i, src in enumerate(photos()[:2]):
            data[f"p{i}.jpg"] = src.read_bytes()
            (d / f"p{i}.jpg").write_bytes(data[f"p{i}.jpg"])
        for n in data:
            m.wait_uploaded(n)
        proxy.stall(2, 2, "PUT", "2025-11-12")  # the first move's copies
        os.rename(d, m.mnt / "patients/N1/2025-11-12")
        wait_for(lambda: any("2025-11-12" in r[1]
                             for r in proxy.seen("PUT")), 10, "a copy")
        os.rename(m.mnt / "patients/N1", m.mnt / "patients/N2")
        wait_for(lambda: settled(m), 60, "the moves")
        assert sorted(os.listdir(m.mnt / "patients/N2/2025-11-12")) == [
            "p0.jpg", "p0_thumb.jpg", "p1.jpg", "p1_thumb.jpg"]
        check_keys_follow_paths(m, {("N2", "2025-11-12", n): b
                                    for n, b in data.items()})
        for n in data:
            assert os.getxattr(m.mnt / "patients/N2/2025-11-12" / n,
                               "user.thumbfs.s3_key").decode() == \
                f"{KEYS}N2/2025-11-12/{n}"
    finally:
        m.stop()


def test_moved_then_a_new_image_at_the_old_place(thumbfs_bin, tmp_path,
                                                 s3server, proxy):
    """#32, 3a: a date renamed while its move's copy waits, and a new
    a.jpg written at the old place: its upload went under the old key
    before the move's copy read it, and the moved image showed the new
    picture, its own bytes gone."""
    from conftest import proxied_mount
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        old, new = photos()[0].read_bytes(), photos()[1].read_bytes()
        d = m.batch("P3", "2025-11-10")
        (d / "a.jpg").write_bytes(old)
        m.wait_uploaded("a.jpg")
        # the move's copies wait in the proxy, the new upload does not
        proxy.stall(2, 4, "PUT", "2025-11-12")
        os.rename(d, m.mnt / "patients/P3/2025-11-12")
        m.batch("P3", "2025-11-10")
        (d / "a.jpg").write_bytes(new)
        wait_for(lambda: settled(m), 60, "the move and the new upload")
        assert (m.mnt / "patients/P3/2025-11-12/a.jpg").read_bytes() == old
        assert (d / "a.jpg").read_bytes() == new
        check_keys_follow_paths(m, {("P3", "2025-11-12", "a.jpg"): old,
                                    ("P3", "2025-11-10", "a.jpg"): new})
    finally:
        m.stop()


def test_moved_removed_and_a_new_image_at_the_old_place(
        thumbfs_bin, tmp_path, s3server, proxy):
    """#32, 3b: a date renamed, the moved image removed, and a new a.jpg
    written at the old place: the old key's delete, named by the moved
    path, did not hold the new upload back, landed after it and removed
    it while its row said uploaded."""
    from conftest import proxied_mount
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        old, new = photos()[0].read_bytes(), photos()[1].read_bytes()
        d = m.batch("P3", "2025-11-10")
        (d / "a.jpg").write_bytes(old)
        m.wait_uploaded("a.jpg")
        # the old objects' deletes wait in the proxy
        proxy.stall(4, 3, "DELETE", "2025-11-10")
        os.rename(d, m.mnt / "patients/P3/2025-11-12")
        os.unlink(m.mnt / "patients/P3/2025-11-12/a.jpg")
        m.batch("P3", "2025-11-10")
        (d / "a.jpg").write_bytes(new)
        wait_for(lambda: settled(m), 60, "the deletes and the new upload")
        assert (d / "a.jpg").read_bytes() == new
        check_keys_follow_paths(m, {("P3", "2025-11-10", "a.jpg"): new})
    finally:
        m.stop()


def proxied_pair(thumbfs_bin, tmp_path, s3server, proxy, pg, through):
    """Mounts a and b on one bucket of s3rver and one PostgreSQL, the one
    named through reaching the store through the fault proxy; started,
    that one first."""
    from conftest import proxied_mount
    ms = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        ms[name] = proxied_mount(thumbfs_bin, tmp_path / name, s3server,
                                 proxy) if name == through else \
            Mount(thumbfs_bin, tmp_path / name, "s3", s3server)
    other = ms["b" if through == "a" else "a"]
    other.bucket = ms[through].bucket
    other.config["store"]["url"] = f"s3://{other.bucket}"
    for m in ms.values():
        m.config["postgres"] = {"dsn": pg.dsn}
    ms[through].start()
    other.start()
    return ms["a"], ms["b"]


def test_two_folder_renames_seen_from_another_mount(thumbfs_bin, tmp_path,
                                                    s3server, proxy,
                                                    clean_postgres):
    """The many-actors model test's find (#32): a date renamed twice on
    mount A (10 -> 12 -> 11) while the first move's copy was under way:
    A's row reached PostgreSQL at 11 with the keys of 12 first, then with
    the keys of 11 at the same updated_at (a move keeps it), and mount B
    kept the first (a row is taken only when it is newer): B's row named
    objects its path no longer has, which go once the move is done."""
    pg = clean_postgres
    a, b = proxied_pair(thumbfs_bin, tmp_path, s3server, proxy, pg, "a")
    try:
        data = photos()[0].read_bytes()
        (a.batch("N1", "2025-11-10") / "p0.jpg").write_bytes(data)
        a.wait_uploaded("p0.jpg")
        wait_for(lambda: b.rows("state = 'uploaded'"), 60, "p0.jpg in B")
        proxy.stall(2, 3, "PUT", "2025-11-12")  # the first move's copies
        # and the second's, so that B sees what the first sent meanwhile
        proxy.stall(1, 6, "PUT", "2025-11-11")
        os.rename(a.mnt / "patients/N1/2025-11-10",
                  a.mnt / "patients/N1/2025-11-12")
        wait_for(lambda: any("2025-11-12" in r[1]
                             for r in proxy.seen("PUT")), 10, "a copy")
        os.rename(a.mnt / "patients/N1/2025-11-12",
                  a.mnt / "patients/N1/2025-11-11")
        mid = f"{KEYS}N1/2025-11-12/p0.jpg"
        wait_for(lambda: [("2025-11-11", mid)] == [
            (r["batch_date"], r["s3_key"]) for r in b.rows()], 30,
            "B's row at 11, with the keys of 12 as the first move left")
        want = f"{KEYS}N1/2025-11-11/p0.jpg"
        wait_for(lambda: settled(a) and pg.rows(
            "SELECT s3_key FROM images_image") == [[want]], 60,
            "the moves, in PostgreSQL")
        wait_for(lambda: settled(b) and [
            (r["batch_date"], r["s3_key"]) for r in b.rows()] ==
            [("2025-11-11", want)], 60, "B's row at 11, with 11's keys")
        p = b.mnt / "patients/N1/2025-11-11/p0.jpg"
        assert os.getxattr(p, "user.thumbfs.s3_key").decode() == want
        assert p.read_bytes() == data
    finally:
        a.stop()
        b.stop()


def test_removed_by_the_app_while_another_mount_renames_its_folder(
        thumbfs_bin, tmp_path, s3store, clean_postgres):
    """The many-actors model test's find (#32, seed 7027): the web app
    deleted an image (its row and objects) while mount B, not knowing yet,
    renamed the image's folder: B's move found nothing to copy, failed for
    good, and its parked job kept the row on B for ever (a row PostgreSQL
    no longer has goes only when it has no job). A move that finds its
    objects gone asks PostgreSQL: a row gone there goes here too."""
    import psycopg2
    pg = clean_postgres
    a, b = two_mounts(thumbfs_bin, tmp_path, s3store, pg)
    try:
        c = s3store.client()
        iid, batch = str(uuid.uuid4()), str(uuid.uuid4())
        data = photos()[0].read_bytes()
        c.put_object(Bucket=a.bucket, Key="web/x.jpg", Body=data)
        c.put_object(Bucket=a.bucket, Key="web/x_thumb.jpg", Body=data)
        pg.psql(
            "INSERT INTO images_batch (id, patient_id, batch_date)"
            f" VALUES ('{batch}', 'P1', '2025-11-11');"
            "INSERT INTO images_image (id, batch_id, s3_key,"
            " s3_thumbnail_key, s3_bucket, original_filename, file_size,"
            " thumbnail_size, mime_type, width, height) VALUES ("
            f"'{iid}', '{batch}', 'web/x.jpg', 'web/x_thumb.jpg',"
            f" '{a.bucket}', 'x.jpg', {len(data)}, {len(data)},"
            " 'image/jpeg', 64, 48)")
        old = b.mnt / "patients/P1/2025-11-11"
        wait_for(lambda: (old / "x.jpg").exists(), 60, "x.jpg on B")
        # B applies no change while this transaction is open: the app's
        # delete reaches it only after B has renamed the folder
        hold = psycopg2.connect(pg.dsn, application_name="held")
        try:
            hold.cursor().execute("SELECT pg_current_xact_id()")
            pg.psql(f"DELETE FROM images_image WHERE id = '{iid}';"
                    f"DELETE FROM images_batch WHERE id = '{batch}'")
            for k in ("web/x.jpg", "web/x_thumb.jpg"):
                c.delete_object(Bucket=a.bucket, Key=k)
            os.rename(old, b.mnt / "patients/P1/2025-11-13")
            wait_for(lambda: settled(b), 60, "B's move to end")
            assert "was removed elsewhere while its folder was renamed" \
                in b.log_text()
        finally:
            hold.close()
        for m in (a, b):
            wait_for(lambda: settled(m) and m.rows() == [], 60,
                     f"no row on {m.base.name}")
        # (the kernel may show the name for its entry_timeout, 1 s)
        wait_for(lambda: not (b.mnt / "patients/P1/2025-11-13/x.jpg")
                 .exists(), 10, "x.jpg gone from B's tree")
        assert pg.rows("SELECT count(*) FROM images_image") == [["0"]]
        assert b.object_keys() == []
    finally:
        a.stop()
        b.stop()


def test_renamed_away_while_another_mount_deletes_its_old_thumbnail(
        thumbfs_bin, tmp_path, s3server, proxy, clean_postgres):
    """The many-actors model test's find (#32, seed 7037): x.jpg written
    again on mount A in another format; mount B took A's row and queued
    the delete of the thumbnail it had (x_thumb.jpg), named by the image;
    A renamed x.jpg before that delete was done, and B kept x.jpg for ever:
    a row PostgreSQL no longer has went only with no job of its image, and
    that delete counted as one. A delete of keys the row no longer holds
    does not hold the row."""
    import io
    from PIL import Image
    pg = clean_postgres
    a, b = proxied_pair(thumbfs_bin, tmp_path, s3server, proxy, pg, "b")
    try:
        d = a.batch()
        (d / "x.jpg").write_bytes(photos()[0].read_bytes())
        wait_for(lambda: settled(a) and [r["thumbnail_name"] for r in
                                         b.rows()] == ["x_thumb.jpg"], 60,
                 "x.jpg and its JPEG thumbnail on B")
        png = io.BytesIO()
        Image.open(photos()[1]).convert("RGB").resize((320, 240)).save(
            png, "PNG")
        proxy.stall(1, 8, "DELETE")  # B's delete of x_thumb.jpg waits
        (d / "x.jpg").write_bytes(png.getvalue())
        wait_for(lambda: [r["thumbnail_name"] for r in b.rows()] ==
                 ["x_thumb.png"], 60, "A's row, with a PNG thumbnail, on B")
        import sqlite3

        def deleting():
            db = sqlite3.connect(b.data / "catalog.db", timeout=10)
            try:
                return db.execute("SELECT count(*) FROM jobs WHERE kind = 2"
                                  " AND key LIKE '%x_thumb.jpg'"
                                  ).fetchone()[0] > 0
            finally:
                db.close()
        wait_for(deleting, 30, "B's delete of x_thumb.jpg waiting")
        os.rename(d / "x.jpg", d / "y.jpg")
        for m in (a, b):
            wait_for(lambda: settled(m) and [r["name"] for r in m.rows()]
                     == ["y.jpg"], 60, f"only y.jpg on {m.base.name}")
        wait_for(lambda: sorted(os.listdir(b.mnt / "patients/P1/2025-11-10"))
                 == ["y.jpg", "y_thumb.png"], 10, "B's tree")
        assert [k.rsplit("/", 1)[1] for k in b.object_keys()] == [
            "y.jpg", "y_thumb.png"]
    finally:
        a.stop()
        b.stop()


def test_a_folder_left_by_its_images_on_another_mount_goes(
        thumbfs_bin, tmp_path, s3store, clean_postgres):
    """A date renamed on mount A, and a patient's last image removed by the
    web app: mount B showed the old date and patient as empty folders for
    ever (a folder seen from elsewhere was made for its rows, and nothing
    took it away with them), so the two mounts listed different trees. A
    folder left empty by rows that went elsewhere goes; one that still has
    a row, or a file of this mount's, stays."""
    pg = clean_postgres
    a, b = two_mounts(thumbfs_bin, tmp_path, s3store, pg)
    try:
        data = photos()[0].read_bytes()
        (a.batch("N1", "2025-11-10") / "p0.jpg").write_bytes(data)
        (a.batch("N1", "2025-11-10") / "p1.jpg").write_bytes(data)
        (a.batch("N2", "2025-11-10") / "p2.jpg").write_bytes(data)
        (b.batch("N2", "2025-11-11") / "mine.txt").write_bytes(b"x")
        for n in ("p0.jpg", "p1.jpg", "p2.jpg"):
            a.wait_uploaded(n)
        wait_for(lambda: len(b.rows("state = 'uploaded' AND name LIKE"
                                    " 'p_.jpg'")) == 3, 60,
                 "A's three images in B")
        assert sorted(os.listdir(b.mnt / "patients/N1")) == ["2025-11-10"]
        os.rename(a.mnt / "patients/N1/2025-11-10",
                  a.mnt / "patients/N1/2025-11-12")
        pg.psql("DELETE FROM images_image WHERE original_filename ="
                " 'p2.jpg'")
        wait_for(lambda: sorted(os.listdir(b.mnt / "patients/N1")) ==
                 ["2025-11-12"], 60, "B's N1 as A's")
        assert sorted(os.listdir(b.mnt / "patients/N1/2025-11-12")) == [
            "p0.jpg", "p0_thumb.jpg", "p1.jpg", "p1_thumb.jpg"]
        wait_for(lambda: sorted(os.listdir(b.mnt / "patients/N2")) ==
                 ["2025-11-11"], 60, "N2's emptied date gone from B")
        assert os.listdir(b.mnt / "patients/N2/2025-11-11") == ["mine.txt"]
        # A did the rename itself: its tree is the same
        assert sorted(os.listdir(a.mnt / "patients/N1")) == ["2025-11-12"]
    finally:
        a.stop()
        b.stop()


def test_a_folder_of_another_mounts_images_is_not_empty(
        thumbfs_bin, tmp_path, s3store, clean_postgres):
    """rmdir on mount B of a date whose images mount A wrote (B has their
    rows, and no local file) removed B's folder: the images were no
    longer listed on B, while their rows stayed. It is ENOTEMPTY, as the
    listing says; rm -r on B removes them everywhere."""
    pg = clean_postgres
    a, b = two_mounts(thumbfs_bin, tmp_path, s3store, pg)
    try:
        data = photos()[0].read_bytes()
        (a.batch("N1", "2025-11-10") / "p0.jpg").write_bytes(data)
        a.wait_uploaded("p0.jpg")
        wait_for(lambda: b.rows("state = 'uploaded'"), 60, "p0.jpg in B")
        d = b.mnt / "patients/N1/2025-11-10"
        for x in (d, d.parent):
            with pytest.raises(OSError) as e:
                os.rmdir(x)
            assert e.value.errno == errno.ENOTEMPTY, x
        assert sorted(os.listdir(d)) == ["p0.jpg", "p0_thumb.jpg"]
        r = subprocess.run(["rm", "-r", str(d.parent)], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: not a.rows() and not b.rows() and not pg.rows(
            "SELECT 1 FROM images_image"), 60, "the image gone everywhere")
        wait_for(lambda: not [k for k in a.object_keys() if "N1" in k], 60,
                 "its objects gone")
    finally:
        a.stop()
        b.stop()
