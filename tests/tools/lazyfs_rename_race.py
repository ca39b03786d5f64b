"""lazyfs_rename_race.py - shows, without thumbfs, the LazyFS defect that
test_powercut.py works around.

LazyFS maps paths to inodes in its cache. rename() updates that map and
then renames the file, as two steps; a stat() or open() of the source name
between them maps the name to the renamed inode again. A file later made
under that name then shares the renamed file's cache entry: its fsync
writes the renamed file's bytes to it, and after a power cut it holds its
own bytes followed by the renamed file's tail.

Run: /usr/bin/python3 tests/tools/lazyfs_rename_race.py LAZYFS_EXE
(LAZYFS_EXE: ../shared/tools/lazyfs/build OUTDIR makes OUTDIR/lazyfs/lazyfs).
READERS=0 runs it with nobody looking at the name: then nothing is wrong.
Exit 1 when a file lost its fsynced bytes."""
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def main():
    exe = sys.argv[1]
    readers = int(os.environ.get("READERS", "1"))
    cuts = int(os.environ.get("CUTS", "20"))
    race = os.environ.get("RACE", "rename")
    base = Path(tempfile.mkdtemp(prefix="lazyfsrace",
                                 dir=os.environ.get("BACKING")))
    backing, mnt = base / "backing", base / "lazy"
    fifo, log = base / "faults.fifo", base / "lazyfs.log"
    backing.mkdir()
    mnt.mkdir()
    conf = base / "lazyfs.toml"
    conf.write_text(f'[faults]\nfifo_path="{fifo}"\n'
                    '[cache]\napply_eviction=false\n'
                    '[cache.simple]\ncustom_size="256mb"\nblocks_per_page=1\n'
                    '[filesystem]\nlog_all_operations=false\n'
                    f'logfile="{log}"\n')

    def start():
        p = subprocess.Popen([exe, str(mnt), "--config-path", str(conf),
                              "-o", "allow_other", "-o", "modules=subdir",
                              "-o", f"subdir={backing}", "-f"],
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        for _ in range(600):
            if os.path.ismount(mnt):
                return p
            time.sleep(0.05)
        sys.exit("LazyFS did not start")

    def cut():
        n = log.read_text(errors="replace").count("cache is cleared") \
            if log.exists() else 0
        with open(fifo, "w") as f:
            f.write("lazyfs::clear-cache\n")
        for _ in range(600):
            if log.exists() and log.read_text(errors="replace").count(
                    "cache is cleared") > n:
                return
            time.sleep(0.05)
        sys.exit("LazyFS did not clear its cache")

    def write_synced(path, data):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)

    def sync_dir(path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)

    rng = random.Random(1)
    wrong = 0
    for c in range(cuts):
        p = start()
        d = mnt / "d"
        d.mkdir(exist_ok=True)
        sync_dir(mnt)
        done = threading.Event()

        def look():  # as an uploader checks the name it was given
            while not done.is_set():
                try:
                    os.stat(d / "a")
                except FileNotFoundError:
                    pass
        threads = [threading.Thread(target=look) for _ in range(readers)]
        for t in threads:
            t.start()
        for _ in range(30):
            old = bytes([rng.randrange(1, 256)]) * rng.randint(2000, 9000)
            new = bytes([rng.randrange(1, 256)]) * rng.randint(500, 1999)
            write_synced(d / "a", old)
            if race == "rename":
                os.rename(d / "a", d / "b")
                sync_dir(d)
                write_synced(d / "a", new)
                want = (("a", new), ("b", old))
            else:  # another name, which may get a's inode number
                os.unlink(d / "a")
                sync_dir(d)
                write_synced(d / "c", new)
                want = (("c", new),)
        done.set()
        for t in threads:
            t.join()
        cut()
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)])
        p.wait(30)
        for name, want in want:
            have = (backing / "d" / name).read_bytes()
            if have != want:
                wrong += 1
                same = sum(1 for x, y in zip(have, want) if x == y)
                print(f"cut {c}: '{name}' has {len(have)} bytes, of which "
                      f"the first {same} are the {len(want)} it fsynced")
    print(f"{race}: {wrong} files wrong after {cuts} power cuts, "
          f"{readers} thread(s) looking at the name, backing on "
          f"{subprocess.run(['stat', '-f', '-c', '%T', str(backing.parent)], capture_output=True, text=True).stdout.strip()}")
    shutil.rmtree(base)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
