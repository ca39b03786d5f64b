"""Who may do what on the mount: two unprivileged users made for the test,
the kernel checking modes and owners (default_permissions), and nothing of
a refused operation reaching the catalog or the store."""
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import Mount, photos
from test_audit import read_log

# names of this run's own: two runs of the suite on one machine (a
# developer's beside CI's) must not take each other's users away
ALICE = f"thumbfs-alice-{os.getpid()}"
BOB = f"thumbfs-bob-{os.getpid()}"


@pytest.fixture
def users():
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd")
    made = []
    for name in (ALICE, BOB):
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["useradd", "--no-create-home", "--user-group",
                        "--shell", "/usr/sbin/nologin", name], check=True)
        made.append(name)
    yield made
    for name in made:
        subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture
def base():
    # the mount point must be reachable by the two users: not under
    # pytest's private 0700 directory
    d = tempfile.mkdtemp(prefix="thumbfs-access-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_as(user, *cmd, cwd=None):
    return subprocess.run(list(cmd), user=user, group=user, extra_groups=[],
                          cwd=cwd, capture_output=True, text=True,
                          errors="replace")


def refused(res, what="Permission denied"):
    assert res.returncode != 0, res
    assert what in res.stderr, res.stderr
    return True


def access_mount(thumbfs_bin, base, **fs):
    m = Mount(thumbfs_bin, base, "file")
    m.config["fs"].update({"allow_other": "true",
                           "uploaded_by": "%u via thumbfs", **fs})
    m.config["audit"] = {"file": os.path.join(base, "audit.log")}
    return m


def test_two_users(thumbfs_bin, base, users):
    src = os.path.join(base, "src.jpg")
    shutil.copy(photos()[0], src)
    os.chmod(src, 0o644)
    m = access_mount(thumbfs_bin, base).start()
    try:
        mnt = str(m.mnt)
        # the root is open; patients/ is the mounter's to open up
        assert stat.S_IMODE(os.stat(mnt).st_mode) == 0o755
        # rsync -a sets the times of "."; its mode and owner stay
        os.utime(mnt, (1700000000, 1700000000))
        assert os.stat(mnt).st_mtime == 1700000000
        with pytest.raises(PermissionError):
            os.chmod(mnt, 0o777)
        assert stat.S_IMODE(os.stat(m.data / "spool").st_mode) == 0o700
        os.chmod(m.mnt / "patients", 0o1777)

        # alice keeps P1 to herself, P2 open for reading
        for cmd in (["mkdir", "-p", "patients/P1/2025-11-10",
                     "patients/P2/2025-11-10"],
                    ["chmod", "700", "patients/P1"],
                    ["cp", src, "patients/P1/2025-11-10/a.jpg"],
                    ["cp", src, "patients/P2/2025-11-10/c.jpg"]):
            res = run_as(ALICE, *cmd, cwd=mnt)
            assert res.returncode == 0, res
        a = m.wait_uploaded("a.jpg")
        c = m.wait_uploaded("c.jpg")
        assert a["uploaded_by"] == f"{ALICE} via thumbfs"
        alice = pwd.getpwnam(ALICE)
        st = os.stat(m.mnt / "patients/P1")
        assert (st.st_uid, st.st_gid) == (alice.pw_uid, alice.pw_gid)
        assert stat.S_IMODE(st.st_mode) == 0o700
        st = os.stat(m.mnt / "patients/P2/2025-11-10/c.jpg")
        assert st.st_uid == alice.pw_uid
        assert stat.S_IMODE(st.st_mode) == 0o644  # cp keeps the source's

        def bob_is_refused():
            p1 = "patients/P1/2025-11-10"
            assert refused(run_as(BOB, "ls", "patients/P1", cwd=mnt))
            assert refused(run_as(BOB, "cat", f"{p1}/a.jpg", cwd=mnt))
            assert refused(run_as(BOB, "cp", src, f"{p1}/b.jpg", cwd=mnt))
            p2 = "patients/P2/2025-11-10"
            assert refused(run_as(BOB, "cp", src, f"{p2}/b.jpg", cwd=mnt))
            assert refused(run_as(BOB, "sh", "-c", f"echo x >> {p2}/c.jpg",
                                  cwd=mnt))
            assert refused(run_as(BOB, "rm", "-f", f"{p2}/c.jpg", cwd=mnt))
            assert refused(run_as(BOB, "mv", f"{p2}/c.jpg", f"{p2}/d.jpg",
                                  cwd=mnt))
            assert refused(run_as(BOB, "chmod", "666", f"{p2}/c.jpg",
                                  cwd=mnt), "Operation not permitted")
            # what he may do: read what alice left readable
            res = run_as(BOB, "cmp", src, f"{p2}/c.jpg", cwd=mnt)
            assert res.returncode == 0, res

        bob_is_refused()
        m.stop()
        # modes and owners survive a remount
        m.start()
        st = os.stat(m.mnt / "patients/P1")
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (alice.pw_uid, 0o700)
        bob_is_refused()
        # nothing bob tried reached the catalog or the store
        rows = {r["name"]: r for r in m.rows()}
        assert sorted(rows) == ["a.jpg", "c.jpg"]
        assert rows["c.jpg"]["sha256"] == c["sha256"]
        assert rows["a.jpg"]["sha256"] == a["sha256"]
        names = sorted(k.rsplit("/", 1)[1] for k in m.object_keys())
        assert names == ["a.jpg", "a_thumb.jpg", "c.jpg", "c_thumb.jpg"]
        # the kernel refused bob: thumbfs never saw him, nor does its audit
        # log; alice's writes are there under her name
        events = read_log(Path(base) / "audit.log")
        assert not [e for e in events if e["user"] == BOB]
        assert [e["path"] for e in events
                if e["user"] == ALICE and e["op"] == "write"] == [
            "/patients/P1/2025-11-10/a.jpg", "/patients/P2/2025-11-10/c.jpg"]
    finally:
        m.stop()


def test_uid_gid_umask(thumbfs_bin, base, users):
    """[fs] uid, gid and umask set what the mount shows, and so whom the
    kernel lets in, as sshfs's and s3fs's options of those names do."""
    m = access_mount(thumbfs_bin, base, uid=BOB, gid=BOB,
                     umask="077").start()
    try:
        mnt = str(m.mnt)
        d = m.batch()
        shutil.copy(photos()[0], d / "a.jpg")
        os.chmod(d / "a.jpg", 0o644)
        m.wait_uploaded("a.jpg")
        bob = pwd.getpwnam(BOB)
        for p in (m.mnt, m.mnt / "patients", d, d / "a.jpg",
                  d / "a_thumb.jpg"):
            st = os.stat(p)
            assert (st.st_uid, st.st_gid) == (bob.pw_uid, bob.pw_gid), p
            assert stat.S_IMODE(st.st_mode) & 0o077 == 0, p
        assert stat.S_IMODE(os.stat(d / "a.jpg").st_mode) == 0o600
        path = "patients/P1/2025-11-10/a_thumb.jpg"
        assert run_as(BOB, "cat", path, cwd=mnt).returncode == 0
        assert refused(run_as(ALICE, "cat", path, cwd=mnt))
        assert refused(run_as(ALICE, "ls", "patients", cwd=mnt))
    finally:
        m.stop()


def test_other_users_kept_out_by_default(thumbfs_bin, base, users):
    m = Mount(thumbfs_bin, base, "file").start()
    try:
        os.chmod(m.mnt / "patients", 0o1777)
        res = run_as(ALICE, "ls", str(m.mnt / "patients"))
        assert refused(res)
    finally:
        m.stop()
