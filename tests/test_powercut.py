"""Power cuts under the catalog: [catalog] dir on LazyFS, a FUSE
filesystem that keeps unsynced writes in its own cache and drops them on
command, as a power cut does (../shared/tools/lazyfs). Files are created,
rewritten after upload, truncated, renamed and unlinked, each acknowledged
by fsync (of the file, or of its directory); then the daemon is killed,
LazyFS drops what was not synced, and the daemon starts again. After every
cut: each acknowledged file has exactly its bytes, the one write in flight
is whole (its last acknowledged content) or absent, every row has its
content, and no two rows share a store key. THUMBFS_SEED=N repeats a run.

Two defects of LazyFS are kept out of the way; neither is thumbfs's, and
tests/tools/lazyfs_rename_race.py shows them without thumbfs. LazyFS keys
its cache by inode number and maps paths to inodes in two steps: a stat()
of a name during its rename or unlink (thumbfs's runners and cache walk
look at names all the time) leaves a stale map, and a file made later
under that name, or given that inode number, gets the old file's bytes or
size on fsync. So the backing directory is a tmpfs (which does not hand
out an inode number twice), and a name that was renamed away or unlinked
is not made again until the next cut (LazyFS starts afresh at each)."""
import io
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, Mount, wait_for

TOOL = ROOT.parent / "shared/tools/lazyfs"
CUTS = int(os.environ.get("THUMBFS_CUTS", "22"))
NAMES = [f"img{i}.jpg" for i in range(6)]


@pytest.fixture(scope="session")
def lazyfs_bin():
    if not (TOOL / "build").exists():
        pytest.skip(f"no LazyFS test tool at {TOOL}")
    out = ROOT / "build-lazyfs"
    exe = out / "lazyfs/lazyfs"
    if not exe.exists():
        r = subprocess.run(["bash", str(TOOL / "build"), str(out)],
                           capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0 and exe.exists(), r.stdout + r.stderr
    return exe


class LazyFS:
    """LazyFS over backing, mounted on mnt."""

    def __init__(self, exe, base):
        self.exe = exe
        self.base = Path(base)
        self.backing = self.base / "backing"
        self.mnt = self.base / "lazy"
        self.fifo = self.base / "faults.fifo"
        self.log = self.base / "lazyfs.log"
        # LazyFS takes a config path holding "-o" (as /tmp/pytest-of-root
        # does) for a FUSE option and reads its default instead: a path
        # without a dash
        self.confdir = Path(tempfile.mkdtemp(prefix="thumbfslazy_"))
        self.conf = self.confdir / "lazyfs.toml"
        self.backing.mkdir(exist_ok=True)
        self.mnt.mkdir(exist_ok=True)
        # (see the top: no inode number twice)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g,mode=0755",
                        "thumbfs-lazyfs", str(self.backing)], check=True)
        self.conf.write_text(
            f'[faults]\nfifo_path="{self.fifo}"\n'
            '[cache]\napply_eviction=false\n'
            '[cache.simple]\ncustom_size="256mb"\nblocks_per_page=1\n'
            f'[filesystem]\nlog_all_operations=false\n'
            f'logfile="{self.log}"\n')
        self.proc = None

    def start(self):
        self.out = open(self.base / "lazyfs.out", "ab")
        self.proc = subprocess.Popen(
            [str(self.exe), str(self.mnt), "--config-path", str(self.conf),
             "-o", "allow_other", "-o", "modules=subdir",
             "-o", f"subdir={self.backing}", "-f"],
            stdout=self.out, stderr=self.out)
        wait_for(lambda: os.path.ismount(self.mnt) or
                 self.proc.poll() is not None, 60, "LazyFS")
        assert self.proc.poll() is None, "LazyFS did not start"

    def cut(self):
        """Drop every byte not synced: what a power cut leaves."""
        before = self.log.read_text(errors="replace").count(
            "cache is cleared") if self.log.exists() else 0
        with open(self.fifo, "w") as f:
            f.write("lazyfs::clear-cache\n")
        wait_for(lambda: self.log.read_text(errors="replace").count(
            "cache is cleared") > before, 30, "LazyFS to drop its cache")

    def stop(self):
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)])
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.out.close()

    def remove(self):
        shutil.rmtree(self.confdir, ignore_errors=True)
        subprocess.run(["umount", "-l", str(self.backing)])


def jpeg(rng):
    w, h = rng.randint(40, 900), rng.randint(40, 700)
    img = Image.new("RGB", (w, h), tuple(rng.randrange(256)
                                         for _ in range(3)))
    img.putpixel((0, 0), (rng.randrange(256), 0, 0))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=rng.randint(50, 95))
    return out.getvalue()


def write_synced(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rows(data_dir):
    db = sqlite3.connect(data_dir / "catalog.db", timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM images")]
    finally:
        db.close()


def check(m, d, acked, in_flight, seed, cut, history):
    """The state after a cut, against the model; returns what the name
    in flight turned out to be."""
    where = f"seed {seed}, cut {cut}; the ops so far:\n" + \
        "\n".join(history[-60:]) + "\n"
    listed = sorted(n for n in os.listdir(d) if "_thumb" not in n) \
        if d.exists() else []
    for name in NAMES:
        path = d / name
        have = path.read_bytes() if name in listed else None
        if name == in_flight:
            assert have is None or have == acked.get(name), \
                f"{where}: {name} in flight is neither whole nor absent"
            if have is None:
                acked.pop(name, None)
            continue
        want = acked.get(name)
        if want is None:
            assert have is None, f"{where}: {name} should be absent"
        else:
            assert have is not None, f"{where}: acknowledged {name} is lost"
            assert have == want, f"{where}: {name} has other bytes " \
                f"({len(have)} of {len(want)}; " \
                f"{sum(1 for a, b in zip(have, want) if a != b)} differ)"
    found = [r for r in rows(m.data)
             if r["patient_id"] == "P1" and r["batch_date"] == "2025-11-10"]
    assert sorted(r["name"] for r in found) == listed, \
        f"{where}: rows {sorted(r['name'] for r in found)} vs {listed}"
    keys = [r["s3_key"] for r in found if r["s3_key"]]
    thumbs = [r["s3_thumbnail_key"] for r in found if r["s3_thumbnail_key"]]
    assert len(set(keys)) == len(keys), f"{where}: two rows, one key"
    assert len(set(thumbs)) == len(thumbs), f"{where}: two rows, one thumb"


def test_power_cuts_lose_nothing_acknowledged(thumbfs_bin, lazyfs_bin,
                                              tmp_path):
    seed = int(os.environ.get("THUMBFS_SEED", random.randrange(1 << 30)))
    print(f"THUMBFS_SEED={seed}")
    rng = random.Random(seed)
    lazy = LazyFS(lazyfs_bin, tmp_path)
    lazy.start()
    (tmp_path / "m").mkdir()
    m = Mount(thumbfs_bin, tmp_path / "m", "file")
    m.data = lazy.mnt / "data"
    m.config["catalog"]["dir"] = str(m.data)
    m.config["fs"]["unmount_drain_s"] = "0"
    acked = {}  # name -> bytes whose fsync returned
    history = []  # what was done, for the message of a failure
    starts = 0
    try:
        m.start()
        starts += 1
        for cut in range(CUTS):
            d = m.batch()
            retired = set()  # renamed away or unlinked, until LazyFS restarts
            for _ in range(rng.randint(2, 8)):
                if len(NAMES) - len(retired) < 2:
                    break  # a name for the write in flight stays
                op = rng.choice(["create", "create", "rewrite", "truncate",
                                 "rename", "unlink"])
                name = rng.choice([n for n in NAMES if n not in retired])
                present = [n for n in NAMES if n in acked]
                if op == "create" or not present:
                    data = jpeg(rng)
                    write_synced(d / name, data)
                    acked[name] = data
                    history.append(f"create {name} {len(data)}")
                elif op == "rewrite":
                    name = rng.choice(present)
                    wait_for(lambda: m.rows(
                        "name = ? AND state = 'uploaded'", (name,)), 60,
                        f"{name} uploaded")  # (a rewrite after upload)
                    data = jpeg(rng)
                    write_synced(d / name, data)
                    acked[name] = data
                    history.append(f"rewrite {name} {len(data)}")
                elif op == "truncate":
                    name = rng.choice(present)
                    k = rng.randint(0, len(acked[name]))
                    fd = os.open(d / name, os.O_WRONLY)
                    try:
                        os.ftruncate(fd, k)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    acked[name] = acked[name][:k]
                    history.append(f"truncate {name} {k}")
                elif op == "rename":
                    src = rng.choice(present)
                    if src == name:
                        continue
                    os.rename(d / src, d / name)
                    sync_dir(d)
                    retired.add(src)
                    acked[name] = acked.pop(src)
                    history.append(f"rename {src} {name}")
                else:
                    name = rng.choice(present)
                    os.unlink(d / name)
                    sync_dir(d)
                    del acked[name]
                    retired.add(name)
                    history.append(f"unlink {name}")
            # the cut comes while one write is under way, not synced
            in_flight = rng.choice([n for n in NAMES if n not in retired])
            fd = os.open(d / in_flight, os.O_WRONLY | os.O_CREAT |
                         os.O_TRUNC, 0o644)
            part = jpeg(rng)[:rng.randint(1, 5000)]
            os.write(fd, part)
            history.append(f"cut {cut}: {in_flight} in flight, {len(part)}")
            time.sleep(rng.random() * 0.5)  # let runners be anywhere
            m.kill9()
            try:
                os.close(fd)
            except OSError:
                pass  # the daemon is gone
            lazy.cut()
            lazy.stop()
            lazy.start()
            m.start()  # the first try must do
            starts += 1
            check(m, m.batch(), acked, in_flight, seed, cut, history)
        assert starts == CUTS + 1
    finally:
        if m.proc:
            m.kill9()
        lazy.stop()
        lazy.remove()
