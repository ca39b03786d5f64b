"""One name, one image (#28): "Röntgen_é.jpg" sent decomposed (NFD, as
macOS writes it) and composed (NFC, Windows, Linux) is one image with one
store key, kept in the spelling it was first written in (so that rsync
from where it came finds it again), and reached, rewritten, renamed and
removed by either spelling."""
import hashlib
import os
import shutil
import subprocess
import time
import unicodedata

from conftest import photos, wait_for

NAME = "Röntgen_é.jpg"
NFC = unicodedata.normalize("NFC", NAME)
NFD = unicodedata.normalize("NFD", NAME)


def sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_both_spellings_are_one_image(file_mount):
    assert NFC != NFD
    m = file_mount
    a, b = photos()[:2]
    d = m.batch()
    shutil.copy(a, d / NFD)
    m.wait_uploaded(NFD)
    shutil.copy(b, d / NFC)
    wait_for(lambda: [r["sha256"] for r in m.rows()] == [sha(b)], 60,
             "the second write over the first")
    assert [r["name"] for r in m.rows()] == [NFD]
    stem = unicodedata.normalize("NFD", "Röntgen_é")
    assert sorted(os.listdir(d)) == [NFD, stem + "_thumb.jpg"]
    # (each spelling is its own inode in the kernel until the low-level
    # layer of #27: the other one's cached size lasts its attr_timeout)
    time.sleep(1.2)
    for form in (NFC, NFD):
        assert (d / form).read_bytes() == b.read_bytes()
    assert len(m.object_keys()) == 2
    # renamed by the other spelling, then removed by the first
    other = unicodedata.normalize("NFC", "Ästhetik.jpg")
    os.rename(d / NFC, d / other)
    m.wait_uploaded(other)
    assert [r["name"] for r in m.rows()] == [other]
    os.unlink(d / unicodedata.normalize("NFD", other))
    assert m.rows() == []
    assert not any("Ästhetik" in k or "Röntgen" in k
                   for k in m.object_keys()) or wait_for(
        lambda: m.object_keys() == [], 30, "the objects to go")


def test_the_nightly_rsync_of_decomposed_names(file_mount, tmp_path):
    """An export a Mac wrote (decomposed names), copied each night with
    rsync -a --delete: the second night finds every file as it left it,
    and neither removes nor sends one again."""
    m = file_mount
    src = tmp_path / "export/P1/2025-11-10"
    src.mkdir(parents=True)
    shutil.copy(photos()[0], src / NFD)
    cmd = ["rsync", "-a", "--delete", "--itemize-changes",
           "--exclude=*_thumb.*", f"{tmp_path}/export/", f"{m.mnt}/patients/"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert ">f+++++++++ P1/2025-11-10/" + NFD in r.stdout, r.stdout
    row = m.wait_uploaded(NFD)
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "deleting" not in r.stdout and ">f" not in r.stdout, r.stdout
    assert [x["id"] for x in m.rows()] == [row["id"]]


def test_a_name_written_decomposed_before_is_reached(file_mount):
    """A spool file of a decomposed name, as a mount before this left it
    (taken in by the walk after a crash, before the catalog had keys):
    read and rewritten by the other spelling."""
    m = file_mount
    a, b = photos()[:2]
    m.batch()
    m.kill9()
    spool = m.data / "spool/patients/P1/2025-11-10"
    shutil.copy(a, spool / NFD)
    m.start()
    m.wait_uploaded(NFD)
    d = m.mnt / "patients/P1/2025-11-10"
    assert (d / NFC).read_bytes() == a.read_bytes()
    with open(d / NFC, "r+b") as f:
        f.write(b.read_bytes())
    wait_for(lambda: [r["sha256"] for r in m.rows()] == [sha(b)], 60,
             "its rewrite")
    assert [r["name"] for r in m.rows()] == [NFD]
    os.unlink(d / NFC)
    assert m.rows() == []
