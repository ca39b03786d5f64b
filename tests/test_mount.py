"""End-to-end tests on a real FUSE mount, with a file:// store and with S3
(s3rver on loopback): what a user, a script and rsync see."""
import errno
import hashlib
import io
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from conftest import PHOTOS, Mount, photos, psnr, wait_for

PREFIX = "patients/filemaker-import/images/P1/2025-11-10/"


def pillow_thumb(path):
    """The app's code: img.copy(); thumbnail((300, 300), LANCZOS)."""
    img = Image.open(path)
    t = img.copy()
    t.thumbnail((300, 300), Image.Resampling.LANCZOS)
    return t


def size_shown(n):
    """A size as the log shows it: three digits, powers of 1024."""
    if n < 1024:
        return f"{n} bytes"
    v, unit = n / 1024, 0
    while v >= 1023.95 and unit < 3:
        v, unit = v / 1024, unit + 1
    fmt = "%.2f" if v < 9.995 else "%.1f" if v < 99.95 else "%.0f"
    return f"{fmt % v} {['KiB', 'MiB', 'GiB', 'TiB'][unit]}"


def a_photo(name="Elephants.jpg"):
    return next(p for p in photos() if p.name == name)


def test_ingest_photo(mount):
    src = a_photo()
    d = mount.batch()
    subprocess.run(["cp", str(src), str(d / "IMG_1234.jpg")], check=True)
    row = mount.wait_uploaded("IMG_1234.jpg")
    thumb = d / "IMG_1234_thumb.jpg"
    wait_for(thumb.exists, 10, "the thumbnail in the listing")
    assert sorted(os.listdir(d)) == ["IMG_1234.jpg", "IMG_1234_thumb.jpg"]

    data = src.read_bytes()
    assert (d / "IMG_1234.jpg").read_bytes() == data
    tb = thumb.read_bytes()
    got = Image.open(io.BytesIO(tb))
    want = pillow_thumb(src)
    assert got.format == "JPEG"
    assert got.size == want.size
    assert psnr(got, want) >= 30
    assert os.stat(thumb).st_size == len(tb)

    assert mount.object(PREFIX + "IMG_1234.jpg") == data
    assert mount.object(PREFIX + "IMG_1234_thumb.jpg") == tb
    assert mount.object_keys() == [PREFIX + "IMG_1234.jpg",
                                   PREFIX + "IMG_1234_thumb.jpg"]

    assert row["s3_key"] == PREFIX + "IMG_1234.jpg"
    assert row["s3_thumbnail_key"] == PREFIX + "IMG_1234_thumb.jpg"
    assert row["s3_bucket"] == (mount.bucket if mount.store == "s3"
                                else f"file://{mount.base}/store")
    assert row["name"] == "IMG_1234.jpg"
    assert row["file_size"] == len(data)
    assert row["thumbnail_size"] == len(tb)
    assert row["mime_type"] == "image/jpeg"
    assert (row["width"], row["height"]) == Image.open(src).size
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    assert row["error"] == ""

    w, h = Image.open(src).size
    tw, th = want.size
    line = (f"imported patients/P1/2025-11-10/IMG_1234.jpg ({w}x{h}, "
            f"thumb {tw}x{th}, {size_shown(len(data))})")
    assert line in mount.log_text()


def test_png_keeps_format_and_alpha(file_mount):
    src = next(p for p in sorted(PHOTOS.rglob("*.png"))
               if Image.open(p).mode == "RGBA")
    d = file_mount.batch()
    shutil.copy(src, d / "scan.png")
    file_mount.wait_uploaded("scan.png")
    got = Image.open(d / "scan_thumb.png")
    want = pillow_thumb(src)
    assert got.format == "PNG"
    assert got.mode == "RGBA"
    assert got.size == want.size
    assert psnr(got, want) >= 30


def test_many_photos_in_parallel(mount):
    srcs = photos()[:6]
    d = mount.batch("P7", "2024-02-29")
    subprocess.run(["cp", *map(str, srcs), str(d)], check=True)
    for s in srcs:
        mount.wait_uploaded(s.name, 120)
    keys = mount.object_keys()
    assert len(keys) == 2 * len(srcs)
    for s in srcs:
        stem = s.name.rsplit(".", 1)[0]
        assert (d / f"{stem}_thumb.jpg").exists()
    assert len(mount.rows()) == len(srcs)


def test_invalid_paths_refused(file_mount):
    m = file_mount.mnt

    def err(fn):
        with pytest.raises(OSError) as e:
            fn()
        return e.value.errno

    # (a folder named as no patient id or date is held: test_held.py)
    os.mkdir(m / "patients" / "P1")
    assert err(lambda: open(m / "patients/P1/loose.jpg", "w")) == errno.EPERM
    assert err(lambda: open(m / "top.jpg", "w")) == errno.EPERM
    # the same rule broken again within a minute is not said again, and
    # what Finder, Explorer and Windows write everywhere is never said
    for n in ("loose2.jpg", ".DS_Store", "._loose.jpg", "desktop.ini",
              "Thumbs.db"):
        assert err(lambda: open(m / "patients/P1" / n, "w")) == errno.EPERM
    assert err(lambda: open(m / "patients/.DS_Store", "w")) == errno.EPERM
    assert err(lambda: os.mkdir(m / "elsewhere")) == errno.EPERM
    d = file_mount.batch()
    shutil.copy(a_photo(), d / "x.jpg")
    file_mount.wait_uploaded("x.jpg")
    # a thumbnail goes with its image: its unlink alone succeeds (so that
    # a selection deleted with it does not stop there) and it stays
    os.unlink(d / "x_thumb.jpg")
    assert sorted(os.listdir(d)) == ["x.jpg", "x_thumb.jpg"]
    assert err(lambda: os.rename(d / "x.jpg", m / "patients/P1/x.jpg")) == \
        errno.EPERM
    log = file_mount.log_text()
    # one line for each refusal, naming the rule with its values
    want = [
        "refused create of '/patients/P1/loose.jpg': files belong in "
        "patients/<id>/<YYYY-MM-DD>/",
        "refused mkdir of '/elsewhere': only 'patients' may be at the top "
        "of the mount, not 'elsewhere'",
        "refused rename of '/patients/P1/2025-11-10/x.jpg' to "
        "'/patients/P1/x.jpg': files belong in patients/<id>/<YYYY-MM-DD>/"]
    for w in want:
        assert w in log, (w, log)
    for n in ("/top.jpg", "loose2.jpg", "DS_Store", "._loose", "desktop",
              "Thumbs"):
        assert n not in log, (n, log)
    # a file at the wrong level is not said to be a bad patient id
    assert "patient id 'loose.jpg'" not in log and \
        "patient id 'top.jpg'" not in log
    assert [k for k in file_mount.object_keys() if "/x" not in k] == []


def test_corrupt_file_is_kept_and_uploaded(mount):
    d = mount.batch()
    good = a_photo().read_bytes()
    (d / "broken.jpg").write_bytes(good[: len(good) // 3])
    (d / "notes.jpg").write_bytes(b"not an image at all")
    r1 = mount.wait_uploaded("broken.jpg")
    r2 = mount.wait_uploaded("notes.jpg")
    assert "Premature end of JPEG file" in r1["error"]
    assert "not an image thumbfs reads" in r2["error"]
    assert r1["s3_thumbnail_key"] == "" and r1["thumbnail_name"] == ""
    assert mount.object(PREFIX + "notes.jpg") == b"not an image at all"
    assert sorted(os.listdir(d)) == ["broken.jpg", "notes.jpg"]
    status = (mount.mnt / ".thumbfs/status").read_text()
    assert "thumbnail errors: 2" in status
    assert "notes.jpg" in status
    assert "thumbnail of 'patients/P1/2025-11-10/notes.jpg' failed" in \
        mount.log_text()


def test_hidden_temp_then_rename_is_ingested(mount):
    """rsync and GIO write a hidden temp file, then rename it."""
    d = mount.batch()
    tmp = d / ".IMG_9.jpg.Xa12bC"
    shutil.copy(a_photo(), tmp)
    (d / ".DS_Store").write_bytes(b"finder")
    (d / "Thumbs.db").write_bytes(b"windows")
    assert mount.rows() == []
    os.rename(tmp, d / "IMG_9.jpg")
    mount.wait_uploaded("IMG_9.jpg")
    keys = mount.object_keys()
    assert keys == [PREFIX + "IMG_9.jpg", PREFIX + "IMG_9_thumb.jpg"]
    assert (d / ".DS_Store").read_bytes() == b"finder"
    assert len(mount.rows()) == 1


def test_rewrite_updates_row(mount):
    a, b = photos()[0], photos()[1]
    d = mount.batch()
    shutil.copy(a, d / "x.jpg")
    r1 = mount.wait_uploaded("x.jpg")
    shutil.copy(b, d / "x.jpg")
    want = hashlib.sha256(b.read_bytes()).hexdigest()
    r2 = wait_for(lambda: next((r for r in mount.rows("name = 'x.jpg'")
                                if r["sha256"] == want and
                                r["state"] == "uploaded"), None),
                  60, "the rewrite to be uploaded")
    assert r2["id"] == r1["id"]
    assert (r2["width"], r2["height"]) == Image.open(b).size
    assert mount.object(PREFIX + "x.jpg") == b.read_bytes()
    assert Image.open(d / "x_thumb.jpg").size == pillow_thumb(b).size


def test_unlink_removes_everywhere(mount):
    d = mount.batch()
    shutil.copy(a_photo(), d / "gone.jpg")
    mount.wait_uploaded("gone.jpg")
    os.unlink(d / "gone.jpg")
    assert os.listdir(d) == []
    assert mount.rows() == []
    wait_for(lambda: mount.object_keys() == [], 30, "objects to be deleted")
    with pytest.raises(OSError) as e:
        os.unlink(d / "gone_thumb.jpg")
    assert e.value.errno == errno.ENOENT
    os.rmdir(d)


def test_rm_r_of_a_folder_with_its_thumbnails(mount):
    """rm -r of a patient's folder printed 'Operation not permitted' for
    each thumbnail and left the folders (a thumbnail's unlink was refused);
    a selection that names the thumbnail before its image (as Explorer's
    and Finder's may) failed the same way. Both go, and nothing is left
    in the store."""
    d = mount.batch()
    e = mount.batch(date="2025-11-11")
    for n in ("a.jpg", "b.jpg"):
        shutil.copy(a_photo(), d / n)
    shutil.copy(a_photo(), e / "c.jpg")
    for n in ("a.jpg", "b.jpg", "c.jpg"):
        mount.wait_uploaded(n)
    # a selection, thumbnail first
    r = subprocess.run(["rm", str(d / "b_thumb.jpg"), str(d / "b.jpg")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(d)) == ["a.jpg", "a_thumb.jpg"]
    r = subprocess.run(["rm", "-r", str(mount.mnt / "patients/P1")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.listdir(mount.mnt / "patients") == []
    assert mount.rows() == []
    wait_for(lambda: mount.object_keys() == [], 30, "the objects to go")


def test_config_errors_stop_before_mounting(thumbfs_bin, tmp_path):
    conf = tmp_path / "mount.conf"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cases = [
        ("[store]\nurl = file:///tmp/x\n[catalog]\ndir = /tmp/y\ncolour = 1\n",
         "mount.conf:5: unknown key 'colour' in [catalog]"),
        ("[store]\nurl = file:///tmp/x\n",
         "missing required key 'dir' in [catalog]"),
        ("[store]\nurl = file:///tmp/x\n[catalog]\ndir = /tmp/y\n[fs]\n"
         "workers = lots\n", "mount.conf:6: 'workers' in [fs] must be"),
    ]
    for text, want in cases:
        conf.write_text(text)
        r = subprocess.run([str(thumbfs_bin), str(conf), str(mnt), "-f"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0
        assert want in r.stderr, r.stderr
        assert not os.path.ismount(mnt)


def test_bad_credentials_stop_before_mounting(thumbfs_bin, tmp_path, s3store):
    m = Mount(thumbfs_bin, tmp_path, "s3", s3store)
    m.config["store"]["access_key_id"] = "NOBODY"
    m.config["store"]["secret_access_key"] = "TOPSECRET123"
    m.write_config()
    r = subprocess.run([str(thumbfs_bin), str(m.conf), str(m.mnt), "-f"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "store check failed" in r.stderr and "403" in r.stderr, r.stderr
    assert "TOPSECRET123" not in r.stderr
    assert not os.path.ismount(m.mnt)


def test_kill9_with_store_away_loses_nothing(thumbfs_bin, tmp_path, s3store):
    """The store is unreachable, the daemon is killed; the next mount with
    the store back uploads what was written."""
    m = Mount(thumbfs_bin, tmp_path, "s3", s3store)
    good_endpoint = m.config["store"]["endpoint"]
    m.config["store"]["endpoint"] = f"http://127.0.0.1:{_closed_port()}"
    m.start()
    d = m.batch()
    shutil.copy(a_photo(), d / "late.jpg")
    wait_for(lambda: "upload of 'patients/P1/2025-11-10/late.jpg' failed"
             in m.log_text(), 30, "a failed upload")
    assert m.rows()[0]["state"] == "spooled"
    m.kill9()
    m.config["store"]["endpoint"] = good_endpoint
    m.start()
    m.wait_uploaded("late.jpg")
    assert m.object(PREFIX + "late.jpg") == a_photo().read_bytes()
    assert m.object_keys() == [PREFIX + "late.jpg", PREFIX + "late_thumb.jpg"]
    m.stop()


def _closed_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mount_through_fstab_helper(thumbfs_bin, tmp_path):
    """The helper an /etc/fstab line 'CONFIG MOUNTPOINT fuse.thumbfs ...'
    runs: mount.fuse3 CONFIG MOUNTPOINT -t thumbfs -o OPTIONS (mount(8)
    resets PATH, so here the build directory is put on it by hand)."""
    m = Mount(thumbfs_bin, tmp_path, "file")
    m.write_config()
    env = dict(os.environ, PATH=f"{thumbfs_bin.parent}:{os.environ['PATH']}")
    subprocess.run(["mount.fuse3", str(m.conf), str(m.mnt), "-t", "thumbfs",
                    "-o", "rw,nosuid,nodev,noatime"], check=True, env=env,
                   timeout=30)
    try:
        assert os.path.ismount(m.mnt)
        d = m.batch()
        shutil.copy(a_photo(), d / "f.jpg")
        m.wait_uploaded("f.jpg")
        mounts = open("/proc/mounts").read()
        assert f" {m.mnt} fuse.thumbfs " in mounts
    finally:
        subprocess.run(["umount", str(m.mnt)], check=True)


def test_phone_photo_is_upright_with_displayed_size(file_mount):
    """A phone photo stored sideways (EXIF orientation 6): the thumbnail is
    upright and the row has the size as displayed."""
    upright = Image.open(a_photo()).convert("RGB").resize((1200, 800))
    exif = Image.Exif()
    exif[0x0112] = 6
    d = file_mount.batch()
    upright.transpose(Image.Transpose.ROTATE_90).save(
        d / "IMG_0001.jpg", quality=90, exif=exif.tobytes())
    row = file_mount.wait_uploaded("IMG_0001.jpg")
    assert (row["width"], row["height"]) == (1200, 800)
    thumb = Image.open(d / "IMG_0001_thumb.jpg")
    assert thumb.size == (300, 200)
    assert psnr(thumb, upright.resize((300, 200), Image.Resampling.LANCZOS)) \
        >= 30


def test_file_over_max_bytes_is_kept_without_thumbnail(thumbfs_bin, tmp_path):
    m = Mount(thumbfs_bin, tmp_path, "file")
    m.config["thumbnail"] = {"max_bytes": "500000"}
    m.start()
    try:
        d = m.batch()
        src = a_photo()  # about 1 MB
        shutil.copy(src, d / "big.jpg")
        row = m.wait_uploaded("big.jpg")
        assert "over the limit of 500000 (max_bytes)" in row["error"]
        assert row["mime_type"] == "image/jpeg"
        assert row["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
        assert m.object(PREFIX + "big.jpg") == src.read_bytes()
        assert sorted(os.listdir(d)) == ["big.jpg"]
    finally:
        m.stop()


def test_xattrs(file_mount):
    """user.* xattrs are the client's; user.thumbfs.* show the catalog's
    state and are read-only."""
    d = file_mount.batch()
    f = d / "x.jpg"
    shutil.copy(a_photo(), f)
    row = file_mount.wait_uploaded("x.jpg")
    os.setxattr(f, "user.note", b"left knee")
    assert os.getxattr(f, "user.note") == b"left knee"
    names = os.listxattr(f)
    assert "user.note" in names and "user.thumbfs.state" in names
    assert os.getxattr(f, "user.thumbfs.state") == b"uploaded"
    assert os.getxattr(f, "user.thumbfs.s3_key") == row["s3_key"].encode()
    assert os.getxattr(f, "user.thumbfs.sha256") == row["sha256"].encode()
    assert os.getxattr(f, "user.thumbfs.width") == str(row["width"]).encode()
    assert os.getxattr(f, "user.thumbfs.error") == b""
    # a copy tool setting them (cp -a, mv) is ignored without a word
    os.setxattr(f, "user.thumbfs.state", b"spooled")
    os.removexattr(f, "user.thumbfs.error")
    assert os.getxattr(f, "user.thumbfs.state") == b"uploaded"
    out = subprocess.run(["getfattr", "-d", "-m", "user.thumbfs", str(f)],
                         capture_output=True, text=True).stdout
    assert 'user.thumbfs.state="uploaded"' in out


def test_unmount_with_work_pending_drains(thumbfs_bin, tmp_path, s3store):
    """fusermount3 -u right after a copy: the daemon keeps uploading until
    the queue is empty (or unmount_drain_s), and says so."""
    m = Mount(thumbfs_bin, tmp_path, "s3", s3store)
    m.config["fs"]["workers"] = "1"
    m.start()
    d = m.batch()
    srcs = photos()[:8]
    subprocess.run(["cp", *map(str, srcs), str(d)], check=True)
    m.stop()
    log = m.log_text()
    assert "still queued; working on" in log
    assert "every queued job is done" in log
    assert len(m.object_keys()) == 2 * len(srcs)
    assert len(m.rows("state = 'uploaded'")) == len(srcs)


def test_unmount_drain_is_bounded(thumbfs_bin, tmp_path):
    """With the store away, the drain gives up after unmount_drain_s and
    leaves the jobs in the catalog."""
    port = _closed_port()
    m = Mount(thumbfs_bin, tmp_path, "file")
    m.config["store"] = {"url": "s3://nowhere", "path_style": "true",
                         "endpoint": f"http://127.0.0.1:{port}",
                         "access_key_id": "K", "secret_access_key": "S"}
    m.config["fs"]["unmount_drain_s"] = "2"
    m.start()
    shutil.copy(a_photo(), m.batch() / "waiting.jpg")
    wait_for(lambda: m.rows(), 10, "the catalog row")
    t0 = time.monotonic()
    m.stop()
    assert time.monotonic() - t0 < 20
    assert "1 job(s) left in the catalog for the next mount" in m.log_text()
    assert m.rows()[0]["state"] == "spooled"


def test_secret_never_shown(thumbfs_bin, tmp_path, s3store):
    """The S3 credentials appear in no log line, status text or xattr,
    whether uploads succeed or fail."""
    m = Mount(thumbfs_bin, tmp_path, "s3", s3store)
    m.start()
    try:
        d = m.batch()
        shutil.copy(a_photo(), d / "ok.jpg")
        m.wait_uploaded("ok.jpg")
        (d / "bad.jpg").write_bytes(b"junk")
        m.wait_uploaded("bad.jpg")
        status = (m.mnt / ".thumbfs/status").read_text()
        attrs = b"".join(os.getxattr(d / "ok.jpg", a)
                         for a in os.listxattr(d / "ok.jpg"))
    finally:
        m.stop()
    # and a store that fails: the same credentials against a closed port
    (tmp_path / "x").mkdir()
    m2 = Mount(thumbfs_bin, tmp_path / "x", "s3", s3store)
    m2.config["store"]["endpoint"] = f"http://127.0.0.1:{_closed_port()}"
    m2.config["fs"]["unmount_drain_s"] = "0"
    m2.start()
    shutil.copy(a_photo(), m2.batch() / "late.jpg")
    wait_for(lambda: "upload of" in m2.log_text(), 30, "a failed upload")
    status2 = (m2.mnt / ".thumbfs/status").read_text()
    m2.stop()
    assert "failed" in status2
    for text in (m.log_text(), m2.log_text(), status, status2,
                 attrs.decode()):
        assert s3store.secret_key not in text
        assert s3store.access_key not in text
        assert "Signature=" not in text


def test_presign_gives_a_link_that_downloads(mount):
    """thumbfs presign CONFIG KEY: the link the web app would hand out."""
    d = mount.batch()
    shutil.copy(a_photo(), d / "p.jpg")
    row = mount.wait_uploaded("p.jpg")
    out = subprocess.run([str(mount.binary), "presign", str(mount.conf),
                          row["s3_thumbnail_key"], "600"],
                         capture_output=True, text=True, check=True)
    url = out.stdout.strip()
    if mount.store == "s3":
        assert "X-Amz-Expires=600" in url and "X-Amz-Signature=" in url
        # the key id
        assert f"X-Amz-Credential={mount.s3.access_key}%2F" in url
    got = urllib.request.urlopen(url, timeout=30).read()
    assert got == (d / "p_thumb.jpg").read_bytes()
    bad = subprocess.run([str(mount.binary), "presign", str(mount.conf),
                          "../escape"], capture_output=True, text=True)
    assert bad.returncode == 1 and "refused key" in bad.stderr


def test_data_directory_must_be_private(thumbfs_bin, tmp_path):
    """The catalog is 0600 whatever the umask, and a data directory open
    to group or others stops the mount with a clear message."""
    m = Mount(thumbfs_bin, tmp_path, "file")
    old = os.umask(0o022)
    try:
        m.start()
    finally:
        os.umask(old)
    m.stop()
    assert os.stat(m.data / "catalog.db").st_mode & 0o777 == 0o600
    assert os.stat(m.data).st_mode & 0o777 == 0o700
    os.chmod(m.data, 0o755)
    r = subprocess.run([str(thumbfs_bin), str(m.conf), str(m.mnt), "-f"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "is open to group or others (mode 755)" in r.stderr, r.stderr
    assert not os.path.ismount(m.mnt)


def test_spool_disk_full(thumbfs_bin, tmp_path):
    """The spool's disk fills: the write fails with ENOSPC, what was saved
    before is kept and uploaded, and the mount works again once space
    returns."""
    m = Mount(thumbfs_bin, tmp_path, "file")
    m.data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700",
                    "tmpfs", str(m.data)], check=True)
    try:
        m.start()
        d = m.batch()
        first = a_photo()  # about 1 MB
        shutil.copy(first, d / "saved.jpg")
        m.wait_uploaded("saved.jpg")
        with pytest.raises(OSError) as e:
            with open(d / "huge.jpg", "wb") as f:
                for _ in range(20):
                    f.write(os.urandom(1 << 20))
                f.flush()
                os.fsync(f.fileno())
        assert e.value.errno == errno.ENOSPC
        os.unlink(d / "huge.jpg")
        assert (d / "saved.jpg").read_bytes() == first.read_bytes()
        assert m.object(PREFIX + "saved.jpg") == first.read_bytes()
        small = min(photos(), key=lambda p: p.stat().st_size)
        shutil.copy(small, d / "after.jpg")  # space is back
        m.wait_uploaded("after.jpg")
        m.stop()
    finally:
        if m.proc:
            m.kill9()
        subprocess.run(["umount", str(m.data)], check=True)


def thread_stats(pid):
    """(name, nice) of each thread of process pid."""
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        stat = open(f"/proc/{pid}/task/{t}/stat").read()
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        out.append((name, int(stat[stat.rindex(")") + 2:].split()[16])))
    return out


def test_requests_go_before_thumbnails(file_mount):
    """The job runners (thumbnails, uploads) run at nice 10, so a close()
    waiting for its catalog row is not queued behind them; files show a
    1 MiB st_blksize, so cp writes them in 1 MiB requests."""
    threads = thread_stats(file_mount.proc.pid)
    jobs = [n for name, n in threads if name == "thumbfs-job"]
    assert jobs == [10, 10], threads  # [fs] workers = 2
    assert all(n == 0 for name, n in threads if name != "thumbfs-job")
    d = file_mount.batch()
    shutil.copy(a_photo(), d / "a.jpg")
    assert os.stat(d / "a.jpg").st_blksize == 1 << 20
    assert os.stat(d).st_blksize == 1 << 20
    file_mount.wait_uploaded("a.jpg")


def test_catalog_log_stays_bounded(file_mount):
    """Commits never checkpoint SQLite's write-ahead log (a close() would
    wait for its fsyncs); the job runners do, so the log stays near 1000
    pages however much is written."""
    d = file_mount.batch()
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "PNG")
    n = 600
    for i in range(n):
        (d / f"s{i:03d}.png").write_bytes(buf.getvalue())
    wal = file_mount.data / "catalog.db-wal"
    most = 0
    def all_done():
        nonlocal most
        most = max(most, wal.stat().st_size)
        return len(file_mount.rows("state = 'uploaded'")) == n
    wait_for(all_done, 120, "every file uploaded")
    assert most < 1300 * (4096 + 24), most
    assert "checkpoint" not in file_mount.log_text()


def peak_rss_mib(m):
    """The daemon's peak resident memory (VmHWM), MiB."""
    for line in Path(f"/proc/{m.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_runner_memory_does_not_grow_with_the_file(thumbfs_bin, tmp_path):
    """A job runner hashes, decodes and uploads a file as it reads it: its
    peak memory after a 160 MiB file (JPEG-named random data) and a large
    real JPEG is what it was after small ones, not the files' sizes."""
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        d = m.batch()
        shutil.copy(a_photo(), d / "small.jpg")
        (d / "small.bin.jpg").write_bytes(os.urandom(1 << 20))
        for n in ("small.jpg", "small.bin.jpg"):
            m.wait_uploaded(n)
        before = peak_rss_mib(m)
        big = Image.open(a_photo()).convert("RGB").resize((6000, 4500))
        big.save(d / "large.jpg", "JPEG", quality=95)
        with open(d / "noise.jpg", "wb") as f:
            block = os.urandom(16 << 20)
            for _ in range(10):
                f.write(block)
        for n in ("large.jpg", "noise.jpg"):
            row = m.wait_uploaded(n, 120)
        assert row["file_size"] == 160 << 20
        grown = peak_rss_mib(m) - before
        assert grown < 40, f"{grown:.0f} MiB more for a 160 MiB file"
        assert m.rows("name = 'large.jpg'")[0]["width"] == 6000
    finally:
        m.stop()


def test_subcommands_parse_their_own_arguments(thumbfs_bin):
    """Each subcommand says what is missing or too much, and has --help."""
    def run(*args):
        return subprocess.run([str(thumbfs_bin), *args], capture_output=True,
                              text=True, timeout=30)
    r = run("schema", "extra")
    assert r.returncode == 2 and "too many arguments" in r.stderr
    r = run("presign", "/etc/thumbfs/mount.conf")
    assert r.returncode == 2 and "missing arguments" in r.stderr
    assert "presign CONFIG KEY [SECONDS]" in r.stderr
    for sub in ("schema", "presign", "backfill", "retry", "verify"):
        r = run(sub, "--help")
        assert r.returncode == 0 and f"{sub}" in r.stdout, r
    r = run("backfill")
    assert r.returncode == 2 and "backfill CONFIG" in r.stderr
    r = run("verify", "/etc/thumbfs/mount.conf", "--fast")
    assert r.returncode == 2 and "unknown option '--fast'" in r.stderr
    r = run("verify", "/etc/thumbfs/mount.conf", "--delete-orphans")
    assert r.returncode == 2 and "goes with --repair" in r.stderr


def test_mount_shows_the_config_as_its_source(file_mount):
    """mount and df show the config file as the source, as sshfs shows
    user@host:path."""
    line = next(ln for ln in Path("/proc/mounts").read_text().splitlines()
                if f" {file_mount.mnt} " in ln)
    assert line.split()[0] == str(file_mount.conf.resolve())
    assert line.split()[2] == "fuse.thumbfs"


def test_meson_install_puts_the_examples_in_place(tmp_path):
    """meson install: the daemon, the manual page, and as documentation
    mount.conf.example and the systemd mount unit the README shows."""
    from conftest import ROOT
    r = subprocess.run(["meson", "install", "-C", str(ROOT / "build"),
                        "--destdir", str(tmp_path / "root"), "--no-rebuild"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    files = {str(p.relative_to(tmp_path / "root"))
             for p in (tmp_path / "root").rglob("*") if p.is_file()}
    doc = [f for f in files if "/share/doc/thumbfs/" in f]
    assert sorted(f.rsplit("/", 1)[1] for f in doc) == [
        "mnt-archive.mount", "mount.conf.example"]
    assert any(f.endswith("sbin/thumbfs") for f in files)
    assert any(f.endswith("man8/thumbfs.8") for f in files)
    unit = next((tmp_path / "root" / f) for f in doc
                if f.endswith(".mount")).read_text()
    assert "Type=fuse.thumbfs" in unit and "What=/etc/thumbfs/mount.conf" \
        in unit



def test_status_file_counts_and_keeps_problems(thumbfs_bin, tmp_path):
    """.thumbfs/status: images and other files counted apart; an empty
    file is stored and is no error; sizes in units beside the bytes, the
    spool counted; the problems of files kept in the catalog across a
    remount, and gone with the file."""
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        d = m.batch()
        shutil.copy(a_photo(), d / "photo.jpg")
        (d / "letter.pdf").write_bytes(b"%PDF-1.4\n" + b"x" * 5000)
        (d / "notes.jpg").write_bytes(b"not an image at all")
        (d / "empty.jpg").write_bytes(b"")
        for n in ("photo.jpg", "letter.pdf", "notes.jpg", "empty.jpg"):
            m.wait_uploaded(n)
        assert m.rows("name = 'empty.jpg'")[0]["error"] == ""
        status = (m.mnt / ".thumbfs/status").read_text()
        print(status)
        # a PDF is an image thumbfs draws, this one broken; notes.jpg's
        # bytes are no image's, and empty.jpg has none
        assert "images uploaded: 2\n" in status
        assert "other files uploaded: 2\n" in status
        assert "thumbnail errors: 2\n" in status  # notes.jpg, letter.pdf
        assert "patients/P1/2025-11-10/notes.jpg: no thumbnail: " in status
        assert "empty.jpg" not in status
        size = a_photo().stat().st_size
        cache = next(ln for ln in status.splitlines()
                     if ln.startswith("cache: "))
        assert " MiB (" in cache and "bytes) on disk of 10.0 GiB (" in \
            cache, cache
        assert int(cache.split("(")[1].split()[0]) >= size, cache
        log = m.log_text()
        assert "stored patients/P1/2025-11-10/empty.jpg (an empty file: " \
            "no thumbnail)" in log
        assert "error: thumbnail of 'patients/P1/2025-11-10/empty.jpg'" \
            not in log
    finally:
        m.stop()
    m.start()
    try:
        status = (m.mnt / ".thumbfs/status").read_text()
        assert "notes.jpg: no thumbnail" in status  # across the remount
        (m.batch() / "notes.jpg").unlink()
        status = (m.mnt / ".thumbfs/status").read_text()
        assert "notes.jpg" not in status  # gone with the file
        assert "letter.pdf: no thumbnail" in status
    finally:
        m.stop()


def test_failed_truncating_open_keeps_acknowledged_content(thumbfs_bin,
                                                           tmp_path):
    """An open(O_TRUNC) (or a create over a file) that the daemon cannot
    carry out (here EMFILE: its file limit lowered with prlimit) changes
    nothing: the content acknowledged before, still waiting for the store,
    is uploaded, now and after a remount."""
    port = _closed_port()
    m = Mount(thumbfs_bin, tmp_path, "file")
    good = dict(m.config["store"])
    m.config["store"] = {"url": "s3://nowhere", "path_style": "true",
                         "endpoint": f"http://127.0.0.1:{port}",
                         "access_key_id": "K", "secret_access_key": "S"}
    m.config["fs"]["unmount_drain_s"] = "0"
    m.start()
    try:
        d = m.batch()
        data = a_photo().read_bytes()
        (d / "a.jpg").write_bytes(data)  # acknowledged by close()
        wait_for(lambda: m.rows("name = 'a.jpg'"), 10, "the row")
        pid = m.proc.pid
        # below what it has open: every new descriptor fails (the runner
        # opens and closes the spool file as it retries)
        n = len(os.listdir(f"/proc/{pid}/fd")) // 2
        soft, hard = next(ln.split()[3:5]
                          for ln in open(f"/proc/{pid}/limits")
                          if ln.startswith("Max open files"))
        subprocess.run(["prlimit", "--pid", str(pid),
                        f"--nofile={n}:{hard}"], check=True)
        try:
            for flags in (os.O_WRONLY | os.O_TRUNC,
                          os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
                with pytest.raises(OSError) as e:
                    os.close(os.open(d / "a.jpg", flags))
                assert e.value.errno == errno.EMFILE
        finally:
            subprocess.run(["prlimit", "--pid", str(pid),
                            f"--nofile={soft}:{hard}"], check=True)
        assert (d / "a.jpg").read_bytes() == data
    finally:
        m.stop()
    m.config["store"] = good
    m.start()
    try:
        m.wait_uploaded("a.jpg", 60)
        assert m.object(PREFIX + "a.jpg") == data
        assert (m.batch() / "a.jpg").read_bytes() == data
    finally:
        m.stop()
