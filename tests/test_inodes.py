"""The mount's inodes (#27): the kernel's node ids are the daemon's own
(fs/inode.c, fs/lowlevel.c): kept while the kernel holds a name, freed
when it forgets it, given with a listing's attributes (READDIRPLUS), and
a file's the same across a rename, as on a local disk; an image in the
catalog has its row's id (fs/rowino.c), for which nothing is kept; a name
another mount removes is told to the kernel at once."""
import os
import shutil
import subprocess
from pathlib import Path

from conftest import Mount, photos, settled, wait_for
from test_actors import solid
from test_metrics import metrics_mount, scrape


def drop_caches():
    """The kernel forgets every name nothing uses (as under memory
    pressure)."""
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("2")


def inodes(m):
    return scrape(m)["thumbfs_kernel_inodes"]


def forgets(m):
    return scrape(m)["thumbfs_kernel_forgets_total"]


def two_mounts(thumbfs_bin, tmp_path, dsn):
    """Mounts a and b on one store and one PostgreSQL; b's metrics on."""
    store = tmp_path / "store"
    store.mkdir()
    mounts = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        m = Mount(thumbfs_bin, tmp_path / name, "file")
        m.config["store"]["url"] = f"file://{store}"
        m.config["postgres"] = {"dsn": dsn}
        mounts.append(metrics_mount(m) if name == "b" else m)
    for m in mounts:
        m.start()
    return mounts


def test_names_the_kernel_forgets_are_freed(thumbfs_bin, tmp_path):
    """A walk of 300 names makes the daemon keep a node for each; when the
    kernel forgets them, the daemon lets them go (no node kept for each
    name ever looked up)."""
    m = metrics_mount(Mount(thumbfs_bin, tmp_path, "file")).start()
    try:
        d = m.batch()
        names = [f"scan{i}.txt" for i in range(300)]
        for n in names:
            (d / n).write_bytes(n.encode())
        wait_for(lambda: settled(m), 60, "the uploads")
        drop_caches()
        wait_for(lambda: inodes(m) < 20, 20, "the kernel's forgets")
        before = inodes(m)
        for n in names:
            assert os.stat(d / n).st_size == len(n)
        assert inodes(m) >= before + 300
        drop_caches()
        wait_for(lambda: inodes(m) <= before + 5, 20,
                 "the kernel's forgets after the walk")
    finally:
        m.stop()


def test_a_listing_gives_its_entries_attributes(thumbfs_bin, tmp_path):
    """Listing a folder the first time gives the kernel each entry with
    its attributes (READDIRPLUS): it holds every name after the listing
    alone, and ls -l, find and du look none up again."""
    m = metrics_mount(Mount(thumbfs_bin, tmp_path, "file")).start()
    try:
        d = m.batch()
        for i in range(100):
            (d / f"l{i}.txt").write_bytes(b"x" * i)
        wait_for(lambda: settled(m), 60, "the uploads")
        drop_caches()
        wait_for(lambda: inodes(m) < 20, 20, "the kernel's forgets")
        before = inodes(m)
        names = os.listdir(d)
        assert len([n for n in names if n.startswith("l")]) == 100
        assert inodes(m) >= before + 100
        sizes = {e.name: e.stat().st_size for e in os.scandir(d)}
        assert all(sizes[f"l{i}.txt"] == i for i in range(100))
    finally:
        m.stop()


def test_a_file_keeps_its_inode_across_a_rename(thumbfs_bin, tmp_path):
    """st_ino is the file's through a rename and while it is open, as
    rsync and tar's hard-link detection and a file manager expect."""
    m = Mount(thumbfs_bin, tmp_path, "file").start()
    try:
        d = m.batch()
        (d / "a.txt").write_bytes(b"content")
        ino = os.stat(d / "a.txt").st_ino
        with open(d / "a.txt", "rb") as f:
            os.rename(d / "a.txt", d / "b.txt")
            assert os.fstat(f.fileno()).st_ino == ino
            assert os.stat(d / "b.txt").st_ino == ino
            assert f.read() == b"content"
        assert not (d / "a.txt").exists()
        assert os.stat(d / "b.txt").st_ino != os.stat(d / "..").st_ino
    finally:
        m.stop()


def test_a_name_removed_elsewhere_is_told_to_the_kernel(thumbfs_bin, tmp_path,
                                                       clean_postgres):
    """Another mount removes an image whose name and thumbnail this
    mount's kernel holds: once the sync has applied it, the kernel is told
    (notify_inval_entry), drops both names and forgets their nodes, rather
    than keeping them until memory runs short."""
    mounts = two_mounts(thumbfs_bin, tmp_path, clean_postgres.dsn)
    a, b = mounts
    try:
        src = photos()[0]
        da = a.batch()
        shutil.copy(src, da / "gone.jpg")
        shutil.copy(src, da / "kept.jpg")
        db = b.mnt / "patients/P1/2025-11-10"
        wait_for(lambda: db.is_dir() and {"gone_thumb.jpg", "kept_thumb.jpg"}
                 <= set(os.listdir(db)), 60, "the images in mount b")
        for n in ("gone.jpg", "gone_thumb.jpg", "kept.jpg"):
            assert os.stat(db / n).st_size > 0
        held = forgets(b)
        os.unlink(da / "gone.jpg")
        wait_for(lambda: "gone.jpg" not in os.listdir(db), 60,
                 "the removal in mount b")
        wait_for(lambda: forgets(b) >= held + 2, 10,
                 "the kernel told of the removed names")
        assert os.stat(db / "kept.jpg").st_size > 0
        assert not (db / "gone.jpg").exists()
    finally:
        for m in mounts:
            m.stop()


def test_an_image_in_the_catalog_has_its_rows_inode(thumbfs_bin, tmp_path,
                                                    clean_postgres):
    """Mount b walks 100 images mount a stored and their thumbnails: the
    kernel holds each by its catalog row's id, and b keeps no node for any
    (only for the folders).
    Such a file keeps its st_ino through a rename, and its content while
    it is open after an unlink, as any other; what those need is let go
    when the kernel forgets."""
    a, b = two_mounts(thumbfs_bin, tmp_path, clean_postgres.dsn)
    try:
        da = a.batch()
        content = {}
        for i in range(100):
            content[i] = solid((i, 2 * i, 255 - i), (64, 48))
            (da / f"r{i}.jpg").write_bytes(content[i])
        db = b.mnt / "patients/P1/2025-11-10"
        wait_for(lambda: db.is_dir() and len(
            [n for n in os.listdir(db) if n.startswith("r")]) == 200, 60,
            "the images and thumbnails in mount b")
        drop_caches()
        wait_for(lambda: inodes(b) < 20, 20, "the kernel's forgets")
        before = inodes(b)
        inos = {os.stat(db / f"r{i}{t}.jpg").st_ino
                for i in range(100) for t in ("", "_thumb")}
        assert len(inos) == 200
        assert inodes(b) <= before + 3  # patients, P1, the date
        for e in os.scandir(db):  # READDIRPLUS: the same ids
            if e.name.startswith("r"):
                assert e.inode() in inos
        assert inodes(b) <= before + 3

        ino = os.stat(db / "r1.jpg").st_ino
        os.rename(db / "r1.jpg", db / "moved.jpg")
        assert os.stat(db / "moved.jpg").st_ino == ino
        assert (db / "moved.jpg").read_bytes() == content[1]
        assert not (db / "r1.jpg").exists()

        with open(db / "r2.jpg", "rb") as f:
            ino = os.fstat(f.fileno()).st_ino
            os.unlink(db / "r2.jpg")
            assert not (db / "r2.jpg").exists()
            assert os.fstat(f.fileno()).st_ino == ino
            assert f.read() == content[2]
        assert "r2.jpg" not in os.listdir(db)
        wait_for(lambda: "r2.jpg" not in os.listdir(da), 60,
                 "the unlink in mount a")

        drop_caches()
        wait_for(lambda: inodes(b) <= before, 20,
                 "the kernel's forgets after the rename and the unlink")
    finally:
        for m in (a, b):
            m.stop()
