"""Many actors at once, against a model (#32): two mounts on one
PostgreSQL and one bucket, and the web app's SQL, make random changes in
rounds; a local directory takes each change too, as the one archive they
all share. After each round, once everything has settled, an oracle
checks the archive's rule: both mounts list the reference's tree, each
file has its last acknowledged bytes on both, and `thumbfs verify
--content` finds nothing on either (each row's keys follow its path, both
objects exist with the row's sha256, each thumbnail is its own image's,
no key is named twice, PostgreSQL equals each catalog, nothing is
orphaned). A mount is killed (-9) and restarted in some rounds.

Within a round a path (and every name sharing its stem, which could
share its thumbnail's name) is touched by one actor only, except where
two mounts write at one moment one name (either content may win; every
mount must show the same, with its own thumbnail and row) or two names
of one stem whose thumbnails want one name (#32, 2 and 7).

Seeded: THUMBFS_SEED=N repeats a run; THUMBFS_ACTORS_ROUNDS (default 3)
and THUMBFS_ACTORS_OPS (default 12 a round) make a longer one, and
THUMBFS_ACTORS_SEEDS=K runs K seeds in a row.

The defects it found are each shown by a test of their own in
test_actors.py. The oracle looks only once nothing moves: no job or
write on either mount before and after their trees are read, each mount
past every change, and no transaction written in PostgreSQL meanwhile
(an earlier check let verify list the store while a delete that applying
a change queued still ran: a false orphan, seed 33040). The suite runs a
fixed seed, so that a find of a new kind does not fail CI at random;
THUMBFS_SEED=random draws one."""
import glob
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import time
import urllib.parse
import uuid
from pathlib import Path

from conftest import BUILD, Mount, photos, wait_for
from proxy import Proxy

ROUNDS = int(os.environ.get("THUMBFS_ACTORS_ROUNDS", "3"))
OPS = int(os.environ.get("THUMBFS_ACTORS_OPS", "12"))
SEEDS = int(os.environ.get("THUMBFS_ACTORS_SEEDS", "1"))
DEFAULT_SEED = 8027
PATIENTS = ["P1", "P2"]
DATES = ["2025-11-10", "2025-11-11", "2025-11-12", "2025-11-13"]
# images only: a file that is no image gets no row in PostgreSQL (the
# rule: every row there has its thumbnail), so it stays on the mount that
# wrote it until #31 gives every file a picture
NAMES = ["a.jpg", "a.png", "B.JPG", "c d.jpg", "r\u00f6ntgen.jpg"]


def pool(tmp):
    """Small photographs cut from the shipped ones, as JPEG and PNG."""
    from PIL import Image
    out = []
    for i, src in enumerate(photos()[:4]):
        img = Image.open(src).convert("RGB")
        img = img.crop((0, 0, min(img.width, 800), min(img.height, 600)))
        img.thumbnail((400, 300))
        for fmt in ("JPEG", "PNG"):
            p = tmp / f"pool{i}.{fmt.lower()}"
            img.save(p, fmt)
            out.append(p.read_bytes())
    return out


def catalog(m, sql):
    db = sqlite3.connect(m.data / "catalog.db", timeout=10)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def made(folder):
    """folder made, with its parents (mkdir -p, as a script does), and
    again if another mount emptied and so removed a part of it meanwhile
    (as a folder another user removes on a local disk): as a person
    would."""
    for _ in range(5):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            continue
    folder.mkdir(parents=True, exist_ok=True)


def tree(root):
    """{relative path: bytes} of the files under root/patients, thumbnails
    (made by thumbfs) left out."""
    out = {}
    base = Path(root) / "patients"
    for dirpath, _, files in os.walk(base):
        for n in files:
            if "_thumb." in n:
                continue
            p = Path(dirpath) / n
            try:
                out[str(p.relative_to(root))] = p.read_bytes()
            except OSError as e:  # kept, so that the report names it
                out[str(p.relative_to(root))] = f"read: {e}".encode()
    return out


class World:
    def __init__(self, rng, mounts, ref, pg, s3, bucket, datas):
        self.rng, self.mounts, self.ref = rng, mounts, ref
        self.pg, self.s3, self.bucket, self.datas = pg, s3, bucket, datas
        self.app_rows = {}  # path -> (image id, keys) the app inserted
        self.log = []
        self.locks = {}
        self.either = {}  # path -> the contents two mounts wrote at once
        self.proxy = None

    def lock_key(self, path):
        d, n = path.rsplit("/", 1)
        return f"{d}/{n.rsplit('.', 1)[0].lower()}"

    def free(self, actor, *paths):
        """Whether actor may touch paths this round; if so they are its."""
        keys = [self.lock_key(p) for p in paths]
        if any(self.locks.get(k, actor) != actor for k in keys):
            return False
        for k in keys:
            self.locks[k] = actor
        return True

    def dirs(self):
        return [f"patients/{p}/{d}" for p in PATIENTS for d in DATES
                if (self.ref / "patients" / p / d).is_dir()]

    def files(self):
        return sorted(tree(self.ref))

    def step(self):
        r = self.rng
        kind = r.choices(["write", "rename", "unlink", "rename_dir",
                          "app_insert", "app_delete", "collide",
                          "store_fault", "app_update", "app_batch_delete"],
                         [10, 4, 3, 1, 2, 1, 2, 2, 1, 1])[0]
        actor = r.randrange(len(self.mounts))
        m = self.mounts[actor]
        files = self.files()
        if kind == "write":
            path = f"{r.choice(self.dirs())}/{r.choice(NAMES)}"
            data = r.choice(self.datas)
            if not self.free(actor, path):
                return
            self.log.append(f"{m.base.name}: write {path} "
                            f"({len(data)} bytes)")
            # a folder this mount has no row in yet is made here
            made((m.mnt / path).parent)
            try:
                (m.mnt / path).write_bytes(data)
            except FileNotFoundError:
                # another mount emptied the folder just now, and it went
                # here too (as a folder another user removes on a local
                # disk): made again, as a person would
                self.log.append(f"{m.base.name}: (its folder went; made "
                                "again)")
                made((m.mnt / path).parent)
                (m.mnt / path).write_bytes(data)
            (self.ref / path).write_bytes(data)
        elif kind == "rename" and files:
            a = r.choice(files)
            b = f"{r.choice(self.dirs())}/{r.choice(NAMES)}"
            if a == b or a in self.app_rows or b in self.app_rows or \
                    a.rsplit(".", 1)[-1] != b.rsplit(".", 1)[-1] or \
                    not self.free(actor, a, b):
                return
            made((m.mnt / b).parent)
            try:
                os.rename(m.mnt / a, m.mnt / b)
            except OSError as e:
                # a file in the store only is fetched first: a store that
                # fails (the proxy's faults) fails the rename, and nothing
                # changes
                self.log.append(f"{m.base.name}: rename {a} -> {b} "
                                f"failed: {e.strerror}")
                return
            self.log.append(f"{m.base.name}: rename {a} -> {b}")
            os.rename(self.ref / a, self.ref / b)
        elif kind == "unlink" and files:
            a = r.choice(files)
            if a in self.app_rows or not self.free(actor, a):
                return
            self.log.append(f"{m.base.name}: unlink {a}")
            os.unlink(m.mnt / a)
            os.unlink(self.ref / a)
        elif kind == "rename_dir":
            src = r.choice(self.dirs())
            p = src.split("/")[1]
            if not (m.mnt / src).is_dir():
                return  # empty, and made on the other mount only
            free = [d for d in DATES
                    if not (self.ref / "patients" / p / d).exists()]
            if not free:
                return
            dst = f"patients/{p}/{r.choice(free)}"
            inside = [f for f in files if f.startswith(src + "/")]
            if any(f in self.app_rows for f in inside) or not self.free(
                    actor, *inside, *(dst + "/" + n for n in NAMES),
                    *(src + "/" + n for n in NAMES)):
                return
            self.log.append(f"{m.base.name}: rename dir {src} -> {dst}")
            os.rename(m.mnt / src, m.mnt / dst)
            os.rename(self.ref / src, self.ref / dst)
        elif kind == "collide" and len(self.mounts) > 1:
            self.collide()
        elif kind == "store_fault":
            # the store misbehaves for mount a's next requests: errors
            # it retries, a slow answer, a connection dropped mid-body
            method = r.choice(["PUT", "GET", "DELETE"])
            fault = r.choice(["fail", "stall", "drop"])
            if fault == "fail":
                n = r.randint(1, 3)
                self.proxy.fail(n, 503, "SlowDown", method)
            elif fault == "stall":
                n = 1
                self.proxy.stall(1, r.choice([1, 2]), method)
            else:
                n, method = 1, "PUT"
                self.proxy.drop(1, method)
            self.log.append(f"store: {fault} the next {n} {method} of a")
        elif kind == "app_insert":
            path = f"{r.choice(self.dirs())}/app{r.randrange(100)}.jpg"
            if (self.ref / path).exists() or not self.free("app", path):
                return
            self.app_insert(path, r.choice(
                [d for d in self.datas if d[:2] == b"\xff\xd8"]))
        elif kind == "app_delete" and self.app_rows:
            path = r.choice(sorted(self.app_rows))
            if not self.free("app", path):
                return
            self.app_delete(path)
        elif kind == "app_update" and self.app_rows:
            # the app saves a row again (Django's save(): every column,
            # updated_at now): the content stays
            path = r.choice(sorted(self.app_rows))
            if not self.free("app", path):
                return
            iid = self.app_rows[path][0]
            self.pg.psql("UPDATE images_image SET category = 'wound',"
                         f" updated_at = now() WHERE id = '{iid}'")
            self.log.append(f"app: update {path}")
        elif kind == "app_batch_delete":
            # the app deletes a date whose images are all its own, the
            # batch's row with them (ON DELETE CASCADE), and their objects
            dates = sorted({p.rsplit("/", 1)[0] for p in self.app_rows})
            if not dates:
                return
            d = r.choice(dates)
            inside = [f for f in files if f.startswith(d + "/")]
            if any(f not in self.app_rows for f in inside) or \
                    not self.free("app", *inside,
                                  *(f"{d}/{n}" for n in NAMES)):
                return
            _, p, day = d.split("/")
            self.pg.psql("DELETE FROM images_batch WHERE patient_id ="
                         f" '{p}' AND batch_date = '{day}'")
            c = self.s3.client()
            for f in inside:
                _, key, tkey = self.app_rows.pop(f)
                for k in (key, tkey):
                    c.delete_object(Bucket=self.bucket, Key=k)
                os.unlink(self.ref / f)
            self.log.append(f"app: delete the batch {d}")

    def collide(self):
        """Two mounts write, at one moment, one name (#32, 7: the write
        that reaches the store last wins everywhere, bytes and row), or
        two names of one stem whose thumbnails want one name (#32, 2:
        each gets its own)."""
        r = self.rng
        d = r.choice(self.dirs())
        n1 = r.choice(NAMES)
        stem = n1.rsplit(".", 1)[0]
        n2 = r.choice([n for n in NAMES if n.rsplit(".", 1)[0] == stem])
        p1, p2 = f"{d}/{n1}", f"{d}/{n2}"
        if any(k in self.locks for k in (self.lock_key(p1),
                                         self.lock_key(p2))) or \
                p1 in self.app_rows or p2 in self.app_rows:
            return
        self.free("both", p1, p2)  # nothing else touches them this round
        a, b = r.sample(self.mounts, 2)
        d1, d2 = r.choice(self.datas), r.choice(self.datas)
        self.log.append(f"{a.base.name} and {b.base.name}: write {p1} "
                        f"({len(d1)} bytes) and {p2} ({len(d2)} bytes) at "
                        "once")
        for m in (a, b):
            made(m.mnt / d)
        import threading
        go = threading.Barrier(2)
        failed = []

        def one(path, data):
            go.wait()
            try:
                try:
                    path.write_bytes(data)
                except FileNotFoundError:  # its folder went: see made()
                    made(path.parent)
                    path.write_bytes(data)
            except OSError as e:
                failed.append(f"{path}: {e}")
        ts = [threading.Thread(target=one, args=(a.mnt / p1, d1)),
              threading.Thread(target=one, args=(b.mnt / p2, d2))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not failed, failed
        (self.ref / p1).write_bytes(d1)
        (self.ref / p2).write_bytes(d2)
        if p1 == p2:
            self.either[p1] = {d1, d2}

    def app_insert(self, path, data):
        """A row as the web app writes it: its objects under keys of its
        own, a thumbnail made as its Pillow code makes one."""
        _, p, d, n = path.split("/")
        iid, key = str(uuid.uuid4()), f"web/{uuid.uuid4()}.jpg"
        tkey = key[:-4] + "_thumb.jpg"
        src = self.ref / ".app.jpg"
        src.write_bytes(data)
        thumb = self.ref / ".app_thumb.jpg"
        subprocess.run([str(BUILD / "thumbfs-thumb"), str(src), str(thumb)],
                       check=True, capture_output=True)
        from PIL import Image
        w, h = Image.open(src).size
        c = self.s3.client()
        c.put_object(Bucket=self.bucket, Key=key, Body=data)
        c.put_object(Bucket=self.bucket, Key=tkey, Body=thumb.read_bytes())
        self.pg.psql(
            "INSERT INTO images_batch (id, patient_id, batch_date) VALUES"
            f" ('{uuid.uuid4()}', '{p}', '{d}') ON CONFLICT DO NOTHING;"
            "INSERT INTO images_image (id, batch_id, s3_key,"
            " s3_thumbnail_key, s3_bucket, original_filename, file_size,"
            " thumbnail_size, mime_type, width, height, sha256) SELECT"
            f" '{iid}', id, '{key}', '{tkey}', '{self.bucket}', '{n}',"
            f" {len(data)}, {thumb.stat().st_size}, 'image/jpeg', {w}, {h},"
            f" '{hashlib.sha256(data).hexdigest()}' FROM images_batch WHERE"
            f" patient_id = '{p}' AND batch_date = '{d}'")
        src.unlink()
        thumb.unlink()
        (self.ref / path).write_bytes(data)
        self.app_rows[path] = (iid, key, tkey)
        self.log.append(f"app: insert {path}")

    def app_delete(self, path):
        iid, key, tkey = self.app_rows.pop(path)
        self.pg.psql(f"DELETE FROM images_image WHERE id = '{iid}'")
        c = self.s3.client()
        for k in (key, tkey):
            c.delete_object(Bucket=self.bucket, Key=k)
        os.unlink(self.ref / path)
        self.log.append(f"app: delete {path}")

    def settle(self):
        """Wait until both mounts have done their work and list the
        reference's tree; then the oracle."""
        want = tree(self.ref)

        def same(got):
            """got is the reference's tree, where two mounts wrote one
            name at once either content, the same on every mount."""
            return got.keys() == want.keys() and all(
                got[p] in self.either[p] if p in self.either else
                got[p] == want[p] for p in want)

        def snapshot():
            """(xmin, xmax) of PostgreSQL now: xmin == xmax when no
            transaction that wrote is running; xmax moves with any new
            one."""
            xmin, xmax = self.pg.rows(
                "SELECT pg_snapshot_xmin(pg_current_snapshot()),"
                " pg_snapshot_xmax(pg_current_snapshot())")[0]
            return int(xmin), int(xmax)

        def idle(m):
            return catalog(m, "SELECT (SELECT count(*) FROM jobs) +"
                              " (SELECT count(*) FROM writing)") == [(0,)]

        def quiet():
            # Nothing written to PostgreSQL is in flight, and nothing is
            # written while the mounts are looked at (xmax stays); each
            # has applied every change (its bound) and has nothing left
            # to do, before and after its tree is read: else a job that
            # applying a change queued may still run as verify reads.
            xmin, xmax = snapshot()
            if xmin != xmax:
                return False
            for m in self.mounts:
                if not idle(m):
                    return False
                bound = catalog(m, "SELECT pg_bound FROM sync_state")
                if not bound or bound[0][0] < xmax:
                    return False
                if not same(tree(m.mnt)):
                    return False
            trees = [tree(m.mnt) for m in self.mounts]
            return all(t == trees[0] for t in trees) and \
                all(idle(m) for m in self.mounts) and snapshot() == (xmin,
                                                                     xmax)
        try:
            wait_for(quiet, 180, "both mounts to settle on the reference")
        except AssertionError:
            raise AssertionError(self.report(want))
        # the one that won, now the reference's
        won = tree(self.mounts[0].mnt)
        for p in self.either:
            (self.ref / p).write_bytes(won[p])
            want[p] = won[p]
            self.log.append(f"(the write of {p} that won: "
                            f"{len(won[p])} bytes)")
        self.either = {}
        for m in self.mounts:
            got = tree(m.mnt)
            bad = [(p, got[p][:40]) for p in want if got[p] != want[p]]
            assert not bad, self.report(want, f"{m.base.name}: bytes of"
                                              f" {bad}")
        found = []
        if self.proxy:  # the faults not met yet would fail the check
            with self.proxy.lock:
                self.proxy.faults.clear()
        self.verified_at = time.time()
        for m in self.mounts:
            r = subprocess.run([str(m.binary), "verify", str(m.conf),
                                "--content", "--json"],
                               capture_output=True, text=True, timeout=600)
            found += [f"{m.base.name}: verify: {line}"
                      for line in r.stdout.splitlines() if '"kind"' in line]
            if r.returncode and not found:
                found.append(f"{m.base.name}: verify: {r.stderr[-2000:]}")
        assert not found, self.report(want, "\n".join(found + [
            self.requests(line) for line in found]))

    def requests(self, line):
        """What both mounts asked the store of the key a verify line
        names, and when (seconds since the first request)."""
        key = json.loads(line.split("verify: ", 1)[1]).get("key", "")
        if not key:
            return ""
        path = "/" + urllib.parse.quote(f"{self.bucket}/{key}")
        start = min(p.done[0][0] for p in self.proxies if p.done)
        rows = []
        for m, p in zip(self.mounts, self.proxies):
            with p.lock:
                rows += [(s - start, e - start, m.base.name, meth, outcome)
                         for s, e, meth, q, outcome in p.done
                         if q.split("?")[0] == path]
        # what s3rver holds of it: each file's birth, change and size
        files = sorted(glob.glob(glob.escape(
            str(Path(self.s3.dir) / self.bucket / key)) + "._S3rver_*"))
        born = subprocess.run(["stat", "-c", "%.6W %.6Z %s %n", *files],
                              capture_output=True, text=True).stdout
        rows += [(float(b) - start, float(c) - start, "s3rver",
                  f"file {n.rsplit('._S3rver_', 1)[1]} born, changed;"
                  f" {size} bytes", "")
                 for b, c, size, n in (line.split(" ", 3)
                                       for line in born.splitlines())]
        folder = Path(self.s3.dir) / self.bucket / key.rsplit("/", 1)[0]
        ls = subprocess.run(["ls", "-la", "--time-style=+%s.%N", folder],
                            capture_output=True, text=True)
        rows.append((self.verified_at - start, time.time() - start,
                     "verify", "listed the store", "from"))
        return "\n".join([f"requests for {key} (s from the first, at"
                          f" {start:.3f}):"] + [
            f"  {s:8.3f} to {e:8.3f} {who} {meth} {outcome}"
            for s, e, who, meth, outcome in sorted(rows)] + [
            f"s3rver's {folder} now ({time.time():.3f}):",
            ls.stdout + ls.stderr])

    def report(self, want, what=""):
        lines = [what, self.s3.died(), "operations:", *self.log, "reference:",
                 *sorted(want), "PostgreSQL:", self.pg.psql(
                     "SELECT b.patient_id, b.batch_date, i.original_filename,"
                     " i.s3_key, i.s3_thumbnail_key, i.updated_at FROM"
                     " images_image i JOIN images_batch b ON"
                     " b.id = i.batch_id ORDER BY 1, 2, 3"),
                 "claims:", self.pg.psql(
                     "SELECT key, owner, stamp, writer FROM thumbfs_key"
                     " ORDER BY key"),
                 "tombstones:", self.pg.psql(
                     "SELECT patient_id, batch_date, original_filename,"
                     " s3_key, deleted_at FROM thumbfs_tombstone"),
                 "changes:", self.pg.psql(
                     "SELECT xid, id, image_id, patient_id, batch_date,"
                     " original_filename, at FROM thumbfs_change ORDER BY"
                     " xid, id")]
        for m in self.mounts:
            lines += [f"{m.base.name} lists:", *sorted(tree(m.mnt)),
                      f"{m.base.name} rows:",
                      *map(str, catalog(m, "SELECT patient_id, batch_date,"
                                           " name, state, s3_key,"
                                           " s3_thumbnail_key, updated_at"
                                           " FROM images ORDER BY 1, 2, 3")),
                      f"{m.base.name} bound:",
                      *map(str, catalog(m, "SELECT * FROM sync_state")),
                      f"{m.base.name} jobs:",
                      *map(str, catalog(m, "SELECT kind, name, key,"
                                           " last_error, parked FROM jobs")),
                      f"{m.base.name} log (end):",
                      m.log_text()[-3000:]]
        return "\n".join(lines)


def run_seed(seed, thumbfs_bin, tmp_path, s3store, proxy, pg, datas):
    print(f"THUMBFS_SEED={seed}")
    rng = random.Random(seed)
    proxies = [proxy, Proxy(s3store.port)]
    ref = tmp_path / "ref"
    (ref / "patients").mkdir(parents=True)
    mounts = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        m = Mount(thumbfs_bin, tmp_path / name, "s3", s3store)
        if mounts:
            m.bucket = mounts[0].bucket
            m.config["store"]["url"] = f"s3://{m.bucket}"
        # mount a reaches the store through the fault proxy, b through
        # one that only records (both shown in a failure's report)
        m.config["store"]["endpoint"] = proxies[len(mounts)].endpoint
        m.config["postgres"] = {"dsn": pg.dsn}
        mounts.append(m.start())
    w = World(rng, mounts, ref, pg, s3store, mounts[0].bucket, datas)
    w.proxy, w.proxies = proxy, proxies
    try:
        for p in PATIENTS:
            for d in DATES[:2]:
                for m in mounts:
                    m.batch(p, d)
                (ref / "patients" / p / d).mkdir(parents=True)
        for rnd in range(ROUNDS):
            w.locks = {}
            w.log.append(f"-- round {rnd}")
            kill = rng.random() < 0.5
            at = rng.randrange(OPS)
            for i in range(OPS):
                if kill and i == at:
                    v = rng.choice(mounts)
                    w.log.append(f"{v.base.name}: kill -9, restart")
                    v.kill9()
                    v.start()
                w.step()
            w.settle()
        print("\n".join(w.log))  # (shown with -s)
    finally:
        for m in mounts:
            if m.proc:
                m.stop()
        proxies[1].close()


def test_many_actors_keep_the_rule(thumbfs_bin, tmp_path, s3server, proxy,
                                   clean_postgres):
    """On s3rver, as mount a goes through the suite's fault proxy (a real
    server's signature checks would refuse what the proxy forwards)."""
    # the suite's run is one seed that has passed; THUMBFS_SEED=N
    # repeats one, THUMBFS_SEED=random draws one
    given = os.environ.get("THUMBFS_SEED", str(DEFAULT_SEED))
    seed = random.randrange(2**31) if given == "random" else int(given)
    work = tmp_path / "pool"
    work.mkdir()
    datas = pool(work)
    for k in range(SEEDS):
        d = tmp_path / f"seed{k}"
        d.mkdir()
        clean_postgres.psql("DELETE FROM images_image; DELETE FROM"
                            " images_batch; DELETE FROM thumbfs_tombstone;"
                            " DELETE FROM thumbfs_key")
        run_seed(seed + k, thumbfs_bin, d, s3server, proxy, clean_postgres,
                 datas)
