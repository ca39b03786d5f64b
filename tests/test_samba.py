"""The mount shared with Windows and Mac through Samba (Debian's smbd, on
127.0.0.1 and a port of its own, with its own state directories),
driven by smbclient over SMB3 as Explorer and Finder drive it: drag in
files and a folder of folders, rename, delete a selection and a whole
folder, save through a temporary name; the Mac share with vfs_fruit and
streams_xattr. The smb.conf here is README's "Sharing with Windows and
Mac"."""
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import Mount, free_port, photos, wait_for

SMBD = shutil.which("smbd") or "/usr/sbin/smbd"
PASSWORD = "clinic-test-1"

# README, "Sharing with Windows and Mac": the share's part
SHARE = """\
[clinic]
  path = {mnt}
  read only = no
  valid users = {user}
  # thumbfs keeps modes and owners; Samba need not emulate DOS ones
  store dos attributes = no
  map archive = no
  # a file a client marked read-only may still be deleted
  delete readonly = yes
  # no ACLs on a FUSE mount
  nt acl support = no
  ea support = yes
{mac}"""

MAC = """\
  vfs objects = fruit streams_xattr
  fruit:metadata = stream
  fruit:resource = stream
  fruit:veto_appledouble = no
  fruit:wipe_intentionally_left_blank_rfork = yes
  fruit:delete_empty_adfiles = yes
"""


class Smbd:
    def __init__(self, base, mnt, mac):
        self.base = Path(base)
        self.port = free_port()
        self.conf = self.base / "smb.conf"
        for d in ("private", "lock", "state", "cache", "pid", "log"):
            (self.base / d).mkdir()
        b = self.base
        self.conf.write_text(f"""\
[global]
  server role = standalone server
  interfaces = 127.0.0.1
  bind interfaces only = yes
  smb ports = {self.port}
  private dir = {b}/private
  lock directory = {b}/lock
  state directory = {b}/state
  cache directory = {b}/cache
  pid directory = {b}/pid
  log file = {b}/log/%m.log
  log level = 1
  server min protocol = SMB2
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  passdb backend = tdbsam:{b}/private/passdb.tdb
""" + SHARE.format(mnt=mnt, user="root", mac=MAC if mac else ""))
        subprocess.run(["smbpasswd", "-c", str(self.conf), "-s", "-a",
                        "root"], input=f"{PASSWORD}\n{PASSWORD}\n",
                       text=True, check=True, capture_output=True)
        self.proc = subprocess.Popen(
            [SMBD, "--foreground", "--no-process-group",
             f"--configfile={self.conf}", "--debug-stdout"],
            stdout=open(self.base / "smbd.out", "wb"),
            stderr=subprocess.STDOUT,
            # smbd ends by signalling its process group: its own
            start_new_session=True)
        wait_for(lambda: self.up(), 30, "smbd to answer")

    def up(self):
        assert self.proc.poll() is None, self.log()
        r = subprocess.run(self.cmd("ls"), capture_output=True, text=True)
        return r.returncode == 0

    def cmd(self, commands):
        return ["smbclient", "-m", "SMB3", "-p", str(self.port),
                "//127.0.0.1/clinic", "-U", f"root%{PASSWORD}",
                "-c", commands]

    def run(self, commands, check=True):
        """smbclient's commands; its output. smbclient exits 0 after a
        failed command unless it is the last: each failure is also in its
        output as NT_STATUS_..., which check refuses."""
        r = subprocess.run(self.cmd(commands), capture_output=True,
                           text=True, timeout=120)
        out = r.stdout + r.stderr
        if check:
            assert r.returncode == 0 and "NT_STATUS_" not in out, out
        return out

    def log(self):
        return "".join(p.read_text(errors="replace")
                       for p in [self.base / "smbd.out",
                                 *sorted((self.base / "log").glob("*"))]
                       if p.is_file())

    def stop(self):
        # its children too (one per client), which outlive it otherwise
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(params=["windows", "mac"])
def shared(request, thumbfs_bin, tmp_path):
    if not os.path.exists(SMBD) or not shutil.which("smbclient"):
        pytest.skip("Samba is not installed (apt-get install samba "
                    "smbclient)")
    m = Mount(thumbfs_bin, tmp_path, "file")
    m.config["fs"]["allow_other"] = "true"
    m.start()
    tmp = tempfile.mkdtemp(prefix="thumbfs-smbd-")
    s = None
    try:
        s = Smbd(tmp, m.mnt, request.param == "mac")
        yield m, s
    finally:
        if s:
            s.stop()
        m.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def local_tree(tmp, srcs):
    """A folder as a person drags it: a patient with two dates."""
    top = tmp / "drag" / "P7"
    for date, files in (("2025-11-10", srcs[:2]), ("2025-11-11", srcs[2:3])):
        (top / date).mkdir(parents=True)
        for s in files:
            shutil.copy(s, top / date / s.name)
    return top


def test_drag_in_rename_and_delete_a_folder(shared, tmp_path):
    m, s = shared
    srcs = photos()[:3]
    top = local_tree(tmp_path, srcs)
    # a patient's folder of dates, dragged in (Explorer: mkdir, put)
    s.run(f"lcd {top.parent}; cd patients; recurse on; prompt off;"
          " mput P7")
    for src in srcs[:2]:
        m.wait_uploaded(src.name)
    m.wait_uploaded(srcs[2].name)
    d = m.mnt / "patients/P7/2025-11-10"
    assert sorted(os.listdir(d)) == sorted(
        [x.name for x in srcs[:2]] +
        [x.stem + "_thumb.jpg" for x in srcs[:2]])
    for src in srcs[:2]:
        assert (d / src.name).read_bytes() == src.read_bytes()
    # a rename in Explorer
    s.run(f"cd patients/P7/2025-11-10; rename {srcs[0].name} renamed.jpg")
    m.wait_uploaded("renamed.jpg")
    # a selection with a thumbnail in it, the thumbnail first
    out = s.run("cd patients/P7/2025-11-10; ls")
    assert "renamed_thumb.jpg" in out, out
    s.run("cd patients/P7/2025-11-10; del renamed_thumb.jpg;"
          " del renamed.jpg")
    # a whole folder (Explorer's delete of a patient, smbclient deltree)
    s.run("cd patients; deltree P7")
    assert os.listdir(m.mnt / "patients") == []
    assert m.rows() == []
    wait_for(lambda: m.object_keys() == [], 30, "the objects to go")


def test_save_through_a_temporary_name(shared, tmp_path):
    """Word, Photoshop and Finder save as ~WRL0001.tmp (or a hidden
    name) and rename it over the file: the image is its new content."""
    m, s = shared
    srcs = photos()[:2]
    d = m.batch("P8", "2025-11-10")
    shutil.copy(srcs[0], d / "scan.jpg")
    m.wait_uploaded("scan.jpg")
    s.run(f"lcd {srcs[1].parent}; cd patients/P8/2025-11-10;"
          f" put {srcs[1].name} ~WRL0001.tmp;"
          " rename ~WRL0001.tmp scan.jpg -f")
    wait_for(lambda: [r["sha256"] for r in m.rows(
        "name = 'scan.jpg' AND state = 'uploaded'")] == [
        __import__("hashlib").sha256(srcs[1].read_bytes()).hexdigest()],
        60, "scan.jpg's new content uploaded")
    assert sorted(os.listdir(d)) == ["scan.jpg", "scan_thumb.jpg"]
    assert "~WRL0001" not in (m.mnt / ".thumbfs/status").read_text()


def test_a_mount_without_allow_other_says_what_to_set(thumbfs_bin, tmp_path):
    """Behind Samba, a mount without allow_other refuses every client
    (smbd acts as each user, and the kernel lets in only the mount's
    owner) and thumbfs never sees a request: its log says so at mount."""
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        wait_for(lambda: "only uid 0 may use the mount: [fs] allow_other"
                 " = true" in m.log_text(), 30, "the line")
    finally:
        m.stop()
    m.config["fs"]["allow_other"] = "true"
    m.start()
    try:
        wait_for(lambda: m.log_text().count(": mounted ") == 2, 30,
                 "the second mount's line")
        assert m.log_text().count("only uid 0 may use the mount") == 1
    finally:
        m.stop()


def test_new_folder_then_rename_and_a_dropped_folder_of_folders(shared,
                                                                tmp_path):
    """Explorer makes "New folder" (Finder "untitled folder") and the
    person then types its name; a folder dropped in may hold folders whose
    names are no date. Held until renamed (test_held.py), never refused."""
    m, s = shared
    srcs = photos()[:2]
    s.run('cd patients; mkdir "New folder"; rename "New folder" P20;'
          ' cd P20; mkdir "untitled folder";'
          ' rename "untitled folder" 2025-11-10')
    s.run(f"lcd {srcs[0].parent}; cd patients/P20/2025-11-10;"
          f" put {srcs[0].name} a.jpg")
    m.wait_uploaded("a.jpg")
    # a patient's folder typed as people write it, with a folder of scans
    top = tmp_path / "drag" / "Müller Anna"
    (top / "Scans").mkdir(parents=True)
    shutil.copy(srcs[1], top / "Scans" / "b.jpg")
    s.run(f"lcd {top.parent}; cd patients; recurse on; prompt off;"
          ' mput "Müller Anna"')
    assert (m.mnt / "patients/Müller Anna/Scans/b.jpg").read_bytes() == \
        srcs[1].read_bytes()
    out = s.run('cd "patients/Müller Anna"; ls')
    assert "Scans" in out, out
    assert [r["name"] for r in m.rows()] == ["a.jpg"]
    s.run('cd "patients/Müller Anna"; rename Scans 2025-11-11;'
          ' cd ..; rename "Müller Anna" P21')
    m.wait_uploaded("b.jpg")
    assert sorted(os.listdir(m.mnt / "patients")) == ["P20", "P21"]
    assert "NT_STATUS" not in s.log()


def test_a_downloaded_folder_put_back(shared, tmp_path):
    """A date's folder downloaded with its thumbnails and dragged back
    (Explorer replaces each file): no error, the archive unchanged; a
    photo named like a thumbnail goes in as an image (#28)."""
    m, s = shared
    srcs = photos()[:2]
    d = m.batch("P30", "2025-11-10")
    for x in srcs:
        shutil.copy(x, d / x.name)
        m.wait_uploaded(x.name)
    wait_for(lambda: len(os.listdir(d)) == 4, 30, "the thumbnails")
    before = sorted((r["name"], r["sha256"]) for r in m.rows())
    down = tmp_path / "down"
    down.mkdir()
    s.run(f"lcd {down}; cd patients/P30; recurse on; prompt off;"
          " mget 2025-11-10")
    assert len(os.listdir(down / "2025-11-10")) == 4
    s.run(f"lcd {down}; cd patients/P30; recurse on; prompt off;"
          " mput 2025-11-10")
    assert sorted((r["name"], r["sha256"]) for r in m.rows()) == before
    s.run(f"lcd {srcs[0].parent}; cd patients/P30/2025-11-10;"
          f" put {srcs[0].name} right_thumb.jpg")
    m.wait_uploaded("right_thumb.jpg")
