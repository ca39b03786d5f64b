"""Real clients on a real mount: the nightly rsync of a FileMaker export."""
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
