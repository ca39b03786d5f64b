"""Files behave as on a local disk where the tree allows: each test does the
same on a date directory of the mount and on a directory of the local disk
(ext4 here), and compares; where the archive decides instead (one
thumbnail per image, names the store can hold), the rule is checked."""
import errno
import io
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import Mount, photos, psnr, wait_for


def jpeg(seed, size=(640, 480)):
    """A JPEG unlike the others: a flat colour by seed, with a bar."""
    img = Image.new("RGB", size, ((seed * 97) % 256, (seed * 57) % 256,
                                  (seed * 31) % 256))
    img.paste((255 - (seed * 97) % 256, 0, 0), (0, 0, size[0] // 3, size[1]))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def png_bytes(seed, size=(320, 240)):
    img = Image.new("RGB", size, (seed % 256, 200, 100))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def local(tmp_path):
    d = tmp_path / "ext4"
    d.mkdir()
    return d


def open_file_ops(d, name):
    """What a handle may still do once its name is gone (unlink)."""
    p = d / name
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"0123456789")
        os.unlink(p)
        out = {}
        st = os.fstat(fd)
        out["size"], out["nlink"] = st.st_size, st.st_nlink
        os.fchmod(fd, 0o600)
        out["mode"] = stat.S_IMODE(os.fstat(fd).st_mode)
        os.fchown(fd, 0, 0)
        os.utime(fd, (1000000000, 1000000000))
        out["mtime"] = os.fstat(fd).st_mtime
        os.setxattr(fd, "user.note", b"kept")
        out["xattr"] = os.getxattr(fd, "user.note")
        os.write(fd, b"more")
        out["read"] = os.pread(fd, 100, 0)
    finally:
        os.close(fd)
    out["listed"] = sorted(os.listdir(d))
    return out


def test_a_handle_outlives_its_name(file_mount, local):
    """fd = open(); unlink(); fstat, fchmod, fchown, futimens, fsetxattr,
    write and read on fd work as on ext4, and nothing is left behind."""
    d = file_mount.batch()
    assert open_file_ops(d, "u1") == open_file_ops(local, "u1")
    assert file_mount.rows("name = 'u1'") == []


def test_a_handle_outlives_a_rename_over_it(file_mount, local):
    """fd = open(old); rename(new, old): fd still reads the old content
    and fstat works."""
    def run(d):
        (d / "old.bin").write_bytes(b"old content")
        (d / "new.bin").write_bytes(b"new")
        fd = os.open(d / "old.bin", os.O_RDONLY)
        try:
            os.rename(d / "new.bin", d / "old.bin")
            st = os.fstat(fd)
            return (st.st_size, os.pread(fd, 100, 0),
                    (d / "old.bin").read_bytes(), sorted(os.listdir(d)))
        finally:
            os.close(fd)
    d = file_mount.batch()
    assert run(d)[:3] == run(local)[:3]
    file_mount.wait_uploaded("old.bin")
    assert run(local)[3] == ["old.bin"]
    assert [n for n in os.listdir(d) if not n.endswith("_thumb.jpg")] == \
        ["old.bin"]


def test_no_ghost_after_unlink_or_rename_of_an_open_file(thumbfs_bin,
                                                          tmp_path):
    """open, write, unlink, close leaves nothing; open ra, write, rename to
    rb, write, close leaves rb with both writes, and no ra: not listed,
    not in the catalog, not after a remount."""
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        d = m.batch()
        fd = os.open(d / "q1.jpg", os.O_CREAT | os.O_RDWR, 0o644)
        os.write(fd, jpeg(1))
        os.unlink(d / "q1.jpg")
        os.close(fd)
        fd = os.open(d / "ra.jpg", os.O_CREAT | os.O_RDWR, 0o644)
        data = jpeg(2)
        os.write(fd, data[:1000])
        os.rename(d / "ra.jpg", d / "rb.jpg")
        os.write(fd, data[1000:])
        os.close(fd)
        m.wait_uploaded("rb.jpg")
        assert (d / "rb.jpg").read_bytes() == data
        assert sorted(os.listdir(d)) == ["rb.jpg", "rb_thumb.jpg"]
        assert [r["name"] for r in m.rows()] == ["rb.jpg"]
    finally:
        m.stop()
    m.start()
    try:
        assert sorted(os.listdir(m.batch())) == ["rb.jpg", "rb_thumb.jpg"]
        assert [r["name"] for r in m.rows()] == ["rb.jpg"]
    finally:
        m.stop()


def create_modes(d):
    out = []
    old = os.umask(0o022)
    try:
        for i, mode in enumerate((0o4755, 0o2755, 0o6777, 0o1755)):
            fd = os.open(d / f"m{i}.bin", os.O_CREAT | os.O_WRONLY, mode)
            os.close(fd)
            out.append(oct(stat.S_IMODE(os.stat(d / f"m{i}.bin").st_mode)))
        os.chmod(d / "m0.bin", 0o4711)
        out.append(oct(stat.S_IMODE(os.stat(d / "m0.bin").st_mode)))
    finally:
        os.umask(old)
    return out


def test_setuid_and_setgid_kept_on_create(file_mount, local):
    """open(O_CREAT, 04755) as root gives 4755, as on ext4."""
    assert create_modes(file_mount.batch()) == create_modes(local)


@pytest.fixture
def base():
    d = tempfile.mkdtemp(prefix="thumbfs-posix-", dir="/tmp")
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def test_a_setgid_directory_passes_its_group(thumbfs_bin, base):
    """In a directory chown 0:65533 and chmod 2777, what root and uid 65534
    create takes group 65533 (and a directory keeps the setgid bit), as
    on ext4."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    m = Mount(thumbfs_bin, base, "file")
    m.config["fs"]["allow_other"] = "true"
    m.start()
    try:
        os.chmod(m.mnt / "patients", 0o755)
        (m.mnt / "patients/P1").mkdir()
        loc = base / "ext4"
        (loc / "P1").mkdir(parents=True)

        def run(top):
            os.chown(top / "P1", 0, 65533)
            os.chmod(top / "P1", 0o2777)
            (top / "P1/2025-11-10").mkdir()
            d = top / "P1/2025-11-10"
            st = os.stat(d)
            out = [(st.st_gid, bool(st.st_mode & stat.S_ISGID))]
            os.chmod(d, 0o2777)
            (d / "root.bin").write_bytes(b"r")
            subprocess.run(["sh", "-c", f"echo n > '{d}/nobody.bin'"],
                           user=65534, group=65534, extra_groups=[],
                           check=True)
            for n in ("root.bin", "nobody.bin"):
                st = os.stat(d / n)
                out.append((n, st.st_uid, st.st_gid))
            return out
        assert run(m.mnt / "patients") == run(loc)
    finally:
        m.stop()


def test_special_files_are_refused_with_eperm(file_mount):
    """mkfifo, mknod and bind are refused as links are: EPERM."""
    d = file_mount.batch()
    for make in (lambda p: os.mkfifo(p),
                 lambda p: os.mknod(p, 0o600 | stat.S_IFCHR, os.makedev(1, 3))):
        with pytest.raises(PermissionError):
            make(d / "special")
    s = socket.socket(socket.AF_UNIX)
    with pytest.raises(OSError) as e:
        s.bind(str(d / "sock"))
    s.close()
    assert e.value.errno == errno.EPERM
    assert os.listdir(d) == []


def test_every_accepted_name_is_stored(file_mount):
    """The longest name the mount accepts is stored, with its thumbnail,
    and unmounts at once; a longer visible name is refused at create with
    ENAMETOOLONG (a hidden one stays local, up to 255 bytes)."""
    d = file_mount.batch()
    longest = "x" * 238 + ".jpg"  # 242 bytes
    (d / longest).write_bytes(jpeg(3))
    row = file_mount.wait_uploaded(longest, 30)
    assert file_mount.object(row["s3_key"]) == jpeg(3)
    assert file_mount.object(row["s3_thumbnail_key"])[:2] == b"\xff\xd8"
    for n in (243, 250, 255):
        with pytest.raises(OSError) as e:
            (d / ("y" * (n - 4) + ".jpg")).write_bytes(b"z")
        assert e.value.errno == errno.ENAMETOOLONG
    (d / ("." + "h" * 254)).write_bytes(b"hidden")
    assert "File name too long" not in file_mount.log_text()


def thumb_of(data):
    img = Image.open(io.BytesIO(data)).convert("RGB")
    img.thumbnail((300, 300), Image.Resampling.LANCZOS)
    return img


def test_no_two_images_share_a_thumbnail(mount):
    """a.jpg, a.JPG and a.jpeg each get a thumbnail of their own: distinct
    names and keys, each its own picture; the first keeps the app's
    {stem}_thumb{ext}; removing one leaves the others whole, and none
    changes its thumbnail when another goes or is rewritten."""
    d = mount.batch()
    srcs = {"a.jpg": jpeg(10), "a.JPG": jpeg(11), "a.jpeg": jpeg(12),
            "a.JPG.jpg": jpeg(13)}
    for name, data in srcs.items():
        (d / name).write_bytes(data)
        mount.wait_uploaded(name)
    rows = {r["name"]: r for r in mount.rows()}
    thumbs = [rows[n]["thumbnail_name"] for n in srcs]
    keys = [rows[n]["s3_thumbnail_key"] for n in srcs]
    assert len(set(thumbs)) == len(srcs) and len(set(keys)) == len(srcs)
    assert rows["a.jpg"]["thumbnail_name"] == "a_thumb.jpg"
    listed = os.listdir(d)
    assert len(listed) == len(set(listed)) == 2 * len(srcs)
    for name, data in srcs.items():
        got = Image.open(io.BytesIO(
            (d / rows[name]["thumbnail_name"]).read_bytes())).convert("RGB")
        want = thumb_of(data)
        assert got.size == want.size
        assert psnr(got, want) > 30, name
        others = [thumb_of(v) for k, v in srcs.items() if k != name]
        assert all(psnr(got, o) < 20 for o in others), name
        assert Image.open(io.BytesIO(mount.object(
            rows[name]["s3_thumbnail_key"]))).size == want.size
    os.unlink(d / "a.jpg")
    (d / "a.jpeg").write_bytes(jpeg(14))
    wait_for(lambda: mount.rows("name = 'a.jpeg' AND state = 'uploaded'"
                                " AND sha256 != ?",
                                (rows["a.jpeg"]["sha256"],)), 30,
             "a.jpeg again")
    after = {r["name"]: r for r in mount.rows()}
    for name in ("a.JPG", "a.jpeg", "a.JPG.jpg"):
        assert after[name]["thumbnail_name"] == rows[name]["thumbnail_name"]
        (d / after[name]["thumbnail_name"]).read_bytes()
    wait_for(lambda: rows["a.jpg"]["s3_thumbnail_key"] not in
             mount.object_keys(), 30, "a.jpg's thumbnail to go")
    for name in ("a.JPG", "a.jpeg", "a.JPG.jpg"):
        mount.object(after[name]["s3_thumbnail_key"])
    subprocess.run(["tar", "cf", "/dev/null", "."], cwd=d, check=True)


def test_a_rewrite_in_another_format_removes_the_old_thumbnail(mount):
    """x.jpg rewritten with PNG bytes: x_thumb.png is stored and listed,
    x_thumb.jpg leaves the store and the listing."""
    d = mount.batch()
    (d / "x.jpg").write_bytes(jpeg(20))
    first = mount.wait_uploaded("x.jpg")
    assert first["thumbnail_name"] == "x_thumb.jpg"
    (d / "x.jpg").write_bytes(png_bytes(21))
    wait_for(lambda: mount.rows("name = 'x.jpg' AND state = 'uploaded' AND"
                                " thumbnail_name = 'x_thumb.png'"), 30,
             "the PNG thumbnail")
    wait_for(lambda: first["s3_thumbnail_key"] not in mount.object_keys(),
             30, "the old thumbnail to leave the store")
    assert sorted(os.listdir(d)) == ["x.jpg", "x_thumb.png"]


def test_copies_out_of_and_into_the_mount_say_nothing(file_mount, tmp_path):
    """cp -a and mv out of the mount and back in print no error for the
    read-only user.thumbfs.* attributes (sets of them are ignored)."""
    d = file_mount.batch()
    shutil.copy(photos()[0], d / "p.jpg")
    file_mount.wait_uploaded("p.jpg")
    out = tmp_path / "out"
    out.mkdir()
    for cmd in (["cp", "-a", str(d / "p.jpg"), str(out / "p.jpg")],
                ["mv", str(out / "p.jpg"), str(d / "q.jpg")],
                ["mv", str(d / "q.jpg"), str(out / "q.jpg")],
                ["cp", "-a", str(out / "q.jpg"), str(d / "r.jpg")]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", (cmd, r)
    file_mount.wait_uploaded("r.jpg")
    assert os.getxattr(d / "r.jpg", "user.thumbfs.state") == b"uploaded"
    os.setxattr(d / "r.jpg", "user.thumbfs.state", b"spooled")
    assert os.getxattr(d / "r.jpg", "user.thumbfs.state") == b"uploaded"


KEYS = "patients/filemaker-import/images/"


def moved_everywhere(m, want):
    """Every row is where want ({name: (patient, date)}) says, its keys
    there, and the store holds those keys and no old ones."""
    rows = {r["name"]: r for r in m.rows()}
    if sorted(rows) != sorted(want):
        return False
    keys = set(m.object_keys(KEYS))
    wanted = set()
    for name, (p, d) in want.items():
        r = rows[name]
        if (r["patient_id"], r["batch_date"]) != (p, d) or \
                r["state"] != "uploaded":
            return False
        k, t = r["s3_key"], r["s3_thumbnail_key"]
        if k != f"{KEYS}{p}/{d}/{name}" or not t.startswith(f"{KEYS}{p}/{d}/"):
            return False
        wanted |= {k, t}
    return keys == wanted


def test_a_folder_moves_in_one_call(mount, tmp_path):
    """mv of a patient's folder, of a date's folder to another date and to
    another patient: one rename each, the new tree shown at once, the
    store's keys following (copied, then the old ones deleted), the
    bytes the same; onto a folder that is not empty ENOTEMPTY, onto an
    empty one it replaces it; the audit log records each; a remount shows
    the same."""
    mount.stop()
    mount.config["audit"] = {"file": str(tmp_path / "audit.log")}
    mount.start()
    data = {"a.jpg": jpeg(30), "b.jpg": jpeg(31), "c.jpg": jpeg(32)}
    (mount.mnt / "patients/P3/2025-11-10").mkdir(parents=True)
    (mount.mnt / "patients/P3/2025-11-11").mkdir()
    for name in ("a.jpg", "b.jpg"):
        (mount.mnt / "patients/P3/2025-11-10" / name).write_bytes(data[name])
    (mount.mnt / "patients/P3/2025-11-11/c.jpg").write_bytes(data["c.jpg"])
    for name in data:
        mount.wait_uploaded(name)
    p = mount.mnt / "patients"
    r = subprocess.run(["mv", str(p / "P3"), str(p / "P4")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r
    assert not (p / "P3").exists()
    assert sorted(os.listdir(p / "P4/2025-11-10")) == [
        "a.jpg", "a_thumb.jpg", "b.jpg", "b_thumb.jpg"]
    assert (p / "P4/2025-11-11/c.jpg").read_bytes() == data["c.jpg"]
    want = {"a.jpg": ("P4", "2025-11-10"), "b.jpg": ("P4", "2025-11-10"),
            "c.jpg": ("P4", "2025-11-11")}
    wait_for(lambda: moved_everywhere(mount, want), 60, "the store to follow")
    # a date to another date, and to another patient's
    os.rename(p / "P4/2025-11-10", p / "P4/2025-11-12")
    (p / "P5").mkdir()
    os.rename(p / "P4/2025-11-11", p / "P5/2025-11-11")
    want = {"a.jpg": ("P4", "2025-11-12"), "b.jpg": ("P4", "2025-11-12"),
            "c.jpg": ("P5", "2025-11-11")}
    wait_for(lambda: moved_everywhere(mount, want), 60, "the store to follow")
    for name, (pt, d) in want.items():
        assert (p / pt / d / name).read_bytes() == data[name]
        assert mount.object(f"{KEYS}{pt}/{d}/{name}") == data[name]
    # onto a folder with images: ENOTEMPTY; onto an empty one: replaced
    with pytest.raises(OSError) as e:
        os.rename(p / "P4/2025-11-12", p / "P5/2025-11-11")
    assert e.value.errno == errno.ENOTEMPTY
    (p / "P5/2025-11-13").mkdir()
    os.rename(p / "P4/2025-11-12", p / "P5/2025-11-13")
    assert sorted(os.listdir(p / "P4")) == []
    want.update({"a.jpg": ("P5", "2025-11-13"), "b.jpg": ("P5", "2025-11-13")})
    wait_for(lambda: moved_everywhere(mount, want), 60, "the store to follow")
    # a patient's folder does not become a date's
    with pytest.raises(PermissionError):
        os.rename(p / "P4", p / "P5/2025-11-14")
    audit = (tmp_path / "audit.log").read_text()
    assert '"op":"rename","path":"/patients/P3","to":"/patients/P4"' in \
        audit.replace(" ", "")
    mount.stop()
    mount.start()
    wait_for(lambda: moved_everywhere(mount, want), 30, "the same after")
    for name, (pt, d) in want.items():
        assert (p / pt / d / name).read_bytes() == data[name]


def test_a_folder_move_resumes_after_kill_9(thumbfs_bin, tmp_path, s3store):
    """kill -9 right after the rename returns: the next mount shows the new
    tree and finishes moving the store's keys."""
    m = Mount(thumbfs_bin, tmp_path, "s3", s3store).start()
    d = m.batch("P6")
    names = [f"i{i}.jpg" for i in range(6)]
    try:
        for i, name in enumerate(names):
            (d / name).write_bytes(jpeg(40 + i))
        for name in names:
            m.wait_uploaded(name)
        os.rename(m.mnt / "patients/P6", m.mnt / "patients/P7")
    finally:
        m.kill9()
    m.start()
    try:
        want = {n: ("P7", "2025-11-10") for n in names}
        wait_for(lambda: moved_everywhere(m, want), 60, "the move to resume")
        assert sorted(os.listdir(m.mnt / "patients")) == ["P7"]
        for i, name in enumerate(names):
            assert (m.mnt / "patients/P7/2025-11-10" / name).read_bytes() \
                == jpeg(40 + i)
    finally:
        m.stop()


def test_readdir_gives_each_entry_its_type(file_mount):
    """readdir says file or directory (d_type), so that a walk (os.walk,
    os.scandir's is_dir(), find's and du's fts) knows a file from a
    directory without looking up every name once more."""
    import shutil as sh
    import subprocess as sp
    if not sh.which("strace"):
        pytest.skip("strace is not installed")
    for date in ("2025-11-10", "2025-11-11", "2025-11-12"):
        d = file_mount.batch("P1", date)
        for i in range(5):
            (d / f"f{i}.txt").write_bytes(b"x")
    walk = ("import os, sys\n"
            "n = 0\n"
            "for d in ('2025-11-10', '2025-11-11', '2025-11-12'):\n"
            "    for e in os.scandir(os.path.join(sys.argv[1], d)):\n"
            "        n += e.is_file(follow_symlinks=False)\n"
            "print(n)\n")
    r = sp.run(["strace", "-f", "-c", "-e",
                "trace=newfstatat,lstat,stat,statx", "/usr/bin/python3",
                "-c", walk, str(file_mount.mnt / "patients/P1")],
               capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["15"]
    # python's own start-up stats files too: far fewer than 15 more
    base = sp.run(["strace", "-f", "-c", "-e",
                   "trace=newfstatat,lstat,stat,statx", "/usr/bin/python3",
                   "-c", "print(15)"], capture_output=True, text=True,
                  timeout=60)

    def calls(text):
        return sum(int(ln.split()[3]) for ln in text.splitlines()
                   if len(ln.split()) >= 5 and ln.split()[-1] in (
                       "newfstatat", "lstat", "stat", "statx")
                   and ln.split()[3].isdigit())
    assert calls(r.stderr) - calls(base.stderr) < 5, r.stderr


def test_a_listing_gives_each_entry_its_attributes(thumbfs_bin, tmp_path):
    """Asked for READDIRPLUS, a listing gives every entry's attributes
    with it, as stat() would: ls -l, du and find -size look up no name
    again (libfuse's debug log shows no LOOKUP of them), and what they
    show is what a stat() after the cache's second shows."""
    m = Mount(thumbfs_bin, tmp_path, "file")
    m.args = ["-d"]
    m.start()
    try:
        d = m.batch()
        want = {}
        for i, src in enumerate(photos()[:3]):
            data = src.read_bytes()
            (d / f"p{i}.jpg").write_bytes(data)
            want[f"p{i}.jpg"] = len(data)
        (d / "notes.txt").write_bytes(b"12345")
        want["notes.txt"] = 5
        for i in range(3):
            m.wait_uploaded(f"p{i}.jpg")
        time.sleep(1.5)  # what the writes left in the kernel's cache goes
        mark = len(m.log_text())
        listed = {e.name: e.stat(follow_symlinks=False)
                  for e in os.scandir(d)}
        log = m.log_text()[mark:]
        assert "LOOKUP /patients/P1/2025-11-10/" not in log, log[-3000:]
        assert sorted(listed) == sorted(
            [*want, "p0_thumb.jpg", "p1_thumb.jpg", "p2_thumb.jpg"])
        for name, size in want.items():
            assert listed[name].st_size == size, name
        time.sleep(1.5)
        for name, st in listed.items():
            now = os.lstat(d / name)
            assert (st.st_mode, st.st_size, st.st_uid, st.st_mtime_ns) == \
                (now.st_mode, now.st_size, now.st_uid, now.st_mtime_ns), name
    finally:
        m.stop()


def test_removing_entries_while_listing_meets_each_once(file_mount):
    """A listing read while its entries go (as rm -r and find -delete do)
    meets every entry once. (The listing is taken when a directory is read
    from its start, and the kernel's later requests go on from it, so
    that an entry is not skipped because others went; the kernel reads up
    to about 1 MiB a request, so a batch of 2,000 names is one.)"""
    d = file_mount.batch()
    names = {f"file-with-a-long-name-{i:04}.txt" for i in range(2000)}
    for n in names:
        (d / n).write_bytes(b"x")
    met = []
    with os.scandir(d) as it:
        for e in it:
            met.append(e.name)
            os.unlink(e.path)
    assert sorted(met) == sorted(names)
    assert os.listdir(d) == []
