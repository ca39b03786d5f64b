"""The cache's bound ([cache] max_bytes): past it, the least recently used
content the store has gives its data back to the disk and is read from the
store by ranges; content not yet uploaded is never evicted. Against s3rver
through the suite's proxy, which records every request."""
import errno
import io
import os
import subprocess
import threading
import time

import pytest
from PIL import Image

from conftest import proxied_mount, wait_for

BOUND = 4 << 20


def photo(seed, size=724):
    """A JPEG of noise, about 0.6 MB, that differs by seed."""
    rnd = bytes((i * 7919 + seed * 104729) % 256 for i in range(97)) + \
        os.urandom(size * size * 3 - 97)
    img = Image.frombytes("RGB", (size, size), rnd)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=95)
    return out.getvalue()


def usage(m):
    """Bytes the data directory holds for images and thumbnails."""
    total = 0
    for top in (m.data / "spool" / "patients", m.data / "thumbs"):
        for root, _, files in os.walk(top):
            for f in files:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


def spool(m, name, patient="P1", date="2025-11-10"):
    return m.data / "spool" / "patients" / patient / date / name


def evicted(m):
    return sorted(r["name"] for r in m.rows("evicted = 1"))


def cache_mount(thumbfs_bin, tmp_path, s3server, proxy, bound=BOUND):
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy)
    m.config["cache"] = {"max_bytes": str(bound)}
    return m.start()


def write_all(m, files):
    d = m.batch()
    for name, data in files.items():
        (d / name).write_bytes(data)
    for name in files:
        m.wait_uploaded(name)
    return d


def test_bound_kept_and_every_file_readable(thumbfs_bin, tmp_path, s3server,
                                           proxy):
    m = cache_mount(thumbfs_bin, tmp_path, s3server, proxy)
    try:
        files = {f"img{i:02d}.jpg": photo(i) for i in range(14)}
        d = write_all(m, files)
        wait_for(lambda: usage(m) <= BOUND, 30, "the cache to trim")
        gone = evicted(m)
        assert gone, "nothing was evicted"
        # an evicted image keeps its metadata: size, mode, times, xattrs
        before = os.stat(d / gone[0])
        assert before.st_size == len(files[gone[0]])
        # (a partial last block stays allocated)
        assert os.lstat(spool(m, gone[0])).st_blocks * 512 <= 4096
        # and every image and thumbnail reads back right
        for name, data in files.items():
            assert (d / name).read_bytes() == data, name
            thumb = d / name.replace(".jpg", "_thumb.jpg")
            assert Image.open(thumb).size == (300, 300), name
        # evicted images were read by ranges, never fetched whole
        gets = [r for r in proxy.seen("GET") if gone[0] in r[1]]
        assert gets and all("range" in h for _, _, h in gets)
        after = os.stat(d / gone[0])
        assert (after.st_mode, after.st_mtime_ns, after.st_size) == \
            (before.st_mode, before.st_mtime_ns, before.st_size)
        # what was fetched again (thumbnails) is trimmed again
        files2 = {f"more{i}.jpg": photo(100 + i) for i in range(2)}
        write_all(m, files2)
        wait_for(lambda: usage(m) <= BOUND, 30, "the cache to trim again")
        assert "cache: " in (m.mnt / ".thumbfs/status").read_text()
    finally:
        m.stop()


def test_least_recently_used_goes_first(thumbfs_bin, tmp_path, s3server,
                                        proxy):
    m = cache_mount(thumbfs_bin, tmp_path, s3server, proxy)
    try:
        first = {f"a{i}.jpg": photo(i) for i in range(5)}
        d = write_all(m, first)
        time.sleep(1.1)  # a clearly later use
        assert (d / "a0.jpg").read_bytes() == first["a0.jpg"]
        write_all(m, {f"b{i}.jpg": photo(50 + i) for i in range(3)})
        wait_for(lambda: usage(m) <= BOUND, 30, "the cache to trim")
        gone = evicted(m)
        assert "a1.jpg" in gone and "a0.jpg" not in gone, gone
    finally:
        m.stop()


def test_partial_read_is_one_ranged_get(thumbfs_bin, tmp_path, s3server,
                                        proxy):
    m = cache_mount(thumbfs_bin, tmp_path, s3server, proxy, bound=1 << 20)
    try:
        big = os.urandom(3 << 20)
        d = m.batch()
        (d / "scan.tif").write_bytes(big)  # not an image: kept anyway
        m.wait_uploaded("scan.tif")
        wait_for(lambda: evicted(m) == ["scan.tif"], 30, "the eviction")
        n = len(proxy.seen("GET"))
        with open(d / "scan.tif", "rb") as f:
            assert os.pread(f.fileno(), 4096, 2 << 20) == \
                big[2 << 20:(2 << 20) + 4096]
        gets = proxy.seen("GET")[n:]
        assert len(gets) == 1, gets
        assert gets[0][2]["range"] == f"bytes={2 << 20}-{(3 << 20) - 1}"
    finally:
        m.stop()


def test_content_not_uploaded_is_never_evicted(thumbfs_bin, tmp_path,
                                               s3server, proxy):
    m = cache_mount(thumbfs_bin, tmp_path, s3server, proxy)
    try:
        proxy.fail(10 ** 6, 503, "SlowDown", method="PUT")
        files = {f"w{i:02d}.jpg": photo(200 + i) for i in range(10)}
        d = m.batch()
        for name, data in files.items():
            (d / name).write_bytes(data)
        time.sleep(4)  # several trims while the store refuses
        assert usage(m) > BOUND
        assert evicted(m) == []
        for name, data in files.items():
            assert os.lstat(spool(m, name)).st_blocks * 512 >= len(data)
            assert (d / name).read_bytes() == data
        proxy.faults.clear()
        for name in files:
            m.wait_uploaded(name)
        wait_for(lambda: usage(m) <= BOUND, 30, "the cache to trim")
        for name, data in files.items():
            assert (d / name).read_bytes() == data
    finally:
        m.stop()


def test_evicted_image_written_renamed_truncated(thumbfs_bin, tmp_path,
                                                 s3server, proxy):
    m = cache_mount(thumbfs_bin, tmp_path, s3server, proxy, bound=1 << 20)
    try:
        files = {f"e{i}.jpg": photo(300 + i) for i in range(4)}
        d = write_all(m, files)
        wait_for(lambda: len(evicted(m)) >= 3, 30, "evictions")
        a, b, c = evicted(m)[:3]
        # appended to: fetched back whole first
        with open(d / a, "ab") as f:
            f.write(b"tail")
        # renamed: the new name has the bytes, not the punched file
        os.rename(d / b, d / "renamed.jpg")
        # truncated by path
        os.truncate(d / c, 1000)
        want = {a: files[a] + b"tail", "renamed.jpg": files[b],
                c: files[c][:1000]}
        for name, data in want.items():
            assert (d / name).read_bytes() == data, name
        prefix = "patients/filemaker-import/images/P1/2025-11-10/"

        def stored():
            return all(m.object(prefix + n) == v for n, v in want.items()
                       if (prefix + n) in m.object_keys(prefix))
        for name in want:
            wait_for(lambda: any(r["state"] == "uploaded" and
                                 r["file_size"] == len(want[name])
                                 for r in m.rows("name = ?", (name,))),
                     60, f"{name} again")
        wait_for(stored, 30, "the store to have the new contents")
        assert prefix + b not in m.object_keys(prefix)
    finally:
        m.stop()


def test_read_from_the_store_while_its_folder_is_renamed(thumbfs_bin,
                                                        tmp_path, s3server,
                                                        proxy):
    """A file read from the store by ranges, open while its folder is
    renamed: the move copies its object to its new key and deletes the
    old one, and the reads that follow find the new key (found by the
    model test: EIO, the old key gone)."""
    m = cache_mount(thumbfs_bin, tmp_path, s3server, proxy, bound=1 << 20)
    try:
        files = {f"m{i}.jpg": photo(500 + i, size=1100) for i in range(2)}
        d = write_all(m, files)
        wait_for(lambda: len(evicted(m)) >= 1, 30, "an eviction")
        name = evicted(m)[0]
        assert len(files[name]) > (1 << 20) + 4096
        old = "patients/filemaker-import/images/P1/2025-11-10/" + name
        new = "patients/filemaker-import/images/P1/2025-11-12/" + name
        fd = os.open(d / name, os.O_RDONLY)
        try:
            # no readahead: each read asks the mount for its pages only
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            head = os.pread(fd, 1024, 0)
            os.rename(d, d.parent / "2025-11-12")
            wait_for(lambda: new in m.object_keys("patients/") and
                     old not in m.object_keys("patients/"), 60,
                     "the move of its object")
            tail = os.pread(fd, len(files[name]), (1 << 20) + 1024)
        finally:
            os.close(fd)
        assert head == files[name][:1024]
        assert tail == files[name][(1 << 20) + 1024:]
    finally:
        m.stop()


def test_restored_while_its_folder_is_renamed(thumbfs_bin, tmp_path,
                                               s3server, proxy):
    """An evicted file opened to be written is fetched back whole first;
    its folder renamed while the fetch waits (held by the proxy), the move
    job copies its object to the new key and deletes the old one: the
    fetch follows it to the new key, and the append lands."""
    m = cache_mount(thumbfs_bin, tmp_path, s3server, proxy, bound=1 << 20)
    try:
        files = {f"w{i}.jpg": photo(600 + i) for i in range(4)}
        d = write_all(m, files)
        wait_for(lambda: len(evicted(m)) >= 1, 30, "an eviction")
        name = evicted(m)[0]
        proxy.stall(1, 6, method="GET", match=name)
        errors = []

        def append():
            try:
                with open(d / name, "ab") as f:
                    f.write(b"tail")
            except OSError as e:
                errors.append(e)
        t = threading.Thread(target=append)
        t.start()
        wait_for(lambda: any(name in r[1] for r in proxy.seen("GET")), 10,
                 "the fetch to start")
        moved = d.parent / "2025-11-12"
        os.rename(d, moved)
        t.join(60)
        assert not errors, errors
        assert (moved / name).read_bytes() == files[name] + b"tail"
        wait_for(lambda: any(r["state"] == "uploaded" and
                             r["file_size"] == len(files[name]) + 4
                             for r in m.rows("name = ?", (name,))),
                 60, "the append uploaded")
    finally:
        m.stop()


def test_a_slow_fetch_does_not_block_the_mount(thumbfs_bin, tmp_path,
                                               s3server, proxy):
    m = cache_mount(thumbfs_bin, tmp_path, s3server, proxy, bound=1 << 20)
    try:
        files = {f"s{i}.jpg": photo(400 + i) for i in range(3)}
        d = write_all(m, files)
        wait_for(lambda: "s0.jpg" in evicted(m), 30, "the eviction")
        proxy.stall(1, 8, method="GET", match="s0.jpg")
        got = {}
        t = threading.Thread(
            target=lambda: got.update(data=(d / "s0.jpg").read_bytes()))
        t.start()
        wait_for(lambda: any("s0.jpg" in r[1] for r in proxy.seen("GET")),
                 10, "the stalled GET")
        # meanwhile: list, read another image, write a new one
        assert "s1.jpg" in os.listdir(d)
        assert (d / "s1.jpg").read_bytes() == files["s1.jpg"]
        (d / "new.jpg").write_bytes(files["s2.jpg"])
        assert t.is_alive(), "the stalled read should still be waiting"
        t.join(60)
        assert got["data"] == files["s0.jpg"]
    finally:
        m.stop()



def test_a_slow_restore_does_not_hold_another(thumbfs_bin, tmp_path,
                                              s3server, proxy):
    """Opening an evicted file to write restores it from the store first;
    a restore whose GET stalls holds that file only: another evicted file
    opened meanwhile is restored and written at once."""
    m = cache_mount(thumbfs_bin, tmp_path, s3server, proxy, bound=1 << 20)
    try:
        files = {f"s{i}.jpg": photo(500 + i) for i in range(4)}
        d = write_all(m, files)
        wait_for(lambda: {"s0.jpg", "s1.jpg"} <= set(evicted(m)), 30,
                 "the evictions")
        proxy.stall(1, 10, method="GET", match="s0.jpg")
        t = threading.Thread(target=lambda: open(d / "s0.jpg", "ab").close())
        t.start()
        wait_for(lambda: any("s0.jpg" in r[1] for r in proxy.seen("GET")),
                 10, "the stalled GET")
        t0 = time.monotonic()
        with open(d / "s1.jpg", "ab") as f:
            f.write(b"tail")
        took = time.monotonic() - t0
        assert t.is_alive(), "the stalled restore should still be waiting"
        assert took < 5, f"the other restore waited {took:.1f} s"
        t.join(60)
        assert (d / "s1.jpg").read_bytes() == files["s1.jpg"] + b"tail"
        assert (d / "s0.jpg").read_bytes() == files["s0.jpg"]
    finally:
        m.stop()


def test_a_folder_whose_images_are_in_the_store_only_is_not_empty(
        thumbfs_bin, tmp_path, s3server, proxy):
    """rmdir of a date whose images were all evicted (their data given
    back to the disk) is ENOTEMPTY, as the listing says; rm -r removes the
    images, then the folders, and the objects go."""
    m = cache_mount(thumbfs_bin, tmp_path, s3server, proxy, bound=1 << 20)
    try:
        big = os.urandom(3 << 20)
        d = m.batch()
        (d / "scan.tif").write_bytes(big)  # not an image: one file alone
        m.wait_uploaded("scan.tif")
        wait_for(lambda: evicted(m) == ["scan.tif"], 30, "the eviction")
        with pytest.raises(OSError) as e:
            os.rmdir(d)
        assert e.value.errno == errno.ENOTEMPTY
        with pytest.raises(OSError) as e:
            os.rmdir(d.parent)
        assert e.value.errno == errno.ENOTEMPTY
        assert os.listdir(d) == ["scan.tif"]
        r = subprocess.run(["rm", "-r", str(d.parent)], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        assert os.listdir(m.mnt / "patients") == []
        assert m.rows() == []
        wait_for(lambda: m.object_keys() == [], 30, "the objects to go")
    finally:
        m.stop()


def test_a_read_from_the_store_survives_one_503(thumbfs_bin, tmp_path,
                                                s3server, proxy):
    """A file whose data is in the store only, read while the store
    answers one GET with 503 SlowDown: the read failed with EIO (so did a
    rename of such a file). The GET is tried again, twice at most."""
    m = cache_mount(thumbfs_bin, tmp_path, s3server, proxy, bound=1 << 20)
    try:
        big = os.urandom(3 << 20)
        d = m.batch()
        (d / "scan.tif").write_bytes(big)
        m.wait_uploaded("scan.tif")
        wait_for(lambda: evicted(m) == ["scan.tif"], 30, "the eviction")
        proxy.fail(1, method="GET")
        with open(d / "scan.tif", "rb") as f:
            assert os.pread(f.fileno(), 4096, 1 << 20) == \
                big[1 << 20:(1 << 20) + 4096]
        # a store that keeps failing still fails the read, and not
        # forever (the kernel may ask twice: each asks three times)
        proxy.fail(30, method="GET")
        t0 = time.monotonic()
        with open(d / "scan.tif", "rb") as f:
            with pytest.raises(OSError):
                os.pread(f.fileno(), 4096, 2 << 20)
        assert time.monotonic() - t0 < 20
    finally:
        m.stop()
