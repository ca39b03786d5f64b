"""Real clients on a real mount: the nightly rsync of a FileMaker export,
and GIO and KIO, the code under GNOME Files and Dolphin."""
import hashlib
import os
import shutil
import subprocess

from conftest import Mount, photos, wait_for


def rsync(src, dst, *extra):
    r = subprocess.run(["rsync", "-a", "--stats", *extra, f"{src}/",
                        f"{dst}/"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(l for l in r.stdout.splitlines()
                if l.startswith("Number of regular files transferred"))
    return int(line.split(":")[1].replace(",", ""))


def test_nightly_rsync(thumbfs_bin, tmp_path):
    """The README's nightly line: everything once, then nothing, then
    exactly what changed; rsync's temp files never reach the store, and
    --delete leaves the thumbnails alone. patients/ keeps the mode and
    group the README has the export's patients/ given (rsync -a copies
    them), night after night."""
    import grp
    export = tmp_path / "export" / "patients"
    srcs = photos()[:6]
    for i, p in enumerate(srcs):
        d = export / f"P{i % 3}" / f"2025-11-1{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, d / p.name)
        os.chmod(d / p.name, 0o640)
    staff = grp.getgrnam("users").gr_gid
    os.chown(export, -1, staff)  # the README's chgrp and chmod 2770
    os.chmod(export, 0o2770)
    (tmp_path / "m").mkdir()
    m = Mount(thumbfs_bin, tmp_path / "m", "file").start()
    dest = m.mnt / "patients"
    try:
        nightly = ["--delete", "--exclude=*_thumb.*"]
        assert rsync(export, dest, *nightly) == len(srcs)
        for _ in range(2):
            st = os.stat(dest)
            assert (st.st_mode & 0o7777, st.st_gid) == (0o2770, staff)
            assert rsync(export, dest, *nightly) == 0
        for p in srcs:
            m.wait_uploaded(p.name)
        assert len(m.object_keys()) == 2 * len(srcs)
        assert not any("/." in k for k in m.object_keys())
        # times, sizes and modes round-trip: the second run sends nothing
        assert rsync(export, dest, *nightly) == 0
        # one source changed: exactly that file is sent and ingested again
        changed = next(export.rglob(srcs[0].name))
        shutil.copy(srcs[1], changed)
        before = m.log_text().count("imported ")
        assert rsync(export, dest, *nightly) == 1
        wait_for(lambda: m.log_text().count("imported ") == before + 1, 60,
                 "the changed file to be ingested again")
        # the thumbnails are still there after --delete
        rel = changed.relative_to(export)
        thumb = (dest / rel).with_name(changed.stem + "_thumb.jpg")
        assert thumb.exists()
        for p in export.rglob("*.jpg"):
            r = p.relative_to(export)
            assert os.stat(dest / r).st_mode == os.stat(p).st_mode
            assert os.stat(dest / r).st_mtime == os.stat(p).st_mtime
        assert os.stat(dest / next(export.rglob(srcs[2].name)).relative_to(
            export)).st_mode & 0o777 == 0o640
    finally:
        m.stop()


def gio(*args, stdin=None):
    r = subprocess.run(["gio", *map(str, args)], input=stdin,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def test_gio_the_code_under_gnome_files(thumbfs_bin, tmp_path):
    """GIO, as GNOME Files drives it: copy, a folder made and filled, save
    (and save again over the file, through a .goutputstream temp file),
    and the free-space query."""
    (tmp_path / "m").mkdir()
    m = Mount(thumbfs_bin, tmp_path / "m", "file").start()
    try:
        srcs = photos()[:3]
        d = m.batch()
        gio("copy", srcs[0], d / "dragged.jpg")
        folder = m.mnt / "patients/P1/2025-11-12"
        gio("mkdir", folder)
        for p in srcs[1:]:
            gio("copy", p, folder)
        gio("save", d / "saved.jpg", stdin=srcs[0].read_bytes())
        for name in ["dragged.jpg", "saved.jpg"] + [p.name for p in srcs[1:]]:
            m.wait_uploaded(name)
        # saving over the file replaces it: a new upload of the same row
        gio("save", d / "saved.jpg", stdin=srcs[1].read_bytes())
        wait_for(lambda: (d / "saved.jpg").read_bytes() ==
                 srcs[1].read_bytes(), 30, "the replaced file")
        want = hashlib.sha256(srcs[1].read_bytes()).hexdigest()
        wait_for(lambda: m.rows("name = 'saved.jpg'")[0]["sha256"] == want,
                 60, "the replaced file to be ingested")
        assert len(m.rows("name = 'saved.jpg'")) == 1
        assert not any("goutputstream" in k for k in m.object_keys())
        info = gio("info", "-f", d)
        assert "filesystem::free:" in info and "filesystem::size:" in info
        assert "dragged_thumb.jpg" in os.listdir(d)
    finally:
        m.stop()


def sh(cmd, cwd):
    r = subprocess.run(["bash", "-ec", cmd], cwd=cwd, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"{cmd}\n{r.stdout}{r.stderr}"
    return r.stdout


def test_scripts(thumbfs_bin, tmp_path):
    """The shell tools scripts use, with the results POSIX promises."""
    (tmp_path / "m").mkdir()
    m = Mount(thumbfs_bin, tmp_path / "m", "file").start()
    src = photos()[0]
    try:
        d = m.batch()
        sh(f"cp -a '{src}' a.jpg && cat '{src}' > b.jpg && "
           f"dd if='{src}' of=c.jpg bs=64k conv=fsync status=none", d)
        for n in "abc":
            m.wait_uploaded(f"{n}.jpg")
            assert (d / f"{n}.jpg").read_bytes() == src.read_bytes()
        assert os.stat(d / "a.jpg").st_mtime == os.stat(src).st_mtime
        # metadata: touch -d, chmod, and what ls, stat, find, du, df say
        sh("touch -d '2020-02-03 04:05:06' a.jpg && chmod 600 a.jpg", d)
        st = os.stat(d / "a.jpg")
        assert st.st_mode & 0o777 == 0o600
        assert sh("stat -c %y a.jpg", d).startswith("2020-02-03 04:05:06")
        assert "a_thumb.jpg" in sh("ls -l", d)
        found = sh("find . -name '*.jpg' | sort", m.mnt).split()
        assert "./patients/P1/2025-11-10/a.jpg" in found
        assert int(sh("du -sk .", d).split()[0]) > 0
        df = sh("df -P .", d).splitlines()[1].split()
        # the config as the source, the spool's disk's figures
        assert df[0] == str(m.conf.resolve()) and int(df[1]) > 0
        # mv within the mount, from outside, and over an existing file
        sh("mv a.jpg moved.jpg", d)
        m.wait_uploaded("moved.jpg")
        assert not m.rows("name = 'a.jpg'")
        outside = tmp_path / "outside.jpg"
        shutil.copy(photos()[1], outside)
        sh(f"mv '{outside}' from_outside.jpg", d)
        m.wait_uploaded("from_outside.jpg")
        sh("mv -f b.jpg c.jpg", d)
        wait_for(lambda: len(m.rows("name IN ('b.jpg', 'c.jpg')")) == 1, 30,
                 "one row for the renamed-over file")
        # truncate: the file shrinks and is ingested again
        sh("truncate -s 100 c.jpg", d)
        wait_for(lambda: m.rows("name = 'c.jpg'")[0]["file_size"] == 100,
                 30, "the truncated size")
        # rm and rmdir: the objects go, the directory can go
        sh("rm moved.jpg from_outside.jpg c.jpg", d)
        wait_for(lambda: m.object_keys() == [], 60, "the objects to go")
        sh(f"rmdir '{d}' && rmdir '{d.parent}'", m.mnt)
        assert not d.exists()
    finally:
        m.stop()


def kio(*args):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR",
                                              "/tmp/runtime-root"))
    os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
    r = subprocess.run(["kioclient5", "--noninteractive", *map(str, args)],
                       capture_output=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr.decode()
    return r.stderr.decode()


def test_kio_the_code_under_dolphin(thumbfs_bin, tmp_path):
    """KDE's KIO, as Dolphin drives it (kioclient5 from kde-cli-tools):
    a file copied, a folder copied, a file moved in from outside and
    within; KIO's NAME.part files never reach the store."""
    (tmp_path / "m").mkdir()
    m = Mount(thumbfs_bin, tmp_path / "m", "file").start()
    try:
        srcs = photos()[:4]
        d = m.batch()
        kio("copy", srcs[0], d / "dragged.jpg")
        folder = tmp_path / "2025-11-12"
        folder.mkdir()
        for p in srcs[1:3]:
            shutil.copy(p, folder)
        kio("copy", folder, m.mnt / "patients/P1")
        outside = tmp_path / "moved.jpg"
        shutil.copy(srcs[3], outside)
        kio("move", outside, d)
        kio("move", d / "dragged.jpg", d / "renamed.jpg")
        names = ["renamed.jpg", "moved.jpg"] + [p.name for p in srcs[1:3]]
        for name in names:
            m.wait_uploaded(name)
        assert not outside.exists()
        assert (d / "renamed.jpg").read_bytes() == srcs[0].read_bytes()
        assert (m.mnt / "patients/P1/2025-11-12" / srcs[1].name
                ).read_bytes() == srcs[1].read_bytes()
        wait_for(lambda: "renamed_thumb.jpg" in os.listdir(d), 30,
                 "the thumbnail")
        assert sorted(r["name"] for r in m.rows()) == sorted(names)
        wait_for(lambda: not any(k.endswith((".part", "dragged.jpg"))
                                 for k in m.object_keys()), 30,
                 "the store to hold only the images")
        assert not any(".part" in k for k in m.object_keys())
    finally:
        m.stop()
