"""Monitoring (#30): thumbfs check CONFIG answers as a Nagios/Icinga plugin
does (one line, exit 0/1/2/3) from the running mount's status file."""
import re
import subprocess
import time

from conftest import S3_KEY, Mount, photos, proxied_mount, wait_for

LINE = re.compile(r"^THUMBFS (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+"
                  r"( \| \S+=[^ ]+( \S+=[^ ]+)*)?\n$")


def check(m, *args):
    r = subprocess.run([str(m.binary), "check", str(m.conf), *args],
                       capture_output=True, text=True, timeout=60)
    assert LINE.match(r.stdout), r.stdout + r.stderr
    return r.returncode, r.stdout


def test_check_says_ok_on_a_healthy_mount(thumbfs_bin, tmp_path):
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        d = m.batch()
        (d / "a.jpg").write_bytes(photos()[0].read_bytes())
        m.wait_uploaded("a.jpg")
        rc, out = check(m)
        assert rc == 0 and out.startswith("THUMBFS OK - "), out
        # perfdata: value, warn and crit of each threshold, and the rest
        assert "oldest_job_age=0s;3600;14400;0;" in out
        assert "failed_for_good=0;1;50;0;" in out
        assert "sync_lag=0s;300;1800;0;" in out
        assert " images=1;;;0;" in out
    finally:
        m.stop()


def test_check_is_critical_when_no_mount_runs(thumbfs_bin, tmp_path):
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    m.stop()
    rc, out = check(m)
    assert rc == 2 and "THUMBFS CRITICAL - no mount is running" in out, out


def test_check_is_critical_within_a_minute_of_the_store_refusing(
        thumbfs_bin, tmp_path, s3server, proxy):
    """Revoked credentials (403 InvalidAccessKeyId): uploads stop, and
    check says CRITICAL as soon as the mount knows."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        assert check(m)[0] == 0
        proxy.deny_key(S3_KEY)
        (m.batch() / "a.jpg").write_bytes(photos()[0].read_bytes())
        start = time.monotonic()
        wait_for(lambda: check(m)[0] == 2, 60, "check to say CRITICAL")
        rc, out = check(m)
        assert "store" in out and "InvalidAccessKeyId" in out, out
        print(f"CRITICAL after {time.monotonic() - start:.1f} s")
    finally:
        m.stop()


def test_check_warns_when_a_job_waits_past_the_limit(thumbfs_bin, tmp_path,
                                                     s3server, proxy):
    """A store that holds an upload: the oldest waiting job's age passes
    the warning limit given, and check says WARNING, then OK once it is
    stored."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy).start()
    try:
        proxy.stall(1, 8, "PUT")
        (m.batch() / "a.jpg").write_bytes(photos()[0].read_bytes())
        wait_for(lambda: check(m, "--queue-age", "3,600")[0] == 1, 30,
                 "check to say WARNING")
        rc, out = check(m, "--queue-age", "3,600")
        assert "oldest_job_age" in out and "(limit 3)" in out, out
        m.wait_uploaded("a.jpg", 60)
        wait_for(lambda: check(m, "--queue-age", "3,600")[0] == 0, 30,
                 "check to say OK again")
    finally:
        m.stop()


def test_check_refuses_bad_limits(thumbfs_bin, tmp_path):
    m = Mount(thumbfs_bin, tmp_path, "file")
    m.write_config()
    for args in (["--queue-age", "10,5"], ["--failed", "x"], ["--nope"]):
        r = subprocess.run([str(m.binary), "check", str(m.conf), *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 3, (args, r.stdout, r.stderr)


def test_check_is_critical_when_the_mount_hangs(thumbfs_bin, tmp_path):
    """A daemon that answers nothing (stopped here with SIGSTOP): check
    says CRITICAL within its own time limit, never hangs with it."""
    import signal
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        m.proc.send_signal(signal.SIGSTOP)
        start = time.monotonic()
        rc, out = check(m)
        took = time.monotonic() - start
        m.proc.send_signal(signal.SIGCONT)
        assert rc == 2 and "does not answer" in out, out
        assert took < 40, took
    finally:
        m.proc.send_signal(signal.SIGCONT)
        m.stop()


def test_check_is_critical_when_postgresql_is_away(thumbfs_bin, tmp_path):
    """A dsn nobody answers on (PostgreSQL down): images cannot reach the
    web app's tables, and check says so."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    m = Mount(thumbfs_bin, tmp_path, "file")
    m.config["fs"]["unmount_drain_s"] = "0"
    m.config["postgres"] = {"dsn": f"host=127.0.0.1 port={port} "
                                   "dbname=none connect_timeout=2"}
    m.start()
    try:
        wait_for(lambda: check(m)[0] == 2, 60, "check to say CRITICAL")
        rc, out = check(m)
        assert "PostgreSQL" in out, out
        # uploads wait too: their keys are claimed in PostgreSQL
        (m.batch() / "a.jpg").write_bytes(photos()[0].read_bytes())

        def age():
            return int(re.search(r"oldest_job_age=(\d+)s", check(m)[1])[1])
        wait_for(lambda: age() >= 3, 30, "the waiting upload to age")
    finally:
        m.stop()
