"""The store's faults, on the suite's own proxy in front of s3rver: error
answers for a while, connections dropped mid-body, requests stalled past
the timeout, the server gone for a minute. Each time every image ends up
in the store once under its key, with its thumbnail, and the catalog says
uploaded - with no remount."""
import base64
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import time

from PIL import Image

from conftest import (S3_KEY, S3_SECRET, Mount, S3Server, photos,
                      proxied_mount, wait_for)

PREFIX = "patients/filemaker-import/images/P1/2025-11-10/"






def check_all_stored(m, names):
    rows = {r["name"]: r for r in m.rows()}
    assert sorted(rows) == sorted(names)
    keys = m.object_keys(PREFIX)
    want = []
    for name in names:
        r = rows[name]
        assert r["state"] == "uploaded" and r["width"] > 0, r
        data = (m.mnt / "patients/P1/2025-11-10" / name).read_bytes()
        assert hashlib.sha256(m.object(r["s3_key"])).hexdigest() == \
            r["sha256"] == hashlib.sha256(data).hexdigest()
        thumb = Image.open(io.BytesIO(m.object(r["s3_thumbnail_key"])))
        assert max(thumb.size) == 300 or max(thumb.size) == max(
            r["width"], r["height"])
        want += [r["s3_key"], r["s3_thumbnail_key"]]
    assert keys == sorted(want)  # each once, nothing else


def hold_catalog(m, seconds):
    """Hold the mount's catalog locked, as an admin's sqlite3 shell can,
    for seconds (past its 5 s busy timeout)."""
    import sqlite3
    db = sqlite3.connect(m.data / "catalog.db", timeout=10,
                         isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    time.sleep(seconds)
    db.execute("COMMIT")
    db.close()


def write_photos(d, n, first=0):
    names = []
    for i, src in enumerate(photos()[first:first + n]):
        name = f"p{first + i:02}.jpg"
        shutil.copy(src, d / name)
        names.append(name)
    return names


def ingest_survives(m, n, *marks):
    """n photographs written and stored right despite the proxy's faults,
    which the log shows (one of marks)."""
    names = write_photos(m.batch(), n)
    for name in names:
        m.wait_uploaded(name, 120)
    log = m.log_text()
    assert any(mark in log for mark in marks), log
    check_all_stored(m, names)
    return names


def test_slowdown_and_503_for_a_while(thumbfs_bin, tmp_path, s3server,
                                      proxy):
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        proxy.fail(6, 503, "SlowDown")
        proxy.fail(3, 500, "InternalError")
        ingest_survives(m, 5, "SlowDown")
        assert "InternalError" in m.log_text()
    finally:
        m.stop()


def test_connection_dropped_mid_body(thumbfs_bin, tmp_path, s3server, proxy):
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        proxy.drop(5)
        ingest_survives(m, 5, "retry in")
    finally:
        m.stop()


def test_stalled_past_the_timeout(thumbfs_bin, tmp_path, s3server, proxy):
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy,
                      timeout_s="2")
    m.start()
    try:
        proxy.stall(2, 15)  # curl measures speed over the last 5 s
        ingest_survives(m, 3, "Timeout was reached")
    finally:
        m.stop()


def test_an_answer_that_trickles_meets_a_deadline(thumbfs_bin, tmp_path,
                                                  s3server, proxy):
    """A server that answers a byte each half second defeats curl's
    low-speed limit; every request has a total deadline, so the upload is
    tried again and stored (here within seconds, not the 100 s the answer
    would trickle for)."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy, timeout_s="2")
    m.start()
    try:
        proxy.trickle(1, 100, "PUT")
        names = write_photos(m.batch(), 1, first=6)
        m.wait_uploaded(names[0], 60)
        assert "timed out" in m.log_text().lower() or \
            "timeout" in m.log_text().lower(), m.log_text()
        check_all_stored(m, names)
    finally:
        m.stop()


def test_server_gone_for_a_minute(thumbfs_bin, tmp_path):
    """s3rver stopped for 60 s in the middle of an ingest of 200 files and
    started again: all 200 are uploaded afterwards, with no remount."""
    srv = S3Server(tmp_path / "s3")
    srv.start()
    (tmp_path / "m").mkdir()
    m = Mount(thumbfs_bin, tmp_path / "m", "s3", srv)
    m.start()
    try:
        d = m.batch()
        names = []
        for i in range(200):
            img = Image.new("RGB", (320 + i, 240), (i, 255 - i, 90))
            name = f"scan_{i:03}.png"
            img.save(d / name)
            names.append(name)
            if i == 20:
                wait_for(lambda: m.rows("state = 'uploaded'"), 30,
                         "a first upload")
                srv.stop()
                stopped = time.monotonic()
        assert len(m.rows("state = 'uploaded'")) < 200
        time.sleep(max(0.0, 60 - (time.monotonic() - stopped)))
        status = (m.mnt / ".thumbfs/status").read_text()
        assert "retrying" in status or "failed" in status, status
        srv.start()
        wait_for(lambda: len(m.rows("state = 'uploaded'")) == 200, 180,
                 "200 uploads")
        assert sorted(r["name"] for r in m.rows()) == names
        keys = m.object_keys(PREFIX)
        assert len(keys) == 400 and len(set(keys)) == 400
    finally:
        m.stop()
        srv.stop()


def test_refused_credentials_wait_for_sighup(thumbfs_bin, tmp_path,
                                             s3server, proxy):
    """403 InvalidAccessKeyId: logged once, shown in the status file, the
    uploads wait; new credentials in the config and SIGHUP let them go."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        d = m.batch()
        names = write_photos(d, 1)
        m.wait_uploaded(names[0])
        proxy.deny_key(S3_KEY)
        names += write_photos(d, 3, first=1)
        wait_for(lambda: "the store refused" in m.log_text(), 30,
                 "the refusal")
        time.sleep(3)  # a few rounds of the job runners
        log = m.log_text()
        assert log.count("the store refused") == 1, log
        assert "InvalidAccessKeyId" in log and "SIGHUP" in log
        status = (m.mnt / ".thumbfs/status").read_text()
        assert "refused: " in status and "InvalidAccessKeyId" in status
        got = json.loads((m.mnt / ".thumbfs/status.json").read_text())
        assert got["store"]["state"] == "refused"
        assert "InvalidAccessKeyId" in got["store"]["refused"]
        assert got["queue_ingest"] == 3
        assert len(m.rows("state = 'spooled'")) == 3
        for text in (log, status):
            assert S3_SECRET not in text
        proxy.alias_key("NEWKEY", S3_KEY)
        m.config["store"]["access_key_id"] = "NEWKEY"
        m.config["store"]["secret_access_key"] = "NEWSECRET-never-logged"
        m.write_config()
        os.kill(m.proc.pid, signal.SIGHUP)
        for n in names:
            m.wait_uploaded(n, 60)
        assert "the store's credentials are read again" in m.log_text()
        status = (m.mnt / ".thumbfs/status").read_text()
        assert "refused" not in status.split("problems (")[0]
        signed = [h["authorization"] for _, _, h in proxy.seen("PUT")]
        assert "Credential=NEWKEY/" in signed[-1]
        check_all_stored(m, names)
    finally:
        m.stop()
    assert "NEWSECRET-never-logged" not in m.log_text()


def test_body_corrupted_on_the_way(thumbfs_bin, tmp_path, s3server, proxy):
    """Content-MD5 goes with every PUT and the ETag that comes back is
    checked: a body changed on the way is refused or caught, and sent
    again; the store ends up with the right bytes."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        proxy.corrupt(3)
        ingest_survives(m, 2, "BadDigest", "is not the MD5")
        for _, _, h in proxy.seen("PUT"):
            assert len(base64.b64decode(h["content-md5"])) == 16
    finally:
        m.stop()


def test_multipart_upload(thumbfs_bin, tmp_path, s3server, proxy):
    """Objects over multipart_threshold go up in part_size parts: from the
    file as it streams (over [thumbnail] max_bytes) and from memory. A part
    whose connection drops is sent again; a failed completion aborts the
    upload (AbortMultipartUpload) and the whole is tried again."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy,
                      multipart_threshold=str(5 << 20),
                      part_size=str(5 << 20))
    m.config["thumbnail"] = {"max_bytes": str(12 << 20)}
    m.start()
    try:
        srcs = sorted((p for p in photos() if p.stat().st_size > 6 << 20),
                      key=lambda p: p.stat().st_size)
        small, big = srcs[0], srcs[-1]
        assert small.stat().st_size < 12 << 20 < big.stat().st_size
        proxy.drop(1, "PUT", match="partNumber=2&")
        proxy.fail(1, 503, "SlowDown", "POST", match="uploadId=")
        d = m.batch()
        shutil.copy(small, d / "small.jpg")
        shutil.copy(big, d / "big.jpg")
        for name, src in (("small.jpg", small), ("big.jpg", big)):
            row = m.wait_uploaded(name, 120)
            assert m.object(row["s3_key"]) == src.read_bytes()
            assert row["sha256"] == hashlib.sha256(
                src.read_bytes()).hexdigest()
        assert m.rows("name = 'small.jpg'")[0]["s3_thumbnail_key"]
        posts = [p for _, p, _ in proxy.seen("POST")]
        assert sum(p.endswith("?uploads=") for p in posts) == 3  # 1 again
        parts = [p for _, p, _ in proxy.seen("PUT") if "partNumber=" in p]
        want = sum(-(-s.stat().st_size // (5 << 20)) for s in srcs[:1] +
                   srcs[-1:])
        assert len(parts) >= want + 1  # and the dropped one again
        aborts = [p for _, p, _ in proxy.seen("DELETE") if "uploadId=" in p]
        assert len(aborts) == 1
    finally:
        m.stop()


def test_store_failures_reach_a_reader_as_one_errno_each(
        thumbfs_bin, tmp_path, s3server, proxy):
    """A read of content the store holds alone gets one documented errno
    per kind of failure (fs_store_errno): refused credentials EREMOTEIO
    (not a permission error on the file), a missing object EIO, a store
    that is away or throttling ETIMEDOUT; once the store answers, the
    same read succeeds."""
    import errno
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    d = m.batch()
    names = write_photos(d, 1)
    m.wait_uploaded(names[0])
    want = (d / names[0]).read_bytes()
    m.stop()
    # what this mount's disk held goes: the store has the only copies
    for top in ("spool/patients", "thumbs"):
        for f in (m.data / top).rglob("*"):
            if f.is_file():
                f.unlink()
    m.start()
    try:
        for status, code, err in ((403, "AccessDenied", errno.EREMOTEIO),
                                  (404, "NoSuchKey", errno.EIO),
                                  (503, "SlowDown", errno.ETIMEDOUT)):
            proxy.fail(1000, status, code, method="GET")
            for name in (names[0], names[0].replace(".jpg", "_thumb.jpg")):
                try:
                    (d / name).read_bytes()
                    raise AssertionError(f"{name} read despite {code}")
                except OSError as e:
                    assert e.errno == err, (code, name, e)
            proxy.faults.clear()
        assert (d / names[0]).read_bytes() == want
    finally:
        m.stop()


def test_a_name_written_again_outlives_the_delete_of_its_old_content(
        thumbfs_bin, tmp_path, s3server, proxy):
    """rm a.jpg, then a new a.jpg at once, while the store is slow to
    delete: the old content's DELETE (the same key) lands before the new
    upload, never after it, so the store keeps the new a.jpg."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        d = m.batch()
        srcs = photos()[:2]
        shutil.copy(srcs[0], d / "a.jpg")
        m.wait_uploaded("a.jpg")
        proxy.stall(1, 3, method="DELETE")
        os.unlink(d / "a.jpg")
        shutil.copy(srcs[1], d / "a.jpg")
        row = m.wait_uploaded("a.jpg")
        wait_for(lambda: "queue delete: 0" in
                 (m.mnt / ".thumbfs/status").read_text(), 30, "the deletes")
        assert m.object(row["s3_key"]) == srcs[1].read_bytes()
        m.object(row["s3_thumbnail_key"])
    finally:
        m.stop()


def test_a_request_refused_for_good_holds_that_image_only(
        thumbfs_bin, tmp_path, s3server, proxy):
    """400 InvalidRequest, with no Message, for one image's PUT: no retry
    can fix it, so that image is held (user.thumbfs.state "failed", the
    code and the HTTP reason in user.thumbfs.error and the log, once) and
    the others are stored; thumbfs retry CONFIG PATH tries it again."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        proxy.faults.append(
            lambda meth, path, h: ("status", 400, "InvalidRequest", "")
            if meth == "PUT" and path.endswith("/p01.jpg") else None)
        d = m.batch()
        names = write_photos(d, 3)
        for n in ("p00.jpg", "p02.jpg"):
            m.wait_uploaded(n)
        wait_for(lambda: os.getxattr(d / "p01.jpg", "user.thumbfs.state")
                 == b"failed", 30, "p01.jpg to be held")
        why = os.getxattr(d / "p01.jpg", "user.thumbfs.error").decode()
        assert "HTTP 400 InvalidRequest" in why, why
        time.sleep(3)  # rounds of the runners: no retry of it
        puts = [p for meth, p, _ in proxy.seen("PUT")
                if p.endswith("/p01.jpg")]
        assert len(puts) == 1, puts
        assert m.log_text().count("failed for good") == 1
        proxy.faults.clear()
        r = subprocess.run([str(thumbfs_bin), "retry", str(m.conf),
                            str(d / "p01.jpg")], capture_output=True,
                           text=True)
        assert r.returncode == 0 and "1 job(s)" in r.stdout, r
        m.wait_uploaded("p01.jpg")
        check_all_stored(m, names)
    finally:
        m.stop()


def test_a_body_the_store_hashes_otherwise_is_sent_again(
        thumbfs_bin, tmp_path, s3server, proxy):
    """400 XAmzContentSHA256Mismatch (Ceph's answer to a body whose
    SHA-256 is not the signed one) is a body corrupted on the way: sent
    again; content stored wrong again and again is held after FS_TRIES_MAX
    tries, never uploaded in an endless loop."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        proxy.fail(2, 400, "XAmzContentSHA256Mismatch")
        ingest_survives(m, 2, "XAmzContentSHA256Mismatch")
        proxy.faults.append(
            lambda meth, path, h: ("corrupt",)
            if meth == "PUT" and path.endswith("/bad.jpg") else None)
        shutil.copy(photos()[3], m.batch() / "bad.jpg")
        wait_for(lambda: os.getxattr(m.batch() / "bad.jpg",
                                     "user.thumbfs.state") == b"failed",
                 90, "bad.jpg to be held")
        puts = [p for meth, p, _ in proxy.seen("PUT")
                if p.endswith("/bad.jpg")]
        assert len(puts) == 5, puts  # FS_TRIES_MAX whole tries
    finally:
        m.stop()


def test_queued_work_goes_as_soon_as_the_store_is_back(
        thumbfs_bin, tmp_path, s3server, proxy):
    """The store refuses everything (503) for 10 s while 12 images are
    written, with retry_max_s = 300: once it answers again, every image is
    stored within seconds, not after each job's backoff."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy)
    m.config["fs"]["retry_max_s"] = "300"
    m.start()
    try:
        back = time.time() + 10
        proxy.faults.append(
            lambda meth, path, h: ("status", 503, "SlowDown")
            if time.time() < back else None)
        names = write_photos(m.batch(), 12)
        time.sleep(max(0, back - time.time()))
        for n in names:
            m.wait_uploaded(n, 60)
        took = time.time() - back
        assert took < 12, f"the last image came {took:.1f} s after the store"
        assert "the store answers again" in m.log_text()
        check_all_stored(m, names)
    finally:
        m.stop()


def test_a_busy_catalog_leaves_no_move_claimed(thumbfs_bin, tmp_path,
                                               s3server, proxy):
    """#32, 8: the catalog refuses a move's bookkeeping (db_move_done)
    for a while after its copy: the move is recorded once the catalog
    takes it again, and the image's keys follow its folder without a
    remount (it stayed claimed, and its other jobs waited, before)."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        names = write_photos(m.batch(), 1)
        m.wait_uploaded(names[0])
        proxy.stall(1, 3, "PUT", "2025-11-12")  # the copy is under way...
        os.rename(m.mnt / "patients/P1/2025-11-10",
                  m.mnt / "patients/P1/2025-11-12")
        wait_for(lambda: any("2025-11-12" in r[1] for r in proxy.seen("PUT")),
                 10, "the copy")
        hold_catalog(m, 9)  # ...and the catalog is taken
        wait_for(lambda: "/2025-11-12/" in m.rows()[0]["s3_key"], 30,
                 "the move recorded")
        wait_for(lambda: not m.rows()[0]["s3_key"] or not any(
            "2025-11-10" in k for k in m.object_keys()), 30,
            "the old keys' delete")
        r = m.rows()[0]
        assert sorted(m.object_keys()) == sorted(
            [r["s3_key"], r["s3_thumbnail_key"]])
        assert "catalog: cannot record" in m.log_text()
    finally:
        m.stop()


def test_a_busy_catalog_leaves_no_job_claimed(thumbfs_bin, tmp_path,
                                              s3server, proxy):
    """The catalog refuses a job's bookkeeping for a while (another process
    holds it locked past the busy timeout, as an admin's sqlite3 shell
    can): the job is recorded once the catalog takes it again, and the
    image is uploaded without a remount."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        proxy.stall(1, 3, "PUT")  # the upload is under way...
        names = write_photos(m.batch(), 1)
        wait_for(lambda: proxy.seen("PUT"), 10, "the PUT")
        hold_catalog(m, 9)  # ...and the catalog is taken
        m.wait_uploaded(names[0], 30)
        assert "catalog: cannot record" in m.log_text()
        check_all_stored(m, names)
    finally:
        m.stop()
