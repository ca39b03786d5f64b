"""bench/scale's measurements (run through bench/scale): an N-row archive
in a throwaway PostgreSQL, written as the web app writes it (N/500
patients, 20 dates each, 25 images a date), two mounts on it, and what
each request costs beside the same tree on local disk."""
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import Mount, Postgres, wait_for  # noqa: E402

N = int(sys.argv[1])
# SCALE_LOCAL=0: no copy of the tree on local disk (at 10M rows it is 20M
# files, more than some disks have inodes): the mount's figures alone
LOCAL = os.environ.get("SCALE_LOCAL", "1") != "0"
BIN = Path(os.environ.get("THUMBFS_BIN", ROOT / "build/thumbfs"))
WRITE_RATE = 200  # rows a second the app adds while visibility is measured
TICK = os.sysconf("SC_CLK_TCK")


def load(pg, n):
    """n image rows, as the app writes them, in one statement each table."""
    patients = max(1, n // 500)
    pg.psql(
        "INSERT INTO images_batch (id, patient_id, batch_date, name)"
        " SELECT gen_random_uuid(), 'P' || p, date '2020-01-01' + d,"
        " 'P' || p || ' batch' FROM generate_series(1, %d) p,"
        " generate_series(0, 19) d" % patients)
    pg.psql(
        "INSERT INTO images_image (id, batch_id, s3_key, s3_thumbnail_key,"
        " s3_bucket, original_filename, file_size, thumbnail_size, mime_type,"
        " width, height, sha256) SELECT gen_random_uuid(), b.id,"
        " 'app/' || b.patient_id || '/' || b.batch_date || '/IMG_' || i ||"
        " '.jpg', 'app/' || b.patient_id || '/' || b.batch_date || '/IMG_' ||"
        " i || '_thumb.jpg', 'photos', 'IMG_' || i || '.jpg', 2000000, 20000,"
        " 'image/jpeg', 4032, 3024, repeat('0', 64) FROM images_batch b,"
        " generate_series(1, 25) i LIMIT %d" % n)
    pg.psql("VACUUM ANALYZE")


def local_tree(base, pg):
    """The same tree on local disk: empty files of the same names."""
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
         "-d", "thumbfs", "-At", "-F", "/", "-c",
         "SELECT b.patient_id, b.batch_date, i.original_filename FROM"
         " images_image i JOIN images_batch b ON b.id = i.batch_id"],
        check=True, capture_output=True, text=True).stdout
    made = set()
    for line in out.splitlines():
        p, d, name = line.split("/")
        folder = base / "patients" / p / d
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)
        (folder / name).touch()
        (folder / name.replace(".jpg", "_thumb.jpg")).touch()


def cpu_s(pid):
    """User and system CPU seconds of pid so far."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def jpeg():
    from PIL import Image
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def catalog_bytes(m):
    return sum(f.stat().st_size for f in m.data.glob("catalog.db*"))


def writer(pg, stop, count):
    """The web app adding WRITE_RATE rows a second, a transaction each."""
    import psycopg2
    conn = psycopg2.connect(pg.dsn)
    conn.autocommit = True
    c = conn.cursor()
    c.execute("INSERT INTO images_batch (id, patient_id, batch_date) VALUES"
              " (%s, 'W1', '2025-01-01') RETURNING id", (str(uuid.uuid4()),))
    bid = c.fetchone()[0]
    t0 = time.monotonic()
    while not stop.is_set():
        i = count[0]
        c.execute(
            "INSERT INTO images_image (id, batch_id, s3_key,"
            " s3_thumbnail_key, s3_bucket, original_filename, file_size,"
            " thumbnail_size, mime_type, width, height) VALUES (%s, %s, %s,"
            " %s, 'photos', %s, 10, 5, 'image/jpeg', 64, 48)",
            (str(uuid.uuid4()), bid, f"w/{i}.jpg", f"w/{i}_thumb.jpg",
             f"w{i}.jpg"))
        count[0] += 1
        delay = t0 + count[0] / WRITE_RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    conn.close()


def main():
    tmp = Path(tempfile.mkdtemp(prefix="thumbfs-scale-"))
    tmp.chmod(0o755)  # for the postgres user
    (tmp / "pg").mkdir()
    pg = Postgres(tmp / "pg")
    pg.start("-c shared_buffers=512MB -c max_wal_size=4GB")
    mounts = []

    class Rows(list):
        """Each figure printed as it is measured, and in the table."""
        def append(self, row):
            print(f"  {row[0]}: {row[1]} {row[2]}", flush=True)
            super().append(row)
    rows = Rows()
    try:
        pg.psql("CREATE DATABASE thumbfs", db="postgres")
        pg.psql(subprocess.run([str(BIN), "schema"], check=True,
                               capture_output=True, text=True).stdout)
        t = timed(lambda: load(pg, N))
        print(f"{N} rows written into PostgreSQL in {t:.1f} s", flush=True)
        (tmp / "store").mkdir()
        for name in ("a", "b"):
            (tmp / name).mkdir()
            m = Mount(BIN, tmp / name, "file")
            m.config["store"]["url"] = f"file://{tmp}/store"
            m.config["postgres"] = {"dsn": pg.dsn}
            mounts.append(m)
        a, b = mounts

        # cold start: both at once, as two machines on one archive
        t0 = time.monotonic()
        for m in mounts:
            m.start()
        answered = time.monotonic() - t0
        done = {}

        def cold(m):
            wait_for(lambda: "read every row of PostgreSQL" in m.log_text(),
                     7200, "the first read")
            done[m] = (time.monotonic() - t0, cpu_s(m.proc.pid))
        ts = [threading.Thread(target=cold, args=(m,)) for m in mounts]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        cold_s = max(v[0] for v in done.values())
        cold_cpu = max(v[1] for v in done.values())
        rows.append(("cold full read, two mounts at once (daemon CPU)",
                     f"{cold_s:.1f} s ({cold_cpu:.1f} s)", "-"))
        rows.append(("first start: the mount answers after",
                     f"{answered:.2f} s", "-"))

        # a row written by one mount, seen by the other, while the app
        # adds rows
        stop, count = threading.Event(), [0]
        w = threading.Thread(target=writer, args=(pg, stop, count))
        w.start()
        data = jpeg()
        lat = []
        try:
            da = a.batch("V1", "2025-02-02")
            db = b.mnt / "patients/V1/2025-02-02"
            for i in range(30):
                name = f"v{i}.jpg"
                (da / name).write_bytes(data)
                t1 = time.monotonic()
                wait_for(lambda: db.exists() and name in os.listdir(db), 120,
                         f"{name} in the other mount")
                lat.append(time.monotonic() - t1)
                time.sleep(0.2)
        finally:
            stop.set()
            w.join()
        rate = count[0]
        lat.sort()
        rows.append((f"a row written by one mount, listed by the other, while "
                     f"the app adds {WRITE_RATE} rows/s (median / p99 / max)",
                     f"{statistics.median(lat):.2f} / "
                     f"{lat[int(len(lat) * 0.99)]:.2f} / {lat[-1]:.2f} s",
                     "-"))
        wait_for(lambda: len(os.listdir(b.mnt / "patients/W1/2025-01-01")) ==
                 2 * rate, 120, "the app's rows in the mount")

        # one row deleted by the app: what each mount spends on it
        victim = "patients/P1/2020-01-01/IMG_1.jpg"
        before = {m: cpu_s(m.proc.pid) for m in mounts}
        t1 = time.monotonic()
        pg.psql("DELETE FROM images_image i USING images_batch b WHERE"
                " b.id = i.batch_id AND b.patient_id = 'P1' AND"
                " b.batch_date = '2020-01-01' AND"
                " i.original_filename = 'IMG_1.jpg'")
        for m in mounts:
            wait_for(lambda: not (m.mnt / victim).exists(), 120,
                     "the delete")
        seen = time.monotonic() - t1
        time.sleep(1)
        spent = max(cpu_s(m.proc.pid) - before[m] for m in mounts)
        rows.append(("one row deleted by the app: gone from both mounts "
                     "after (each mount's CPU over that and 1 s more)",
                     f"{seen:.2f} s ({spent:.2f} s)", "-"))

        # the status file
        st = []
        for _ in range(20):
            st.append(timed(lambda: (a.mnt / ".thumbfs/status").read_bytes()))
        rows.append(("cat .thumbfs/status (median of 20)",
                     f"{statistics.median(st) * 1000:.1f} ms", "-"))

        # tree walks, beside the same tree on local disk
        local = tmp / "local"
        if LOCAL:
            local_tree(local, pg)

        # one batch listed, and one name looked up, never met before: on
        # the mount (from its catalog), on local disk, and the same rows
        # read from PostgreSQL over loopback (what a mount without a local
        # copy of the rows would do for each)
        import psycopg2
        conn = psycopg2.connect(pg.dsn)
        cur = conn.cursor()
        patients = max(1, N // 500)
        ls_m, ls_l, ls_pg, st_m, st_l, st_pg = [], [], [], [], [], []
        for i in range(min(50, patients)):
            rel = f"patients/P{i + 1}/2020-01-03"
            ls_m.append(timed(lambda: os.listdir(b.mnt / rel)))
            if LOCAL:
                ls_l.append(timed(lambda: os.listdir(local / rel)))
            t0 = time.monotonic()
            cur.execute(
                "SELECT i.original_filename, i.file_size, i.s3_thumbnail_key"
                " FROM images_image i JOIN images_batch b ON b.id ="
                " i.batch_id WHERE b.patient_id = %s AND b.batch_date ="
                " '2020-01-04'", (f"P{i + 1}",))
            cur.fetchall()
            ls_pg.append(time.monotonic() - t0)
            rel = f"patients/P{i + 1}/2020-01-05/IMG_7.jpg"
            st_m.append(timed(lambda: os.stat(b.mnt / rel)))
            if LOCAL:
                st_l.append(timed(lambda: os.stat(local / rel)))
            t0 = time.monotonic()
            cur.execute(
                "SELECT i.file_size FROM images_image i JOIN images_batch b"
                " ON b.id = i.batch_id WHERE b.patient_id = %s AND"
                " b.batch_date = '2020-01-06' AND i.original_filename ="
                " 'IMG_7.jpg'", (f"P{i + 1}",))
            cur.fetchall()
            st_pg.append(time.monotonic() - t0)
        conn.close()

        def ms(v):
            return f"{statistics.median(v) * 1000:.2f}" if v else "-"

        def ratio(a, b):
            return f"{statistics.median(a) / statistics.median(b):.1f}x" \
                if a and b else "-"
        rows.append(("a batch listed the first time, median: mount / "
                     "local disk / its rows from PostgreSQL",
                     f"{ms(ls_m)} / {ms(ls_l)} / {ms(ls_pg)} ms",
                     ratio(ls_m, ls_l)))
        rows.append(("a name looked up the first time, median: mount / "
                     "local disk / its row from PostgreSQL",
                     f"{ms(st_m)} / {ms(st_l)} / {ms(st_pg)} ms",
                     ratio(st_m, st_l)))
        subprocess.run(["sync"])
        Path("/proc/sys/vm/drop_caches").write_text("3")
        time.sleep(2)  # the kernel's forgets reach the daemon
        rss_before = rss_mib(b.proc.pid)
        for what, args in (("find -type f", ["find", "{}", "-type", "f"]),
                           ("du -s", ["du", "-s", "{}"])):
            def run(root):
                subprocess.run([x.replace("{}", str(root)) for x in args],
                               check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["sync"])
            Path("/proc/sys/vm/drop_caches").write_text("3")
            tl = timed(lambda: run(local)) if LOCAL else None
            tm = timed(lambda: run(b.mnt / "patients"))
            rows.append((f"{what} on the mount (local disk)",
                         f"{tm:.2f} s ({tl:.2f} s)" if tl else
                         f"{tm:.2f} s (-)",
                         f"{tm / tl:.1f}x" if tl else "-"))

        rss_walked = rss_mib(b.proc.pid)
        Path("/proc/sys/vm/drop_caches").write_text("2")
        time.sleep(5)
        rss_forgot = rss_mib(b.proc.pid)
        rows.append(("daemon RSS over the walks: before / after find and "
                     "du / after the kernel forgets (drop_caches)",
                     f"{rss_before:.0f} / {rss_walked:.0f} / "
                     f"{rss_forgot:.0f} MiB",
                     f"+{rss_walked - rss_before:.0f} MiB"))
        size = catalog_bytes(a)
        rows.append(("catalog on disk (per row)",
                     f"{size / 2**20:.0f} MiB ({size / N:.0f} bytes)", "-"))
        rows.append(("daemon peak RSS (a / b)",
                     f"{peak_rss_mib(a.proc.pid):.0f} / "
                     f"{peak_rss_mib(b.proc.pid):.0f} MiB", "-"))

        # warm start: the mount answers, and is caught up
        a.stop()
        mark = len(a.log_text())
        t0 = time.monotonic()
        a.start()
        ans = time.monotonic() - t0
        wait_for(lambda: "caught up with" in a.log_text()[mark:] or
                 "read every row" in a.log_text()[mark:], 600, "the catch-up")
        up = time.monotonic() - t0
        full = "read every row" in a.log_text()[mark:]
        rows.append(("warm start: the mount answers / is caught up",
                     f"{ans:.2f} / {up:.2f} s" + (" (a FULL READ)" if full
                                                  else ""), "-"))

        # unmount during a full read (a new catalog)
        (tmp / "c").mkdir()
        c = Mount(BIN, tmp / "c", "file")
        c.config["store"]["url"] = f"file://{tmp}/store"
        c.config["postgres"] = {"dsn": pg.dsn}
        c.start()
        mounts.append(c)
        time.sleep(3)
        t0 = time.monotonic()
        subprocess.run(["fusermount3", "-u", str(c.mnt)], check=True)
        freed = time.monotonic() - t0
        c.proc.wait(600)
        ended = time.monotonic() - t0
        c.proc = None
        c.logf.close()
        mounts.remove(c)
        rows.append(("unmount during a first read: mount point free / "
                     "daemon ended", f"{freed:.2f} / {ended:.2f} s", "-"))

        print(f"\nbench/scale, {N} rows, two mounts on one PostgreSQL and "
              f"one file:// store:")
        width = max(len(r[0]) for r in rows)
        for what, v, ratio in rows:
            print(f"  {what:{width}}  {v:>24}  {ratio}")
    finally:
        for m in mounts:
            try:
                m.stop(600)
            except Exception as e:  # the figures are printed already
                print(f"stopping a mount: {e}")
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
