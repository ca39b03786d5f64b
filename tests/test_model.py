"""A model-based test: thousands of random operations applied to the mount
and to a plain local directory, the two trees compared after each step and
again after a remount (in the spirit of mountpoint-s3's reference tests and
JuiceFS's random-operation runs). Seeded; THUMBFS_SEED=N repeats a run."""
import errno
import os
import random
import shutil
import stat

import pytest

from conftest import Mount, photos, pictured

OPS = 2000
PATIENTS = ["P1", "P2"]
DATES = ["2025-11-10", "2025-11-11"]
NAMES = ["a.jpg", "b.png", "c.jpg", "d e.jpg", "r\u00f6ntgen.jpg", "f.tif",
         ".DS_Store"]
XATTRS = ["user.category", "user.filemaker_id", "user.note"]


def snapshot(root, exact_times):
    """What the two trees must agree on: per path, the type, mode, size,
    bytes, xattrs, and the modification time where the model knows it."""
    out = {}
    base = root / "patients"
    for dirpath, dirnames, filenames in os.walk(base):
        for n in dirnames + filenames:
            if "_thumb." in n:
                continue  # made by thumbfs, not by the operations
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            attrs = {}
            for a in os.listxattr(p):
                if not a.startswith("user.thumbfs."):
                    attrs[a] = os.getxattr(p, a)
            entry = {"mode": stat.filemode(st.st_mode), "xattrs": attrs}
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    entry["bytes"] = f.read()
                entry["size"] = st.st_size
                if rel in exact_times:
                    entry["mtime"] = st.st_mtime_ns
            out[rel] = entry
    return out


def diff(a, b):
    lines = []
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b:
            lines.append(f"{k}: only in {'mount' if k in a else 'reference'}")
            continue
        for f in sorted(set(a[k]) | set(b[k])):
            va, vb = a[k].get(f), b[k].get(f)
            if va != vb:
                if f == "bytes":
                    va, vb = f"{len(va or b'')} bytes", f"{len(vb or b'')} bytes"
                lines.append(f"{k}: {f} mount={va!r} reference={vb!r}")
    return lines


class Model:
    def __init__(self, rng, roots, small_jpeg):
        self.rng = rng
        self.roots = roots  # mount root, reference root
        self.jpeg = small_jpeg
        self.exact = set()  # files whose mtime was set by utimens last
        self.after = None  # the bookkeeping of the step, if it succeeds

    def dirs(self):
        return [f"patients/{p}/{d}" for p in PATIENTS for d in DATES]

    def file(self):
        return f"{self.rng.choice(self.dirs())}/{self.rng.choice(NAMES)}"

    def data(self):
        r = self.rng
        if r.random() < 0.2:
            return self.jpeg
        return r.randbytes(r.choice([0, 1, 100, 4096, 5000, 70000]))

    def step(self):
        """One random operation: (description, function of a root)."""
        r = self.rng
        self.after = None
        kind = r.choices(
            ["create", "pwrite", "truncate", "rename", "unlink", "mkdir",
             "rmdir", "chmod", "utimens", "setxattr", "removexattr",
             "rename_dir", "open_unlink", "open_rename"],
            [20, 15, 8, 10, 8, 6, 5, 6, 6, 6, 2, 4, 3, 3])[0]
        if kind == "rename_dir":
            if r.random() < 0.4:
                a, b = (f"patients/{r.choice(PATIENTS)}" for _ in "ab")
            else:
                a, b = r.choice(self.dirs()), r.choice(self.dirs())

            def moved_dir():
                if a != b:
                    # b was empty (or absent): nothing of it is known
                    moved = [f for f in self.exact if f.startswith(a + "/")]
                    for f in [f for f in self.exact
                              if f.startswith(b + "/")] + moved:
                        self.exact.discard(f)
                    for f in moved:
                        self.exact.add(b + f[len(a):])
            self.after = moved_dir
            return f"rename dir {a} -> {b}", \
                lambda root: os.rename(root / a, root / b)
        if kind == "open_unlink":
            f, d1, d2 = self.file(), self.data(), r.randbytes(100)
            self.exact.discard(f)  # written, whatever follows

            def op(root):
                fd = os.open(root / f, os.O_RDWR)
                try:
                    os.write(fd, d1)
                    os.unlink(root / f)
                    os.write(fd, d2)
                    assert os.fstat(fd).st_nlink == 0
                finally:
                    os.close(fd)
            return f"open, write, unlink, write, close {f}", op
        if kind == "open_rename":
            a, b, d1, d2 = self.file(), self.file(), self.data(), \
                r.randbytes(r.choice([1, 5000]))

            self.exact.discard(a)  # written, whatever follows
            self.after = lambda: self.exact.discard(b)

            def op(root):
                fd = os.open(root / a, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    os.write(fd, d1)
                    os.rename(root / a, root / b)
                    os.write(fd, d2)
                finally:
                    os.close(fd)
            return f"open, write, rename {a} -> {b}, write, close", op
        if kind == "create":
            f, data = self.file(), self.data()
            self.after = lambda: self.exact.discard(f)

            def op(root):
                with open(root / f, "wb") as fh:
                    fh.write(data)
            return f"create {f} ({len(data)} bytes)", op
        if kind == "pwrite":
            f, off, data = self.file(), r.randrange(0, 80000), r.randbytes(
                r.choice([1, 10, 4096, 20000]))
            self.after = lambda: self.exact.discard(f)

            def op(root):
                fd = os.open(root / f, os.O_WRONLY)
                try:
                    os.pwrite(fd, data, off)
                finally:
                    os.close(fd)
            return f"pwrite {f} at {off} ({len(data)} bytes)", op
        if kind == "truncate":
            f, size = self.file(), r.choice([0, 1, 50, 4096, 90000])
            self.after = lambda: self.exact.discard(f)
            return f"truncate {f} to {size}", \
                lambda root: os.truncate(root / f, size)
        if kind == "rename":
            a, b = self.file(), self.file()

            def moved():
                if a != b:
                    (self.exact.add if a in self.exact
                     else self.exact.discard)(b)
                    self.exact.discard(a)
            self.after = moved
            return f"rename {a} -> {b}", \
                lambda root: os.rename(root / a, root / b)
        if kind == "unlink":
            f = self.file()
            # gone: a file that comes to this name later has its own times
            self.after = lambda: self.exact.discard(f)
            return f"unlink {f}", lambda root: os.unlink(root / f)
        if kind == "mkdir":
            d = r.choice(self.dirs() + [f"patients/{p}" for p in PATIENTS])
            mode = r.choice([0o755, 0o700, 0o750])
            return f"mkdir {d} {mode:o}", lambda root: os.mkdir(root / d, mode)
        if kind == "rmdir":
            d = r.choice(self.dirs())
            return f"rmdir {d}", lambda root: os.rmdir(root / d)
        if kind == "chmod":
            f, mode = self.file(), r.choice([0o600, 0o640, 0o644, 0o664, 0o755])
            return f"chmod {f} {mode:o}", lambda root: os.chmod(root / f, mode)
        if kind == "utimens":
            f = self.file()
            t = r.randrange(10**9, 2 * 10**9) * 10**9 + r.randrange(10**9)
            self.after = lambda: self.exact.add(f)
            return f"utimens {f} {t}", \
                lambda root: os.utime(root / f, ns=(t, t))
        if kind == "setxattr":
            f, a = self.file(), r.choice(XATTRS)
            v = r.choice([b"x-ray", b"photo", b"12345", b""])
            return f"setxattr {f} {a}={v!r}", \
                lambda root: os.setxattr(root / f, a, v)
        f, a = self.file(), r.choice(XATTRS)
        return f"removexattr {f} {a}", lambda root: os.removexattr(root / f, a)


def outcome(fn, root):
    try:
        fn(root)
        return 0
    except OSError as e:
        # ENODATA and ENOATTR are one errno; ENOENT of a missing parent
        # and of a missing file are both ENOENT
        return e.errno


# a bound of 64 KiB: the cache evicts all the time, so reads go to the
# store, and writes, renames and truncates restore first
@pytest.mark.parametrize("cache_bound", [None, 65536],
                         ids=["cache-default", "cache-tiny"])
def test_random_operations_match_a_local_directory(thumbfs_bin, tmp_path,
                                                   cache_bound):
    seed = int(os.environ.get("THUMBFS_SEED", random.randrange(1 << 30)))
    print(f"seed {seed} (THUMBFS_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    m = Mount(thumbfs_bin, tmp_path, "file")
    if cache_bound:
        m.config["cache"] = {"max_bytes": str(cache_bound)}
    m.start()
    ref = tmp_path / "reference"
    (ref / "patients").mkdir(parents=True)
    small = min(photos(), key=lambda p: p.stat().st_size).read_bytes()
    model = Model(rng, (m.mnt, ref), small)
    history = []
    try:
        for i in range(OPS):
            what, fn = model.step()
            history.append(what)
            got, want = outcome(fn, m.mnt), outcome(fn, ref)
            if want == 0 and model.after:
                model.after()
            assert got == want, (
                f"seed {seed}, step {i}: {what}: mount "
                f"{errno.errorcode.get(got, got)}, reference "
                f"{errno.errorcode.get(want, want)}\nlast steps:\n"
                + "\n".join(history[-15:]))
            d = diff(snapshot(m.mnt, model.exact), snapshot(ref, model.exact))
            assert not d, (f"seed {seed}, step {i}: {what}\n" + "\n".join(d)
                           + "\nlast steps:\n" + "\n".join(history[-15:])
                           + "\nthe steps on the first path that differs:\n"
                           + "\n".join(f"{k}: {h}"
                                       for k, h in enumerate(history)
                                       if d[0].split(":")[0] in h))
        m.stop()
        m.start()
        d = diff(snapshot(m.mnt, model.exact), snapshot(ref, model.exact))
        assert not d, f"seed {seed}, after the remount:\n" + "\n".join(d)
        # the status file's counts, kept by triggers as rows changed,
        # are what a scan of the catalog finds
        status = dict(ln.split(": ", 1) for ln in (
            m.mnt / ".thumbfs/status").read_text().splitlines()
            if ": " in ln and not ln.startswith(" "))
        rows = m.rows()
        uploaded = [r for r in rows if r["state"] == "uploaded"]
        assert (int(status["images spooled"]),
                int(status["images uploaded"]),
                int(status["other files uploaded"]),
                int(status["thumbnail errors"])) == (
            sum(r["state"] == "spooled" for r in rows),
            sum(pictured(r["mime_type"]) for r in uploaded),
            sum(not pictured(r["mime_type"]) for r in uploaded),
            sum(r["error"] != "" for r in rows)), f"seed {seed}"
    finally:
        m.stop()
        shutil.rmtree(ref, ignore_errors=True)
