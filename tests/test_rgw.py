"""The store on Ceph's RADOS Gateway (16.2, as many self-hosted clusters
run it), a real S3 server that, unlike s3rver, checks signatures and
payload hashes and answers multipart uploads as S3 does, with RGW's own
ways: an empty ETag in CompleteMultipartUpload's answer, and SSE accepted
over plain HTTP but not applied."""
import hashlib
import io
import os
import shutil
import signal
import subprocess

from PIL import Image

from conftest import RGW, Mount, photos, wait_for
from test_posix import jpeg, moved_everywhere

PREFIX = "patients/filemaker-import/images/P1/2025-11-10/"


def rgw_mount(thumbfs_bin, tmp_path, rgw, **store):
    m = Mount(thumbfs_bin, tmp_path, "s3", rgw)
    m.config["store"].update(store)
    return m


def test_forty_photos_in_parts_of_5_mib(thumbfs_bin, tmp_path, rgw):
    """multipart_threshold = part_size = 5 MiB: every photograph over it
    goes up in parts (RGW answers their completion with an empty ETag,
    checked with a HEAD), and every image and thumbnail is stored, once,
    byte for byte; no upload is left open."""
    m = rgw_mount(thumbfs_bin, tmp_path, rgw, multipart_threshold="5242880",
                  part_size="5242880").start()
    try:
        d = m.batch()
        srcs = photos()[:40]
        for i, p in enumerate(srcs):
            shutil.copy(p, d / f"p{i:02}{p.suffix}")
        names = [f"p{i:02}{p.suffix}" for i, p in enumerate(srcs)]
        for n in names:
            m.wait_uploaded(n, 300)
        assert any(p.stat().st_size > 5 << 20 for p in srcs)
        rows = {r["name"]: r for r in m.rows()}
        want = []
        for n, p in zip(names, srcs):
            r = rows[n]
            data = m.object(r["s3_key"])
            assert hashlib.sha256(data).hexdigest() == r["sha256"] == \
                hashlib.sha256(p.read_bytes()).hexdigest()
            Image.open(io.BytesIO(m.object(r["s3_thumbnail_key"])))
            want += [r["s3_key"], r["s3_thumbnail_key"]]
        assert m.object_keys(PREFIX) == sorted(want)
        open_uploads = rgw.client().list_multipart_uploads(Bucket=m.bucket)
        assert not open_uploads.get("Uploads"), open_uploads
        assert "is neither" not in m.log_text()
    finally:
        m.stop()


def test_sse_on_a_store_that_does_not_encrypt_stops_the_mount(
        thumbfs_bin, tmp_path, rgw):
    """sse = AES256 on RGW without a key service (it accepts the header
    and stores plaintext): the mount refuses to start, with the reason on
    the terminal, before any image is written."""
    m = rgw_mount(thumbfs_bin, tmp_path, rgw, sse="AES256")
    m.start(check=False)
    assert m.proc.wait(60) != 0
    m.proc = None
    m.logf.close()
    assert "store did not encrypt" in m.log_text(), m.log_text()
    assert rgw.keys(m.bucket) == []


def test_a_folder_moves_on_rgw(thumbfs_bin, tmp_path, rgw):
    """A folder's rename copies its objects with CopyObject (signed as RGW
    checks it), then deletes the old ones."""
    m = rgw_mount(thumbfs_bin, tmp_path, rgw).start()
    try:
        d = m.batch("P8")
        for i in range(3):
            (d / f"m{i}.jpg").write_bytes(jpeg(60 + i))
        for i in range(3):
            m.wait_uploaded(f"m{i}.jpg")
        os.rename(m.mnt / "patients/P8", m.mnt / "patients/P9")
        want = {f"m{i}.jpg": ("P9", "2025-11-10") for i in range(3)}
        wait_for(lambda: moved_everywhere(m, want), 60, "the move")
        for i in range(3):
            assert m.object("patients/filemaker-import/images/P9/2025-11-10/"
                            f"m{i}.jpg") == jpeg(60 + i)
    finally:
        m.stop()


def radosgw_admin(rgw, *args):
    env = dict(os.environ, CEPH_CONF=str(rgw.dir / "ceph/ceph.conf"))
    r = subprocess.run(["radosgw-admin", "-n", "client.rgw.a", *args],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_rotated_credentials_wait_for_sighup(thumbfs_bin, tmp_path, rgw):
    """A user of RGW of its own, whose key is revoked while mounted: 403
    InvalidAccessKeyId, said once, the uploads held; its new key in the
    config and SIGHUP, and they go (RGW checks every signature)."""
    uid = "u" + os.urandom(4).hex()
    old, new = "OLD" + uid.upper(), "NEW" + uid.upper()
    radosgw_admin(rgw, "user", "create", f"--uid={uid}",
                  f"--display-name={uid}", f"--access-key={old}",
                  "--secret=old-secret-" + uid)
    m = rgw_mount(thumbfs_bin, tmp_path, rgw, access_key_id=old,
                  secret_access_key="old-secret-" + uid)
    m.config["store"]["url"] = f"s3://b{uid}"
    m.bucket = f"b{uid}"
    user = RGW(rgw.dir)
    user.endpoint = rgw.endpoint
    user.access_key, user.secret_key = old, "old-secret-" + uid
    user.client().create_bucket(Bucket=m.bucket)
    m.s3 = user
    m.start()
    try:
        d = m.batch()
        shutil.copy(photos()[0], d / "a.jpg")
        m.wait_uploaded("a.jpg")
        radosgw_admin(rgw, "key", "create", f"--uid={uid}",
                      f"--access-key={new}", "--secret=new-secret-" + uid)
        radosgw_admin(rgw, "key", "rm", f"--uid={uid}",
                      f"--access-key={old}")
        shutil.copy(photos()[1], d / "b.jpg")
        wait_for(lambda: "the store refused" in m.log_text(), 60,
                 "the refusal")
        assert m.log_text().count("the store refused") == 1
        assert "InvalidAccessKeyId" in m.log_text()
        assert m.rows("name = 'b.jpg'")[0]["state"] == "spooled"
        m.config["store"]["access_key_id"] = new
        m.config["store"]["secret_access_key"] = "new-secret-" + uid
        m.write_config()
        os.kill(m.proc.pid, signal.SIGHUP)
        row = m.wait_uploaded("b.jpg", 60)
        user.access_key, user.secret_key = new, "new-secret-" + uid
        assert m.object(row["s3_key"]) == photos()[1].read_bytes()
    finally:
        m.stop()
    assert "new-secret-" not in m.log_text()


def test_a_body_corrupted_on_the_way_to_rgw_is_sent_again(
        thumbfs_bin, tmp_path, rgw):
    """The suite's proxy in front of RGW flips a byte of two PUT bodies:
    RGW answers 400 XAmzContentSHA256Mismatch (not s3rver's BadDigest),
    and thumbfs sends them again; every image is stored right."""
    from proxy import Proxy
    p = Proxy(int(rgw.endpoint.rsplit(":", 1)[1]))
    try:
        m = rgw_mount(thumbfs_bin, tmp_path, rgw, endpoint=p.endpoint)
        m.start()
        try:
            p.corrupt(2)
            d = m.batch()
            for i in range(3):
                shutil.copy(photos()[i], d / f"c{i}.jpg")
            for i in range(3):
                row = m.wait_uploaded(f"c{i}.jpg", 60)
                assert m.object(row["s3_key"]) == photos()[i].read_bytes()
            assert "XAmzContentSHA256Mismatch" in m.log_text()
        finally:
            m.stop()
    finally:
        p.close()
