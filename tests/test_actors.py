"""Many actors on one archive (#32): what two of them doing their part at
the same moment must not break. Each test holds one actor at the point
where the other's step used to do harm (a lock held in PostgreSQL, a
statement waiting on it) so that the interleaving happens every run."""
import hashlib
import os
import uuid

import pytest
import test_shared

from conftest import Mount, pg_mount, photos, settled, wait_for


def waiting_on_lock(pg, like):
    """Whether a statement matching like waits on a lock in PostgreSQL."""
    return pg.rows("SELECT count(*) FROM pg_stat_activity WHERE"
                   " wait_event_type = 'Lock' AND query LIKE"
                   f" '{like}'") == [["1"]]


def test_last_image_deleted_while_another_mount_adds_one(
        thumbfs_bin, tmp_path, s3store, clean_postgres):
    """#32, 5: the mount deletes the last image of a batch while another
    actor's transaction adds one to it. The batch's delete waited for that
    transaction's lock and then judged 'no image left' by its old
    snapshot: the batch went, and ON DELETE CASCADE took the image just
    committed with it."""
    import psycopg2
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    try:
        d = m.batch("P5", "2025-11-10")
        (d / "a.jpg").write_bytes(photos()[0].read_bytes())
        wait_for(lambda: pg.rows(
            "SELECT count(*) FROM images_image") == [["1"]], 60,
            "a.jpg in PostgreSQL")
        other = psycopg2.connect(pg.dsn)
        try:
            cur = other.cursor()
            # the other mount adds b.jpg to the batch as db_pg_upsert
            # does (the batch's row upserted, so locked, then the image),
            # and has not committed yet
            cur.execute(
                "INSERT INTO images_batch (id, patient_id, batch_date, name,"
                " uploaded_by, created_at, updated_at) VALUES (%s, 'P5',"
                " '2025-11-10', '', 'b', now(), now()) ON CONFLICT"
                " (patient_id, batch_date) DO UPDATE SET updated_at = now()"
                " RETURNING id", (str(uuid.uuid4()),))
            batch = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO images_image (id, batch_id, s3_key,"
                " s3_thumbnail_key, s3_bucket, original_filename,"
                " file_size, thumbnail_size, mime_type, width, height)"
                " VALUES (%s, %s, 'web/b.jpg', 'web/b_thumb.jpg', %s,"
                " 'b.jpg', 10, 5, 'image/jpeg', 64, 48)",
                (str(uuid.uuid4()), batch, m.bucket))
            os.unlink(d / "a.jpg")
            try:
                wait_for(lambda: waiting_on_lock(pg, "%images_batch%"), 60,
                         "the mount's delete of the batch to wait")
            except AssertionError:
                raise AssertionError(pg.psql(
                    "SELECT state, wait_event_type, query FROM"
                    " pg_stat_activity") + m.log_text())
            other.commit()
        finally:
            other.close()
        wait_for(lambda: pg.rows(
            "SELECT count(*) FROM images_image WHERE"
            " original_filename = 'a.jpg'") == [["0"]], 60,
            "a.jpg's delete")
        assert pg.rows("SELECT i.original_filename FROM images_image i"
                       " JOIN images_batch b ON b.id = i.batch_id") == \
            [["b.jpg"]], m.log_text()
    finally:
        m.stop()


def test_a_transaction_left_open_is_named(thumbfs_bin, tmp_path, s3store,
                                          clean_postgres):
    """#32, 10: a transaction left open anywhere on the server holds every
    mount's bound, and what the mounts show stops moving. Past [postgres]
    held_back_warn_s the log and the status file say so, naming the
    session; once it ends, the change arrives and the status says no."""
    import psycopg2
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg,
                 held_back_warn_s="2").start()
    status = m.mnt / ".thumbfs/status"
    try:
        wait_for(lambda: "caught up with" in m.log_text(), 60, "a look")
        assert "postgres held back: no" in status.read_text()
        idle = psycopg2.connect(pg.dsn, application_name="forgotten psql")
        try:
            cur = idle.cursor()
            cur.execute("SELECT pg_current_xact_id(), pg_backend_pid()")
            pid = cur.fetchone()[1]
            batch = str(uuid.uuid4())
            pg.psql(
                "INSERT INTO images_batch (id, patient_id, batch_date)"
                f" VALUES ('{batch}', 'P7', '2025-06-01');"
                "INSERT INTO images_image (id, batch_id, s3_key,"
                " s3_thumbnail_key, s3_bucket, original_filename, file_size,"
                " thumbnail_size, mime_type, width, height) VALUES ("
                f"'{uuid.uuid4()}', '{batch}', 'web/a.jpg', 'web/t_a.jpg',"
                f" '{m.bucket}', 'a.jpg', 10, 5, 'image/jpeg', 64, 48)")
            line = wait_for(lambda: next((ln for ln in status.read_text()
                                          .splitlines() if ln.startswith(
                                              "postgres held back: for")),
                                         None), 30, "the status to say so")
            assert f"pid {pid} " in line and "forgotten psql" in line, line
            assert "idle in transaction" in line, line
            assert "held back for" in m.log_text()
            assert not (m.mnt / "patients/P7").exists()
        finally:
            idle.close()
        wait_for(lambda: (m.mnt / "patients/P7/2025-06-01/a.jpg").exists(),
                 30, "the change, once the transaction ended")
        wait_for(lambda: "postgres held back: no" in status.read_text(), 30,
                 "the status to say no")
        assert "no longer held back" in m.log_text()
    finally:
        m.stop()


KEYS = "patients/filemaker-import/images/"


def check_keys_follow_paths(m, want):
    """Each row's objects are under its own path, hold its bytes, and
    nothing else is in the store. want: {(patient, date, name): bytes}."""
    import hashlib
    rows = {(r["patient_id"], r["batch_date"], r["name"]): r
            for r in m.rows()}
    assert sorted(rows) == sorted(want), rows
    keys = []
    for (p, d, n), data in want.items():
        r = rows[(p, d, n)]
        assert r["state"] == "uploaded", r
        assert r["s3_key"] == f"{KEYS}{p}/{d}/{n}", r
        assert r["s3_thumbnail_key"] == \
            f"{KEYS}{p}/{d}/{r['thumbnail_name']}", r
        assert hashlib.sha256(m.object(r["s3_key"])).hexdigest() == \
            r["sha256"] == hashlib.sha256(data).hexdigest(), (p, d, n)
        keys += [r["s3_key"], r["s3_thumbnail_key"]]
    assert m.object_keys() == sorted(keys)


def bound(m):
    """How far the mount has applied PostgreSQL's changes."""
    import sqlite3
    db = sqlite3.connect(m.data / "catalog.db", timeout=10)
    try:
        r = db.execute("SELECT pg_bound FROM sync_state").fetchone()
        return r[0] if r else 0
    finally:
        db.close()


def two_mounts(thumbfs_bin, tmp_path, s3store, pg):
    """test_shared's two mounts on one bucket and one PostgreSQL."""
    import test_shared
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return test_shared.two_mounts(thumbfs_bin, tmp_path, s3store, pg)


def test_a_row_from_another_mount_while_a_file_is_written(
        thumbfs_bin, tmp_path, s3store, clean_postgres):
    """#32, 4: while a.jpg is open for writing on mount B, a newer row for
    it from mount A arrived: B's row took it, B's spool file was dropped
    under the writer, close() returned 0 and B's content was never
    stored (B then said ENOENT for a.jpg). The name being written keeps
    B's row; B's close stores B's content, the later one, everywhere."""
    import hashlib
    pg = clean_postgres
    a, b = two_mounts(thumbfs_bin, tmp_path, s3store, pg)
    try:
        first, theirs, ours = (p.read_bytes() for p in photos()[:3])
        (b.batch() / "a.jpg").write_bytes(first)
        wait_for(lambda: (a.mnt / "patients/P1/2025-11-10/a.jpg").exists(),
                 60, "a.jpg in mount A")
        f = open(b.mnt / "patients/P1/2025-11-10/a.jpg", "wb")  # O_TRUNC
        try:
            f.write(ours[:len(ours) // 2])
            f.flush()
            (a.mnt / "patients/P1/2025-11-10/a.jpg").write_bytes(theirs)
            wait_for(lambda: pg.rows(
                "SELECT sha256 FROM images_image") == [
                    [hashlib.sha256(theirs).hexdigest()]], 60,
                "A's a.jpg in PostgreSQL")
            # B has applied what PostgreSQL had then: its bound is past
            # the transaction of A's change
            xid = int(pg.rows("SELECT max(xid) FROM thumbfs_change")[0][0])
            wait_for(lambda: bound(b) > xid, 60, "B's look at A's change")
            f.write(ours[len(ours) // 2:])
        finally:
            f.close()
        want = hashlib.sha256(ours).hexdigest()
        wait_for(lambda: pg.rows("SELECT sha256 FROM images_image") ==
                 [[want]], 60, "B's content in PostgreSQL")
        for m in (a, b):
            p = m.mnt / "patients/P1/2025-11-10/a.jpg"
            wait_for(lambda: p.exists() and hashlib.sha256(
                p.read_bytes()).hexdigest() == want, 60,
                f"B's content in {m.base.name}")
    finally:
        a.stop()
        b.stop()


def test_folder_renamed_while_its_image_uploads(thumbfs_bin, tmp_path,
                                                s3server, proxy):
    """A date renamed while a new image's upload to the old place's keys
    is under way: the upload's result is stale (the row moved, and its
    next ingest stores under the new keys), and what it stored under the
    old keys belonged to nobody and stayed in the store (found by the
    many-actors model test, seed 781983688)."""
    from conftest import proxied_mount
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        data = photos()[0].read_bytes()
        proxy.stall(1, 3, "PUT", "2025-11-10")  # the upload waits...
        d = m.batch("P4", "2025-11-10")
        (d / "a.jpg").write_bytes(data)
        wait_for(lambda: any("2025-11-10" in r[1]
                             for r in proxy.seen("PUT")), 10, "the upload")
        os.rename(d, m.mnt / "patients/P4/2025-11-12")  # ...and it moves
        wait_for(lambda: settled(m) and m.rows()[0]["state"] == "uploaded",
                 60, "the image stored at its new place")
        check_keys_follow_paths(m, {("P4", "2025-11-12", "a.jpg"): data})
    finally:
        m.stop()


def test_rewritten_in_another_format_while_it_uploads(thumbfs_bin, tmp_path,
                                                      s3server, proxy):
    """An image written as PNG and, while its upload waits, again as JPEG:
    the first upload stored a PNG thumbnail that nothing records, and the
    JPEG's took another name; the PNG thumbnail stayed in the store (found
    by the many-actors model test, seed 1519100562)."""
    import io
    from PIL import Image
    from conftest import proxied_mount
    img = Image.open(photos()[0]).convert("RGB")
    img.thumbnail((400, 300))
    png, jpeg = io.BytesIO(), io.BytesIO()
    img.save(png, "PNG")
    img.save(jpeg, "JPEG")
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        proxy.stall(1, 3, "PUT", "a.jpg")  # the first upload waits...
        d = m.batch("P5", "2025-11-10")
        (d / "a.jpg").write_bytes(png.getvalue())
        wait_for(lambda: proxy.seen("PUT"), 10, "the upload")
        (d / "a.jpg").write_bytes(jpeg.getvalue())  # ...and it is rewritten
        wait_for(lambda: settled(m) and m.rows()[0]["state"] == "uploaded"
                 and m.rows()[0]["sha256"] == hashlib.sha256(
                     jpeg.getvalue()).hexdigest(), 60, "the JPEG stored")
        check_keys_follow_paths(m, {("P5", "2025-11-10", "a.jpg"):
                                    jpeg.getvalue()})
        assert m.rows()[0]["thumbnail_name"] == "a_thumb.jpg"
    finally:
        m.stop()


def test_removed_and_written_again_before_its_tombstone_syncs(
        thumbfs_bin, tmp_path, s3store, clean_postgres):
    """B.JPG removed and written again while its removal waits to reach
    PostgreSQL: the new image may not take the thumbnail name whose delete
    waits, so it takes another; once the tombstone arrived, the old
    thumbnail was kept as 'the name in use again' and belonged to nobody
    (found by the many-actors model test, seed 1315069726)."""
    import psycopg2
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    try:
        old, new = photos()[0].read_bytes(), photos()[1].read_bytes()
        d = m.batch("P6", "2025-11-10")
        (d / "B.JPG").write_bytes(old)
        wait_for(lambda: pg.rows("SELECT count(*) FROM images_image") ==
                 [["1"]], 60, "B.JPG in PostgreSQL")
        hold = psycopg2.connect(pg.dsn)
        try:
            hold.cursor().execute(
                "LOCK TABLE thumbfs_tombstone IN ACCESS EXCLUSIVE MODE")
            os.unlink(d / "B.JPG")
            wait_for(lambda: waiting_on_lock(pg, "%thumbfs_tombstone%"), 60,
                     "the removal's sync to wait")
            (d / "B.JPG").write_bytes(new)
            wait_for(lambda: m.rows()[0]["state"] == "uploaded", 60,
                     "the new B.JPG stored")
        finally:
            hold.close()
        wait_for(lambda: settled(m) and pg.rows(
            "SELECT sha256 FROM images_image") == [
                [hashlib.sha256(new).hexdigest()]], 60, "all settled")
        r = m.rows()[0]
        assert r["thumbnail_name"] != "B_thumb.jpg", r
        assert sorted(m.object_keys()) == sorted(
            [r["s3_key"], r["s3_thumbnail_key"]])
    finally:
        m.stop()


def colour_of(data):
    """The mean colour of an image's bytes."""
    import io
    from PIL import Image, ImageStat
    return tuple(round(c) for c in
                 ImageStat.Stat(Image.open(io.BytesIO(data)).convert(
                     "RGB")).mean)


def solid(colour, size):
    import io
    from PIL import Image
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG", quality=95)
    return out.getvalue()


def write_at_once(jobs):
    """Write each (path, bytes) from its own thread, all at one moment."""
    import threading
    go = threading.Barrier(len(jobs))

    def one(path, data):
        go.wait()
        path.write_bytes(data)
    ts = [threading.Thread(target=one, args=j) for j in jobs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def test_two_mounts_one_thumbnail_name(thumbfs_bin, tmp_path, s3store,
                                       clean_postgres):
    """#32, 2: a.jpg on mount A and a.JPG on mount B, written into one
    date at the same moment, both claimed a_thumb.jpg in their own
    catalogs: the later PUT won, both mounts listed a_thumb.jpg twice and
    one image showed the other's picture; removing a.jpg deleted the
    thumbnail a.JPG still used. The name is claimed in PostgreSQL, where
    both mounts see it: each image gets its own thumbnail."""
    pg = clean_postgres
    a, b = two_mounts(thumbfs_bin, tmp_path, s3store, pg)
    red, blue = solid((220, 20, 20), (640, 480)), solid((20, 20, 220),
                                                        (480, 640))
    try:
        write_at_once([(a.batch() / "a.jpg", red),
                       (b.batch() / "a.JPG", blue)])
        for m in (a, b):
            wait_for(lambda: settled(m) and len(m.rows(
                "state = 'uploaded' AND s3_thumbnail_key != ''")) == 2,
                90, f"both images stored, as {m.base.name} has them")
        rows = {r[0]: r[1:] for r in pg.rows(
            "SELECT original_filename, s3_thumbnail_key, width, height"
            " FROM images_image")}
        assert sorted(rows) == ["a.JPG", "a.jpg"], rows
        assert rows["a.jpg"][0] != rows["a.JPG"][0], rows
        assert rows["a.jpg"][1:] == ["640", "480"], rows
        assert rows["a.JPG"][1:] == ["480", "640"], rows
        mine = {"a.jpg": red, "a.JPG": blue}
        for m in (a, b):
            names = test_shared.listing(m)
            assert len(names) == len(set(names)) == 4, (m.base.name, names)
            for r in m.rows():
                got = colour_of(m.object(r["s3_thumbnail_key"]))
                want = colour_of(mine[r["name"]])
                assert max(abs(x - y) for x, y in zip(got, want)) < 12, \
                    (m.base.name, r["name"], got, want)
        # a.jpg goes: a.JPG keeps its thumbnail
        os.unlink(a.mnt / "patients/P1/2025-11-10/a.jpg")
        for m in (a, b):
            wait_for(lambda: settled(m) and [r["name"] for r in m.rows()]
                     == ["a.JPG"], 90, f"a.jpg gone from {m.base.name}")
        kept = rows["a.JPG"][0]
        assert colour_of(a.object(kept))[2] > 150
        d = b.mnt / "patients/P1/2025-11-10"
        thumb = kept.rsplit("/", 1)[1]
        assert sorted(os.listdir(d)) == ["a.JPG", thumb]
        assert colour_of((d / thumb).read_bytes())[2] > 150
    finally:
        a.stop()
        b.stop()


FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def test_one_name_written_on_two_mounts_with_clocks_apart(
        thumbfs_bin, tmp_path, clean_postgres):
    """#32, 7: x.jpg written on mount A, then on mount B, whose clock is
    ten minutes behind: the store kept B's bytes (the last PUT) while
    every row kept A's metadata (the larger updated_at), so the row's
    sha256 was not the stored object's. Writes of one key are ordered
    across mounts (its lock and stamp in PostgreSQL): the later write
    wins the bytes and the row alike."""
    import hashlib
    if not os.path.exists(FAKETIME):
        pytest.skip("libfaketime is not installed (Debian's faketime)")
    if "tsan" in str(thumbfs_bin):
        pytest.skip("libfaketime's clock and ThreadSanitizer's "
                    "interceptors do not mix")
    pg = clean_postgres
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Mount(thumbfs_bin, tmp_path / "a", "file")
    b = Mount(thumbfs_bin, tmp_path / "b", "file")
    b.config["store"]["url"] = a.config["store"]["url"]
    for m in (a, b):
        m.config["postgres"] = {"dsn": pg.dsn}
    b.env = {"LD_PRELOAD": FAKETIME, "FAKETIME": "-600",
             "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
             ":verify_asan_link_order=0"}
    a.start()
    b.start()
    try:
        first, later = photos()[0].read_bytes(), photos()[1].read_bytes()
        (a.batch() / "x.jpg").write_bytes(first)
        wait_for(lambda: settled(a) and a.rows("state = 'uploaded'"), 60,
                 "A's x.jpg stored")
        (b.batch() / "x.jpg").write_bytes(later)
        want = hashlib.sha256(later).hexdigest()
        wait_for(lambda: pg.rows("SELECT sha256 FROM images_image") ==
                 [[want]] and settled(a) and settled(b), 60,
                 "B's x.jpg, the later write, in PostgreSQL")
        key = pg.rows("SELECT s3_key FROM images_image")[0][0]
        assert hashlib.sha256(a.object(key)).hexdigest() == want
        for m in (a, b):
            p = m.mnt / "patients/P1/2025-11-10/x.jpg"
            wait_for(lambda: hashlib.sha256(p.read_bytes()).hexdigest()
                     == want, 60, f"B's bytes read on {m.base.name}")
            assert [r["sha256"] for r in m.rows()] == [want]
    finally:
        a.stop()
        b.stop()


def test_a_stale_upload_drops_what_it_stored(thumbfs_bin, tmp_path, s3server,
                                             proxy):
    """The many-actors model test's find (seed 7038): an upload stored the
    original, failed on the thumbnail and waited to try again; meanwhile
    its folder was renamed and the image written again there. The waiting
    job was stale (its newer one stores the new content) and, as this
    session first made it, ended without a word: the original it had
    stored under the old place's key was left with no row. A job that
    ends with nothing to record drops what it stored before."""
    from conftest import proxied_mount
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy, timeout_s="2")
    m.start()
    try:
        d = m.batch("P1", "2025-11-10")
        # the thumbnail's PUT is answered at a trickle until the store's
        # deadline (and never reaches the store): the job is under way
        # while the folder is renamed and the image written again, then
        # fails and waits to try again
        proxy.trickle(1, 8, "PUT", "_thumb")
        (d / "a.jpg").write_bytes(photos()[0].read_bytes())
        wait_for(lambda: any("2025-11-10/a_thumb" in r[1]
                             for r in proxy.seen("PUT")), 30,
                 "the thumbnail's PUT under way")
        os.rename(d, m.mnt / "patients/P1/2025-11-12")
        new = photos()[1].read_bytes()
        (m.mnt / "patients/P1/2025-11-12/a.jpg").write_bytes(new)
        wait_for(lambda: "retry in" in m.log_text(), 30, "the timeout")
        wait_for(lambda: settled(m), 60, "the jobs")
        check_keys_follow_paths(m, {("P1", "2025-11-12", "a.jpg"): new})
    finally:
        m.stop()


def test_removed_and_written_again_while_its_upload_runs(
        thumbfs_bin, tmp_path, s3server, proxy):
    """The many-actors model test's find (seeds 9017, 8032 and the
    previous session's 1295656933): a.png-like content written as c d.jpg
    (a PNG thumbnail), then removed and written again as a JPEG while its
    upload was under way: the upload ended with its row gone and a new
    image at its path, left the original's key to the new one, and its PNG
    thumbnail stayed in the store with no row. The thumbnail goes unless
    the new image holds its name."""
    import io
    from PIL import Image
    from conftest import proxied_mount
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        d = m.batch("P1", "2025-11-10")
        png = io.BytesIO()
        Image.open(photos()[0]).convert("RGB").resize((400, 300)).save(
            png, "PNG")
        jpeg = photos()[1].read_bytes()
        proxy.stall(1, 3, "PUT", "_thumb.png")  # the upload under way
        (d / "c d.jpg").write_bytes(png.getvalue())
        wait_for(lambda: any("_thumb.png" in r[1]
                             for r in proxy.seen("PUT")), 30,
                 "the PNG thumbnail's PUT under way")
        os.unlink(d / "c d.jpg")
        (d / "c d.jpg").write_bytes(jpeg)
        wait_for(lambda: settled(m) and m.rows("state = 'uploaded'"), 60,
                 "the jobs")
        check_keys_follow_paths(m, {("P1", "2025-11-10", "c d.jpg"): jpeg})
    finally:
        m.stop()


def test_removed_and_written_again_in_another_format(thumbfs_bin, tmp_path,
                                                     s3server, proxy,
                                                     clean_postgres):
    """The many-actors model test's find (seed 31021): 'c d.jpg' (a JPEG)
    removed, and written again at once with PNG bytes. Its tombstone
    reached PostgreSQL while the new image's ingest waited for a runner,
    and the old thumbnail's key was kept for the new image of the name (it
    had not chosen a thumbnail name yet, and the same format would take
    it); the new one took 'c d_thumb.png', and 'c d_thumb.jpg' stayed in
    the store, named by nothing."""
    import io
    from PIL import Image
    from conftest import proxied_mount
    pg = clean_postgres
    img = Image.open(photos()[0]).convert("RGB")
    img.thumbnail((400, 300))
    png, jpeg = io.BytesIO(), io.BytesIO()
    img.save(png, "PNG")
    img.save(jpeg, "JPEG")
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy)
    m.config["postgres"] = {"dsn": pg.dsn}
    m.start()
    try:
        d = m.batch("P5", "2025-11-10")
        (d / "c d.jpg").write_bytes(jpeg.getvalue())
        m.wait_uploaded("c d.jpg")
        wait_for(lambda: settled(m) and pg.rows(
            "SELECT 1 FROM images_image"), 60, "the row in PostgreSQL")
        # both runners busy with uploads that stall
        proxy.stall(2, 4, "PUT", "busy")
        for n in ("busy1.jpg", "busy2.jpg"):
            (d / n).write_bytes(jpeg.getvalue())
        wait_for(lambda: len(proxy.seen("PUT")) >= 2 + 2, 10,
                 "the runners busy")
        os.unlink(d / "c d.jpg")
        (d / "c d.jpg").write_bytes(png.getvalue())
        wait_for(lambda: pg.rows("SELECT 1 FROM thumbfs_tombstone"), 10,
                 "the tombstone, while the new ingest waits")
        want = {("P5", "2025-11-10", n): jpeg.getvalue()
                for n in ("busy1.jpg", "busy2.jpg")}
        want[("P5", "2025-11-10", "c d.jpg")] = png.getvalue()
        wait_for(lambda: settled(m) and len(m.rows(
            "state = 'uploaded'")) == 3, 60, "all stored")
        assert m.rows("name = 'c d.jpg'")[0]["thumbnail_name"] == \
            "c d_thumb.png"
        check_keys_follow_paths(m, want)
    finally:
        m.stop()
