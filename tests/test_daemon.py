"""The daemon as sysadmins of sshfs, s3fs and rclone expect it: every
config mistake at once, SIGHUP re-reading the config, a log that goes
somewhere, an unmount that gives the mount point back at once, and one
process owning a catalog. Real FUSE mounts, file:// store."""
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from PIL import Image

from conftest import SANITIZER_MARKS, Mount, photos, wait_for


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def store_away(m, drain_s):
    """[store] pointing at a port nobody listens on: uploads wait."""
    m.config["store"] = {"url": "s3://nowhere", "path_style": "true",
                         "endpoint": f"http://127.0.0.1:{closed_port()}",
                         "access_key_id": "K", "secret_access_key": "S"}
    m.config["fs"]["unmount_drain_s"] = str(drain_s)


def in_mount_table(mnt):
    return any(f" {mnt} " in ln
               for ln in Path("/proc/mounts").read_text().splitlines())


def clean(text):
    for mark in SANITIZER_MARKS:
        assert mark not in text, text


def test_every_config_error_at_once(thumbfs_bin, tmp_path):
    conf = tmp_path / "mount.conf"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    conf.write_text("[stroe]\nurl = file:///tmp/x\n"
                    "[store]\nurl = file:///tmp/x\nmultipart_threshold = 1G\n"
                    "part_size = 64M\ndsn = host=db\n"
                    "[catalog]\ndir = var/lib/thumbfs\n"
                    "[cache]\nmax_bytes = 10 GB\n"
                    "[fs]\nworkres = 4\nuid = nobody-thumbfs\n")
    r = subprocess.run([str(thumbfs_bin), str(conf), str(mnt), "-f"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    print(r.stderr)
    want = [
        "mount.conf:1: unknown section [stroe]; did you mean [store]?",
        "mount.conf:7: 'dsn' is not a key of [store]; it belongs in "
        "[postgres]",
        "mount.conf:9: 'dir' in [catalog] must be an absolute path",
        "mount.conf:11: 'max_bytes' in [cache] must be a size from 0 to "
        "1024T (bytes, or with K, M, G or T), not '10 GB'",
        "mount.conf:13: unknown key 'workres' in [fs]; did you mean "
        "'workers'?",
        "mount.conf:14: 'uid' in [fs] must be a user name or number; there "
        "is no user 'nobody-thumbfs'"]
    lines = r.stderr.splitlines()
    for w in want:
        assert any(w in ln for ln in lines), (w, r.stderr)
    assert len(lines) == len(want), r.stderr
    assert not in_mount_table(mnt)


def test_sighup_applies_what_it_can_and_says_what_waits(thumbfs_bin,
                                                        tmp_path):
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        d = m.batch()
        shutil.copy(photos()[0], d / "before.jpg")
        m.wait_uploaded("before.jpg")
        assert max(Image.open(d / "before_thumb.jpg").size) == 300
        m.config["thumbnail"] = {"max_width": "120", "max_height": "120"}
        m.config["cache"] = {"max_bytes": "1G"}
        m.config["fs"]["workers"] = "3"
        m.write_config()
        os.kill(m.proc.pid, signal.SIGHUP)
        wait_for(lambda: "reloaded" in m.log_text(), 20, "the reload")
        log = m.log_text()
        assert "'max_width' in [thumbnail] changed: applied" in log
        assert "'max_bytes' in [cache] changed: applied" in log
        assert (f"'workers' in [fs] changed in {m.conf.resolve()}: it takes "
                "effect at the next mount") in log
        assert "3 change(s) applied, 1 for the next mount" in log
        shutil.copy(photos()[0], d / "after.jpg")
        m.wait_uploaded("after.jpg")
        assert max(Image.open(d / "after_thumb.jpg").size) == 120
        # a file with a mistake changes nothing, and says where it is
        m.conf.write_text(m.conf.read_text().replace("max_width = 120",
                                                     "max_width = wide"))
        os.kill(m.proc.pid, signal.SIGHUP)
        wait_for(lambda: "the old settings stay" in m.log_text(), 20,
                 "the refused reload")
        assert "'max_width' in [thumbnail] must be a whole number" in \
            m.log_text()
        shutil.copy(photos()[1], d / "still.jpg")
        m.wait_uploaded("still.jpg")
        assert max(Image.open(d / "still_thumb.jpg").size) == 120
    finally:
        m.stop()


def daemon(m, *extra, stderr=None):
    """Start m as a daemon (no -f): returns once the parent has exited."""
    m.write_config()
    r = subprocess.run([str(m.binary), str(m.conf), str(m.mnt), *extra],
                       stdout=subprocess.DEVNULL,
                       stderr=stderr or subprocess.PIPE, timeout=60)
    assert r.returncode == 0, r.stderr
    assert os.path.ismount(m.mnt)


def owner_pid(m):
    return int((m.data / "owner").read_text().split()[0])


def wait_gone(pid, timeout=30):
    def gone():
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True
    wait_for(gone, timeout, f"pid {pid} to exit")


def test_log_file_for_a_daemon(thumbfs_bin, tmp_path):
    """-o log=FILE, then [log] file: a daemon's lines are in the file."""
    m = Mount(thumbfs_bin, tmp_path, "file")
    log = tmp_path / "from-option.log"
    daemon(m, "-o", f"log={log}")
    pid = owner_pid(m)
    shutil.copy(photos()[0], m.batch() / "a.jpg")
    wait_for(lambda: "imported patients/P1/2025-11-10/a.jpg" in
             log.read_text(), 60, "the import in the log file")
    assert f"thumbfs[{pid}]: mounted" in log.read_text()
    subprocess.run(["fusermount3", "-u", str(m.mnt)], check=True)
    wait_gone(pid)
    assert "unmounted" in log.read_text()
    clean(log.read_text())

    other = tmp_path / "from-config.log"
    m.config["log"] = {"file": str(other)}
    daemon(m)
    pid = owner_pid(m)
    subprocess.run(["fusermount3", "-u", str(m.mnt)], check=True)
    wait_gone(pid)
    assert "mounted" in other.read_text() and "unmounted" in \
        other.read_text()
    m.config["log"] = {"file": "relative.log"}
    m.write_config()
    r = subprocess.run([str(m.binary), str(m.conf), str(m.mnt)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "'file' in [log] must be an absolute path" in r.stderr


def test_daemon_without_syslog_logs_to_its_stderr(thumbfs_bin, tmp_path):
    """Where nothing answers on /dev/log (a container), a daemon with no
    log file keeps the stderr it was started with, and says so there."""
    m = Mount(thumbfs_bin, tmp_path, "file")
    err = tmp_path / "stderr.txt"
    with open(err, "wb") as f:
        daemon(m, stderr=f)
    pid = owner_pid(m)
    subprocess.run(["fusermount3", "-u", str(m.mnt)], check=True)
    wait_gone(pid)
    text = err.read_text()
    syslog_up = os.path.exists("/dev/log") and subprocess.run(
        ["logger", "--socket-errors=on", "-u", "/dev/log", "thumbfs-test"],
        capture_output=True).returncode == 0
    if syslog_up:
        assert "syslog cannot be reached" not in text
    else:
        assert "syslog cannot be reached" in text
        assert "mounted" in text and "unmounted" in text
    clean(text)


def test_unmount_gives_the_mount_point_back_at_once(thumbfs_bin, tmp_path):
    """fusermount3 -u with uploads still waiting: the mount point leaves
    the mount table at once; the process works on in the background; a
    second mount of the same catalog waits for it with a message; Ctrl-C
    ends that work, and the process exits 0."""
    m = Mount(thumbfs_bin, tmp_path, "file")
    store_away(m, 120)
    m.start()
    shutil.copy(photos()[0], m.batch() / "waiting.jpg")
    wait_for(lambda: m.rows(), 10, "the catalog row")
    t0 = time.monotonic()
    subprocess.run(["fusermount3", "-u", str(m.mnt)], check=True,
                   timeout=10)
    wait_for(lambda: not in_mount_table(m.mnt), 5, "the mount point back")
    assert time.monotonic() - t0 < 5
    wait_for(lambda: "still queued; working on" in m.log_text(), 10,
             "the drain")
    assert m.proc.poll() is None  # working on, in the background
    assert "finishing the uploads of" in (m.data / "owner").read_text()

    second = subprocess.Popen([str(thumbfs_bin), str(m.conf), str(m.mnt),
                               "-f"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        line = second.stdout.readline()
        assert "is held by pid" in line and \
            "which is finishing the uploads of" in line and \
            "waiting for it" in line, line
        assert not in_mount_table(m.mnt)
        m.proc.send_signal(signal.SIGINT)  # Ctrl-C: the drain stops
        assert m.proc.wait(30) == 0
        m.proc = None
        m.logf.close()
        assert "stopped working on the queue, as asked" in m.log_text()
        wait_for(lambda: in_mount_table(m.mnt), 30, "the second mount")
        assert "is done; going on" in second.stdout.readline()
    finally:
        # Ctrl-C unmounts; a second Ctrl-C ends the wait on the store
        for _ in range(120):
            second.send_signal(signal.SIGINT)
            try:
                second.wait(0.5)
                break
            except subprocess.TimeoutExpired:
                pass
        out, _ = second.communicate(timeout=60)
    assert second.returncode == 0, out
    clean(out)
    assert m.rows()[0]["state"] == "spooled"  # kept for the next mount


def test_ctrl_c_exits_zero(thumbfs_bin, tmp_path):
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    m.proc.send_signal(signal.SIGINT)
    assert m.proc.wait(30) == 0, m.log_text()
    m.proc = None
    m.logf.close()
    assert not in_mount_table(m.mnt)
    clean(m.log_text())


def catches_sigint(pid):
    """Whether pid has a handler for SIGINT (before that, no program can
    help being killed by it)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("SigCgt:"):
                return int(line.split()[1], 16) & (1 << (signal.SIGINT - 1))
    except FileNotFoundError:
        pass
    return False


def test_ctrl_c_at_any_moment_exits_zero(thumbfs_bin, tmp_path):
    """Ctrl-C again and again from the moment the daemon can catch it, as
    an impatient user or a service manager does: it ends, exits 0 and
    leaves no mount behind, wherever in its start or stop each signal
    lands (no moment where a signal meets the default and kills it)."""
    m = Mount(thumbfs_bin, tmp_path, "file")
    m.write_config()
    for delay in (0.0, 0.01, 0.03, 0.1, 0.3):
        p = subprocess.Popen([str(thumbfs_bin), str(m.conf), str(m.mnt),
                              "-f"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: catches_sigint(p.pid) or p.poll() is not None, 30,
                 "a handler of SIGINT")
        time.sleep(delay)
        for _ in range(20000):
            if p.poll() is not None:
                break
            p.send_signal(signal.SIGINT)
            time.sleep(0.001)
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, f"after {delay} s: {p.returncode}\n{out}"
        assert not in_mount_table(m.mnt), out


def test_one_owner_per_catalog(thumbfs_bin, tmp_path):
    """A second mount of a mounted catalog is refused and told by whom."""
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        other = tmp_path / "other"
        other.mkdir()
        r = subprocess.run([str(thumbfs_bin), str(m.conf), str(other), "-f"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0
        assert (f"the catalog {m.data} is in use: mounted on {m.mnt} by pid "
                f"{m.proc.pid}") in r.stderr, r.stderr
        assert not in_mount_table(other)
    finally:
        m.stop()


def test_files_open_at_unmount_are_let_go(thumbfs_bin, tmp_path):
    """SIGTERM while files are open (the status file, an image being
    written): the daemon ends cleanly, exit 0, its handles freed (the
    sanitizer build would report them as leaks)."""
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    status = open(m.mnt / ".thumbfs/status")
    image = open(m.batch() / "open.jpg", "wb")
    image.write(b"written, never closed before the unmount")
    image.flush()
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(60) == 0, m.log_text()
    m.proc = None
    m.logf.close()
    for f in (status, image):
        try:
            f.close()
        except OSError:
            pass  # the mount is gone
    subprocess.run(["fusermount3", "-u", "-z", str(m.mnt)],
                   capture_output=True)
    clean(m.log_text())


def status_counts(text):
    """The 'label: N' lines of the text status, as status.json names
    them."""
    out = {}
    for line in text.split("cache: ")[0].splitlines():
        label, _, value = line.rpartition(": ")
        if value.isdigit():
            name = label.replace(" (seconds)", " seconds").split(
                " (")[0].replace(" ", "_")
            out[name] = int(value)
    return out


def test_status_json_has_the_texts_numbers(thumbfs_bin, tmp_path):
    """.thumbfs/status.json, for scripts: one JSON object with the same
    numbers, states and problems as .thumbfs/status, listed beside it."""
    import json
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        d = m.batch()
        (d / "ok.jpg").write_bytes(photos()[0].read_bytes())
        (d / "broken.jpg").write_bytes(b"\xff\xd8\xff not a JPEG \"quoted\"")
        wait_for(lambda: len(m.rows("state = 'uploaded'")) == 2, 60,
                 "both stored")
        assert sorted(os.listdir(m.mnt / ".thumbfs")) == ["status",
                                                           "status.json"]
        text = (m.mnt / ".thumbfs/status").read_text()
        got = json.loads((m.mnt / ".thumbfs/status.json").read_text())
        counts = status_counts(text)
        assert counts["images_uploaded"] == 2 and \
            counts["thumbnail_errors"] == 1, text
        assert {k: got[k] for k in counts} == counts
        assert got["catalog"] == "ok" and got["store"]["state"] == "ok"
        assert got["postgres"]["state"] == "off (no dsn)"
        assert [p["path"] for p in got["problems"]] == \
            [str((d / "broken.jpg").relative_to(m.mnt))], got
        assert got["problems"][0]["what"] in text
    finally:
        m.stop()
