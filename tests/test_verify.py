"""thumbfs verify: an archive damaged in each way the issue names (an
object deleted, a byte flipped, two thumbnails swapped, an orphan left, a
PostgreSQL row dropped) is reported exactly so, on a file:// store and on
S3; a clean one exits 0."""
import json
import shutil
import subprocess

import pytest

from conftest import Mount, pg_mount, photos, wait_for

PREFIX = "patients/filemaker-import/images/P1/2025-11-10/"


def verify(m, *args):
    r = subprocess.run([str(m.binary), "verify", str(m.conf), *args],
                       capture_output=True, text=True, timeout=600)
    for mark in ("AddressSanitizer", "runtime error:", "ThreadSanitizer"):
        assert mark not in r.stderr, r.stderr
    return r


def findings(r):
    """(kind, key or path) of each finding of a --json run."""
    out = []
    for line in r.stdout.splitlines():
        o = json.loads(line)
        if "kind" in o:
            out.append((o["kind"], o["key"] or o["path"]))
    return sorted(out)


def archive(m, n):
    """n different photographs uploaded as p0.jpg, p1.jpg, ...; the
    sources."""
    srcs = [p for p in photos() if p.stat().st_size < 3 << 20][:n]
    d = m.batch()
    for i, s in enumerate(srcs):
        shutil.copy(s, d / f"p{i}.jpg")
    for i in range(len(srcs)):
        m.wait_uploaded(f"p{i}.jpg")
    return srcs


def put(m, key, data):
    if m.store == "s3":
        m.s3.client().put_object(Bucket=m.bucket, Key=key, Body=data)
    else:
        p = m.base / "store" / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def delete(m, key):
    if m.store == "s3":
        m.s3.client().delete_object(Bucket=m.bucket, Key=key)
    else:
        (m.base / "store" / key).unlink()


@pytest.mark.parametrize("store", ["file", "s3"])
def test_verify_finds_each_damage(thumbfs_bin, tmp_path, request, store):
    s3 = request.getfixturevalue("s3store") if store == "s3" else None
    m = Mount(thumbfs_bin, tmp_path, store, s3).start()
    try:
        archive(m, 5)
        r = verify(m, "--content")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "verify: clean" in r.stdout
        assert "verify: 5 rows, 10 objects" in r.stdout

        # the damage, one of each kind
        delete(m, PREFIX + "p0.jpg")
        delete(m, PREFIX + "p1_thumb.jpg")
        data = m.object(PREFIX + "p2.jpg")
        put(m, PREFIX + "p2.jpg", data[:100] + bytes([data[100] ^ 1]) +
            data[101:])
        t3, t4 = m.object(PREFIX + "p3_thumb.jpg"), \
            m.object(PREFIX + "p4_thumb.jpg")
        put(m, PREFIX + "p3_thumb.jpg", t4)
        put(m, PREFIX + "p4_thumb.jpg", t3)
        put(m, PREFIX + "left-behind.jpg", b"an orphan")
    finally:
        m.stop()  # verify works unmounted too

    r = verify(m, "--json")
    assert r.returncode == 1
    want = [("missing-original", PREFIX + "p0.jpg"),
            ("missing-thumbnail", PREFIX + "p1_thumb.jpg"),
            ("orphan", PREFIX + "left-behind.jpg")]
    assert findings(r) == sorted(want), r.stdout
    r = verify(m, "--json", "--content")
    assert findings(r) == sorted(want + [
        ("content-mismatch", PREFIX + "p2.jpg"),
        ("thumbnail-wrong", PREFIX + "p3_thumb.jpg"),
        ("thumbnail-wrong", PREFIX + "p4_thumb.jpg")]), r.stdout
    summary = json.loads(r.stdout.splitlines()[-1])["summary"]
    assert summary["orphan"] == 1 and summary["rows"] == 5
    # the human form: a line each, and the table
    r = verify(m, "--content")
    assert r.returncode == 1
    assert "missing-original   patients/P1/2025-11-10/p0.jpg" in r.stdout
    assert "  thumbnail-wrong    2" in r.stdout
    assert "the archive does not keep its rule" in r.stdout
    # one patient's date only
    r = verify(m, "patients/P2")
    assert r.returncode == 0 and "verify: 0 rows, 0 objects" in r.stdout


def test_verify_pages_past_a_thousand_keys(thumbfs_bin, tmp_path, rgw):
    """ListObjectsV2 is paged: 1,200 objects under the prefix are all
    seen (RGW pages at 1,000, as S3 does)."""
    m = Mount(thumbfs_bin, tmp_path, "s3", rgw)
    m.write_config()
    c = rgw.client()
    for i in range(1200):
        c.put_object(Bucket=m.bucket, Key=f"{PREFIX}orphan{i:04}.bin",
                     Body=b"x")
    r = verify(m, "--json")
    assert r.returncode == 1
    summary = json.loads(r.stdout.splitlines()[-1])["summary"]
    assert summary["orphan"] == 1200 and summary["objects"] == 1200


def test_verify_compares_postgresql(thumbfs_bin, tmp_path, s3store,
                                    clean_postgres):
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    try:
        d = m.batch()
        for i, s in enumerate(photos()[:2]):
            shutil.copy(s, d / f"q{i}.jpg")
        wait_for(lambda: len(pg.rows("SELECT 1 FROM images_image")) == 2,
                 60, "the rows in PostgreSQL")
    finally:
        m.stop()
    r = verify(m)
    assert r.returncode == 0, r.stdout + r.stderr
    pg.psql("DELETE FROM images_image WHERE original_filename = 'q1.jpg'")
    r = verify(m, "--json")
    assert findings(r) == [("postgres-missing",
                            "patients/P1/2025-11-10/q1.jpg")], r.stdout
    r = verify(m, "--repair")  # sent to PostgreSQL again
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(pg.rows("SELECT 1 FROM images_image")) == 2


@pytest.mark.parametrize("mounted", [False, True], ids=["alone", "mounted"])
@pytest.mark.parametrize("store", ["file", "s3"])
def test_verify_repair_fixes_what_it_can(thumbfs_bin, tmp_path, request,
                                         store, mounted):
    """--repair: a lost original is uploaded again from the spool, lost
    and swapped thumbnails are made again from the stored originals (by
    this process, or by the mount's runners beside a mount); orphans are
    listed, and deleted only with --delete-orphans, each a tombstone and
    an audit line; then the archive verifies clean."""
    import sqlite3
    s3 = request.getfixturevalue("s3store") if store == "s3" else None
    m = Mount(thumbfs_bin, tmp_path, store, s3)
    m.config["audit"] = {"file": str(tmp_path / "audit.log")}
    m.start()
    try:
        srcs = archive(m, 5)
        want = {i: m.object(PREFIX + f"p{i}_thumb.jpg") for i in range(4)}
        delete(m, PREFIX + "p0.jpg")
        data = m.object(PREFIX + "p4.jpg")  # a byte flipped
        put(m, PREFIX + "p4.jpg", data[:50] + bytes([data[50] ^ 4]) +
            data[51:])
        delete(m, PREFIX + "p1_thumb.jpg")
        put(m, PREFIX + "p2_thumb.jpg", want[3])
        put(m, PREFIX + "p3_thumb.jpg", want[2])
        put(m, PREFIX + "left-behind.jpg", b"an orphan")
        if not mounted:
            m.stop()
        r = verify(m, "--content", "--repair")
        assert r.returncode == 1, r.stdout + r.stderr  # the orphan stays
        assert f"repair: would delete {PREFIX}left-behind.jpg" in r.stdout
        assert ("the mount's runners do them" in r.stdout) == mounted
        assert m.object(PREFIX + "p0.jpg") == srcs[0].read_bytes()
        assert m.object(PREFIX + "p4.jpg") == srcs[4].read_bytes()
        for i in (1, 2, 3):
            assert m.object(PREFIX + f"p{i}_thumb.jpg") == want[i], i
        r = verify(m, "--content", "--repair", "--delete-orphans")
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"repair: deleted {PREFIX}left-behind.jpg" in r.stdout
        assert PREFIX + "left-behind.jpg" not in m.object_keys(PREFIX)
        assert "verify: clean" in r.stdout
        db = sqlite3.connect(m.data / "catalog.db")
        assert db.execute("SELECT deleted_by FROM tombstones WHERE s3_key"
                          " = ?", (PREFIX + "left-behind.jpg",)
                          ).fetchall() == [("thumbfs verify",)]
        db.close()
        audit = (tmp_path / "audit.log").read_text()
        assert '"op": "delete-orphan"' in audit.replace('":"', '": "')
    finally:
        if m.proc:
            m.stop()


def test_verify_keys_follow_paths(thumbfs_bin, tmp_path):
    """#32: each row's keys are its path's under [store] key_template, and
    no key is named by two rows. A row left under the keys of a folder it
    no longer is in (what two renames in a row did) is found, and
    --repair moves its objects to its path's keys; a key two rows name is
    found."""
    import sqlite3
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        archive(m, 2)
    finally:
        m.stop()
    old = "patients/filemaker-import/images/N1/2025-11-12/"
    for n in ("p0.jpg", "p0_thumb.jpg"):
        put(m, old + n, m.object(PREFIX + n))
        delete(m, PREFIX + n)
    db = sqlite3.connect(m.data / "catalog.db")
    db.execute("UPDATE images SET s3_key = ?, s3_thumbnail_key = ? WHERE"
               " name = 'p0.jpg'", (old + "p0.jpg", old + "p0_thumb.jpg"))
    db.commit()
    r = verify(m, "--json")
    assert r.returncode == 1
    assert findings(r) == [("key-not-path", old + "p0.jpg")], r.stdout
    r = verify(m, "--repair")
    assert "verify: clean" in verify(m, "--content").stdout
    assert m.object_keys() == sorted(PREFIX + n for n in (
        "p0.jpg", "p0_thumb.jpg", "p1.jpg", "p1_thumb.jpg"))
    # a key two rows name: the second row's thumbnail is the first's
    db.execute("UPDATE images SET s3_thumbnail_key = ? WHERE name ="
               " 'p1.jpg'", (PREFIX + "p0_thumb.jpg",))
    db.commit()
    db.close()
    r = verify(m, "--json")
    assert findings(r) == sorted([
        ("shared-key", PREFIX + "p0_thumb.jpg"),
        ("key-not-path", PREFIX + "p1.jpg"),
        ("orphan", PREFIX + "p1_thumb.jpg")]), r.stdout
