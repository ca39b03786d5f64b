"""Thumbnails are made in a worker process (#31, isolation): a decoder
that crashes or hangs on a file costs that file's thumbnail (recorded as
its error, the original stored), never the mount, and the next file gets
its thumbnail from a new worker."""
import os
import re
import signal
import subprocess
import time

from conftest import Mount, photos, wait_for


def workers(m):
    """The pids of the mount's thumbnail workers."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if ppid == m.proc.pid and b"--thumb-worker" in argv[1:2]:
            out.append(int(pid))
    return out


def request_waiting(pid):
    """Bytes waiting in the worker's socket (a request it has not read)."""
    out = subprocess.run(["ss", "-x", "-p", "-H"], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        if f"pid={pid}," in line:
            return int(line.split()[2]) > 0
    return False


def one_worker(m, workers_cfg=1):
    d = m.batch()
    (d / "first.jpg").write_bytes(photos()[0].read_bytes())
    m.wait_uploaded("first.jpg")
    pids = wait_for(lambda: workers(m), 10, "a thumbnail worker")
    assert len(pids) == workers_cfg, pids
    return d, pids[0]


def isolated_mount(thumbfs_bin, tmp_path, **thumbnail):
    m = Mount(thumbfs_bin, tmp_path, "file")
    m.config["fs"]["workers"] = "1"
    m.config["thumbnail"] = thumbnail
    return m.start()


def test_a_decoder_that_crashes_costs_one_thumbnail(thumbfs_bin, tmp_path):
    m = isolated_mount(thumbfs_bin, tmp_path)
    try:
        d, pid = one_worker(m)
        os.kill(pid, signal.SIGSTOP)
        (d / "crash.jpg").write_bytes(photos()[1].read_bytes())
        # the request is in the worker's socket: it crashes on it (an
        # abort(), as a failed assertion or an uncaught C++ exception in
        # a decoder; the sanitizers would report a SIGSEGV as their own)
        wait_for(lambda: request_waiting(pid), 30, "the request")
        os.kill(pid, signal.SIGABRT)
        os.kill(pid, signal.SIGCONT)
        row = m.wait_uploaded("crash.jpg")
        assert row["error"] == ("the decoder crashed on this file "
                                "(Aborted)"), row
        assert row["width"] == 0 and not row["s3_thumbnail_key"]
        assert m.object(row["s3_key"]) == photos()[1].read_bytes()
        # the mount serves on; the next file has its thumbnail
        (d / "after.jpg").write_bytes(photos()[2].read_bytes())
        after = m.wait_uploaded("after.jpg")
        assert after["width"] > 0 and after["s3_thumbnail_key"], after
        assert (d / "after_thumb.jpg").read_bytes()[:2] == b"\xff\xd8"
        assert pid not in workers(m)
        status = (m.mnt / ".thumbfs" / "status").read_text()
        assert "crash.jpg: no thumbnail: the decoder crashed" in status
    finally:
        m.stop()


def test_a_decoder_that_hangs_is_stopped(thumbfs_bin, tmp_path):
    """worker_cpu_s = 5: a worker that does not answer in 2 x 5 + 10 s is
    killed, and the file marked. (Not less: a fresh worker's first photo
    takes over 2 s of CPU under ThreadSanitizer.)"""
    m = isolated_mount(thumbfs_bin, tmp_path, worker_cpu_s="5")
    try:
        d, pid = one_worker(m)
        os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        (d / "hang.jpg").write_bytes(photos()[1].read_bytes())
        row = m.wait_uploaded("hang.jpg", 90)
        took = time.monotonic() - start
        assert row["error"] == ("the decoder did not finish this file in "
                                "20 s: stopped"), row
        assert 19 < took < 60, took
        assert pid not in workers(m)
        (d / "after.jpg").write_bytes(photos()[2].read_bytes())
        assert m.wait_uploaded("after.jpg")["s3_thumbnail_key"]
    finally:
        m.stop()


def test_a_worker_killed_while_idle_costs_nothing(thumbfs_bin, tmp_path):
    """A worker gone between files (the OOM killer, an admin) is not the
    next file's fault: it is started again and the file gets its
    thumbnail."""
    m = isolated_mount(thumbfs_bin, tmp_path)
    try:
        d, pid = one_worker(m)
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        (d / "next.jpg").write_bytes(photos()[1].read_bytes())
        row = m.wait_uploaded("next.jpg")
        assert row["error"] == "" and row["s3_thumbnail_key"], row
    finally:
        m.stop()


def test_workers_end_with_the_mount(thumbfs_bin, tmp_path):
    m = isolated_mount(thumbfs_bin, tmp_path)
    d, pid = one_worker(m)
    m.stop()
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
             re.search(r"State:\s+Z", open(f"/proc/{pid}/status").read()),
             10, "the worker to end")


def test_workers_are_confined(thumbfs_bin, tmp_path):
    """Each worker runs under its seccomp filter (thumb/confine.c; what it
    denies is tests/unit/test_thumb.c's test_confined), and says nothing
    of not being confined in the log."""
    m = isolated_mount(thumbfs_bin, tmp_path)
    try:
        d, pid = one_worker(m)
        status = open(f"/proc/{pid}/status").read()
        assert re.search(r"^Seccomp:\s+2$", status, re.M), status
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
        assert "not confined" not in m.log.read_text()
        # and still makes thumbnails (PDF: fontconfig may not write)
        subprocess.run(["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE",
                        "-sDEVICE=pdfwrite", "-o", str(tmp_path / "a.pdf"),
                        "-c", "/Helvetica findfont 20 scalefont setfont "
                        "72 700 moveto (Consent) show showpage"],
                       check=True, timeout=60)
        (d / "consent.pdf").write_bytes((tmp_path / "a.pdf").read_bytes())
        row = m.wait_uploaded("consent.pdf")
        assert row["error"] == "" and row["s3_thumbnail_key"], row
    finally:
        m.stop()
