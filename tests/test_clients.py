"""Real clients on a real mount: the nightly rsync of a FileMaker export,
and GIO, the code under GNOME Files."""
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
    --delete leaves the thumbnails alone."""
    export = tmp_path / "export"
    srcs = photos()[:6]
    for i, p in enumerate(srcs):
        d = export / "patients" / f"P{i % 3}" / f"2025-11-1{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, d / p.name)
        os.chmod(d / p.name, 0o640)
    (tmp_path / "m").mkdir()
    m = Mount(thumbfs_bin, tmp_path / "m", "file").start()
    try:
        nightly = ["--delete", "--exclude=*_thumb.*"]
        assert rsync(export, m.mnt, *nightly) == len(srcs)
        for p in srcs:
            m.wait_uploaded(p.name)
        assert len(m.object_keys()) == 2 * len(srcs)
        assert not any("/." in k for k in m.object_keys())
        # times, sizes and modes round-trip: the second run sends nothing
        assert rsync(export, m.mnt, *nightly) == 0
        # one source changed: exactly that file is sent and ingested again
        changed = next(export.rglob(srcs[0].name))
        shutil.copy(srcs[1], changed)
        before = m.log_text().count("imported ")
        assert rsync(export, m.mnt, *nightly) == 1
        wait_for(lambda: m.log_text().count("imported ") == before + 1, 60,
                 "the changed file to be ingested again")
        # the thumbnails are still there after --delete
        rel = changed.relative_to(export)
        thumb = (m.mnt / rel).with_name(changed.stem + "_thumb.jpg")
        assert thumb.exists()
        for p in export.rglob("*.jpg"):
            r = p.relative_to(export)
            assert os.stat(m.mnt / r).st_mode == os.stat(p).st_mode
            assert os.stat(m.mnt / r).st_mtime == os.stat(p).st_mtime
        assert os.stat(m.mnt / next(export.rglob(srcs[2].name)).relative_to(
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
