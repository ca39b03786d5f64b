"""The audit log: one JSON line per change through the mount and per
operation thumbfs refuses, with who, what and the content's hash."""
import json
import os
import stat

from conftest import Mount, photos, wait_for


def read_log(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_kind_once(thumbfs_bin, tmp_path, s3store):
    log = tmp_path / "audit.log"
    m = Mount(thumbfs_bin, tmp_path, "s3", s3store)
    m.config["audit"] = {"file": str(log)}
    m.start()
    try:
        d = m.batch()
        data = photos()[0].read_bytes()
        (d / "a.jpg").write_bytes(data)
        row = m.wait_uploaded("a.jpg")
        os.rename(d / "a.jpg", d / "b.jpg")
        m.wait_uploaded("b.jpg")
        os.chmod(d / "b.jpg", 0o600)
        os.unlink(d / "b.jpg")
        (d / "c.jpg").write_bytes(data)
        m.wait_uploaded("c.jpg")
        for bad in (lambda: (d / "c_thumb.jpg").write_bytes(b"x"),
                    lambda: (m.mnt / "elsewhere").mkdir()):
            try:
                bad()
                assert False, "not refused"
            except OSError:
                pass
        wait_for(lambda: sum(e["op"] == "stored" for e in read_log(log))
                 == 3, 30, "the stored lines")
    finally:
        m.stop()

    events = read_log(log)
    base = "/patients/P1/2025-11-10"
    def one(**want):
        found = [e for e in events
                 if all(e.get(k) == v for k, v in want.items())]
        assert len(found) == 1, (want, events)
        return found[0]

    e = one(op="create", path=f"{base}/a.jpg", result="ok")
    assert (e["uid"], e["user"]) == (0, "root") and e["pid"] > 0
    assert e["time"].endswith("Z")
    one(op="write", path=f"{base}/a.jpg", size=len(data), result="ok")
    one(op="stored", path=f"{base}/a.jpg", sha256=row["sha256"])
    one(op="rename", path=f"{base}/a.jpg", to=f"{base}/b.jpg",
        sha256=row["sha256"], result="ok")
    one(op="stored", path=f"{base}/b.jpg", sha256=row["sha256"])
    one(op="chmod", path=f"{base}/b.jpg", result="ok")
    one(op="unlink", path=f"{base}/b.jpg", sha256=row["sha256"],
        result="ok")
    # what thumbfs refused, with the errno the caller got
    one(op="write", path=f"{base}/c_thumb.jpg", result="EPERM")
    one(op="mkdir", path="/elsewhere", result="EPERM")
    one(op="mkdir", path="/patients/P1", result="ok")
    text = log.read_text()
    assert s3store.secret_key not in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_bad_audit_file_stops_the_mount(thumbfs_bin, tmp_path):
    m = Mount(thumbfs_bin, tmp_path, "file")
    m.config["audit"] = {"file": str(tmp_path / "no" / "such" / "audit.log")}
    m.start(check=False)
    assert m.proc.wait(30) != 0
    m.proc = None
    m.logf.close()
    assert "cannot open audit log" in m.log_text()
    assert not os.path.ismount(m.mnt)
