"""Sync by change: what the web app and other mounts change in PostgreSQL
reaches a mount through thumbfs_change, from where the mount was, without
reading every row again. A mount reads every row only when it never has,
or when it was away longer than the changes are kept."""
import os
import time
import uuid

from conftest import pg_mount, wait_for

BATCH = "11111111-1111-4111-8111-111111111111"
FULL = "read every row of PostgreSQL"


def listing(m, patient="P9", date="2025-06-01"):
    d = m.mnt / "patients" / patient / date
    return sorted(os.listdir(d)) if d.exists() else []


def app_insert(pg, bucket, name, batch=BATCH, patient="P9",
               date="2025-06-01"):
    """A row as the web app writes it (with its thumbnail)."""
    pg.psql(
        "INSERT INTO images_batch (id, patient_id, batch_date) VALUES "
        f"('{batch}', '{patient}', '{date}') ON CONFLICT DO NOTHING;"
        "INSERT INTO images_image (id, batch_id, s3_key, s3_thumbnail_key,"
        " s3_bucket, original_filename, file_size, thumbnail_size,"
        " mime_type, width, height) VALUES ("
        f"'{uuid.uuid4()}', '{batch}', 'web/{name}', 'web/t_{name}',"
        f" '{bucket}', '{name}', 10, 5, 'image/jpeg', 64, 48)")


def seen_then_away(thumbfs_bin, tmp_path, s3store, pg):
    """A mount that saw a.jpg and b.jpg and stopped; while it is away the
    app deletes a.jpg and adds c.jpg. The mount, stopped."""
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    try:
        app_insert(pg, m.bucket, "a.jpg")
        app_insert(pg, m.bucket, "b.jpg")
        wait_for(lambda: "b.jpg" in listing(m), 60, "the inserts")
    finally:
        m.stop()
    pg.psql("DELETE FROM images_image WHERE original_filename = 'a.jpg'")
    app_insert(pg, m.bucket, "c.jpg")
    return m


def full_reads(m):
    return m.log_text().count(FULL)


def test_the_app_s_changes_arrive_without_a_full_read(
        thumbfs_bin, tmp_path, s3store, clean_postgres):
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    try:
        wait_for(lambda: full_reads(m) == 1, 60, "the first read")
        app_insert(pg, m.bucket, "a.jpg")
        app_insert(pg, m.bucket, "b.jpg")
        wait_for(lambda: listing(m) == ["a.jpg", "a_thumb.jpg", "b.jpg",
                                        "b_thumb.jpg"], 60, "the inserts")
        # in the store only: a listing gives the rows' sizes and times,
        # as stat() does once the kernel's second is over
        time.sleep(1.5)
        d = m.mnt / "patients/P9/2025-06-01"
        listed = {e.name: e.stat(follow_symlinks=False)
                  for e in os.scandir(d)}
        assert {n: st.st_size for n, st in listed.items()} == {
            "a.jpg": 10, "a_thumb.jpg": 5, "b.jpg": 10, "b_thumb.jpg": 5}
        time.sleep(1.5)
        for n, st in listed.items():
            now = os.lstat(d / n)
            assert (st.st_mode, st.st_size, st.st_uid, st.st_mtime_ns) == \
                (now.st_mode, now.st_size, now.st_uid, now.st_mtime_ns), n
        # renamed by the app: the old name goes, the new one comes
        pg.psql("UPDATE images_image SET original_filename = 'c.jpg',"
                " updated_at = now() WHERE original_filename = 'b.jpg'")
        wait_for(lambda: listing(m) == ["a.jpg", "a_thumb.jpg", "c.jpg",
                                        "c_thumb.jpg"], 60, "the rename")
        # a delete, which used to make every mount read every row
        pg.psql("DELETE FROM images_image WHERE original_filename = 'a.jpg'")
        wait_for(lambda: listing(m) == ["c.jpg", "c_thumb.jpg"], 60,
                 "the delete")
        # the batch moved to another patient: its images go with it
        pg.psql("UPDATE images_batch SET patient_id = 'P10'")
        wait_for(lambda: listing(m, "P10") == ["c.jpg", "c_thumb.jpg"] and
                 listing(m) == [], 60, "the batch's move")
        # the batch deleted, its images with it
        pg.psql("DELETE FROM images_batch")
        wait_for(lambda: listing(m, "P10") == [], 60, "the batch's delete")
        # a lost connection: what came meanwhile arrives after it
        pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = 'thumbfs' AND pid != pg_backend_pid()")
        app_insert(pg, m.bucket, "d.jpg")
        wait_for(lambda: listing(m) == ["d.jpg", "d_thumb.jpg"], 60,
                 "the insert after a lost connection")
        assert full_reads(m) == 1, m.log_text()
    finally:
        m.stop()


def test_a_mount_catches_up_from_where_it_was(thumbfs_bin, tmp_path,
                                               s3store, clean_postgres):
    pg = clean_postgres
    m = seen_then_away(thumbfs_bin, tmp_path, s3store, pg)
    before = len(m.log_text())
    m.start()
    try:
        wait_for(lambda: listing(m) == ["b.jpg", "b_thumb.jpg", "c.jpg",
                                        "c_thumb.jpg"], 60, "the catch-up")
        # (logged once the bound is stored, after the rows are listed)
        wait_for(lambda: "caught up with" in m.log_text()[before:], 10,
                 "the catch-up's line")
        log = m.log_text()[before:]
        assert FULL not in log, log
    finally:
        m.stop()


def test_away_longer_than_the_changes_are_kept_reads_everything(
        thumbfs_bin, tmp_path, s3store, clean_postgres):
    pg = clean_postgres
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = pg_mount(thumbfs_bin, tmp_path / "a", s3store, pg).start()
    try:
        app_insert(pg, a.bucket, "a.jpg")
        wait_for(lambda: "a.jpg" in listing(a), 60, "the insert")
    finally:
        a.stop()
    pg.psql("DELETE FROM images_image WHERE original_filename = 'a.jpg'")
    app_insert(pg, a.bucket, "b.jpg")
    # those changes age past what another mount keeps, and it prunes them
    pg.psql("UPDATE thumbfs_change SET at = now() - interval '3 days'")
    b = pg_mount(thumbfs_bin, tmp_path / "b", s3store, pg,
                 changes_kept_days="2").start()
    try:
        wait_for(lambda: "pruned" in b.log_text(), 60, "the prune")
    finally:
        b.stop()
    assert pg.rows("SELECT count(*) FROM thumbfs_change WHERE at < now() -"
                   " interval '2 days'") == [["0"]]
    before = len(a.log_text())
    a.start()
    try:
        wait_for(lambda: listing(a) == ["b.jpg", "b_thumb.jpg"], 60,
                 "the full read")
        log = a.log_text()[before:]
        assert "those up to" in log and FULL in log, log
    finally:
        a.stop()


def test_a_database_behind_the_catalog_is_read_again(thumbfs_bin, tmp_path,
                                                     s3store, clean_postgres):
    """Transactions only go forward; a server whose are behind the bound
    the catalog reached is another database under the same dsn (restored
    from a dump): its changes would all look old, so every row is read."""
    import sqlite3
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    try:
        wait_for(lambda: "caught up with" in m.log_text(), 60, "a look")
    finally:
        m.stop()
    db = sqlite3.connect(m.data / "catalog.db")
    db.execute("UPDATE sync_state SET pg_bound = pg_bound + 1000000000")
    db.commit()
    db.close()
    app_insert(pg, m.bucket, "a.jpg")
    before = len(m.log_text())
    m.start()
    try:
        wait_for(lambda: listing(m) == ["a.jpg", "a_thumb.jpg"], 60,
                 "the full read")
        log = m.log_text()[before:]
        assert "another or a restored database" in log and FULL in log, log
    finally:
        m.stop()


def test_changes_pruned_while_being_read_are_not_skipped(
        thumbfs_bin, tmp_path, s3store, clean_postgres):
    """#32, 6: a mount read the horizon once and the changes in later
    statements; a prune by another mount committed in between deleted
    changes it had not read, and its bound moved past them anyway. Here
    the prune waits on a lock the test holds on thumbfs_change until the
    mount's read of the changes waits on it too."""
    import psycopg2
    pg = clean_postgres
    m = seen_then_away(thumbfs_bin, tmp_path, s3store, pg)
    # both changes old enough for another mount's prune
    pg.psql("UPDATE thumbfs_change SET at = now() - interval '3 days'")
    other = psycopg2.connect(pg.dsn)
    before = len(m.log_text())
    try:
        cur = other.cursor()
        cur.execute("LOCK TABLE thumbfs_change IN ACCESS EXCLUSIVE MODE")
        m.start()
        # the mount has read the horizon and waits to read the changes
        wait_for(lambda: pg.rows(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type ="
            " 'Lock' AND query LIKE '%FROM thumbfs_change c%'") == [["1"]],
            60, "the mount's read of the changes")
        # another mount's prune, as db_pg_prune makes it
        cur.execute(
            "WITH gone AS (DELETE FROM thumbfs_change WHERE at < now() -"
            " interval '2 days' RETURNING xid), top AS (SELECT max(xid) AS"
            " xid FROM gone) INSERT INTO thumbfs_change_horizon (xid)"
            " SELECT xid FROM top WHERE xid IS NOT NULL ON CONFLICT (one)"
            " DO UPDATE SET xid = greatest(thumbfs_change_horizon.xid,"
            " EXCLUDED.xid)")
        other.commit()
    except BaseException:
        other.close()
        m.stop()
        raise
    other.close()
    try:
        wait_for(lambda: listing(m) == ["b.jpg", "b_thumb.jpg", "c.jpg",
                                        "c_thumb.jpg"], 60,
                 "the changes, or a full read for those pruned")
        log = m.log_text()[before:]
        assert FULL in log, log
    finally:
        m.stop()
