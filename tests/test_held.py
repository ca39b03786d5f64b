"""Folders as people make them (#28): Explorer's "New folder" and Finder's
"untitled folder" before the name is typed, a patient's folder typed as
"Müller Anna", a date as "10.11.2025", a folder dropped into a date's.
Each is held: its files stay in the mount's spool, listed, readable, never
uploaded, and shown in the status file, until the folder is renamed to a
patient id or a date; then everything in it goes in, and folders in it
with other names stay held."""
import errno
import json
import os
import shutil

import pytest

from conftest import photos, wait_for


def status(m):
    return json.loads((m.mnt / ".thumbfs/status.json").read_text())


def err(fn):
    with pytest.raises(OSError) as e:
        fn()
    return e.value.errno


def test_new_folder_then_rename(file_mount):
    m = file_mount
    srcs = photos()[:3]
    top = m.mnt / "patients"
    new = top / "New folder"
    os.mkdir(new)
    os.mkdir(new / "2025-11-10")
    for s in srcs[:2]:
        shutil.copy(s, new / "2025-11-10" / s.name)
    shutil.copy(srcs[2], new / "loose.jpg")
    assert sorted(os.listdir(new)) == ["2025-11-10", "loose.jpg"]
    assert (new / "2025-11-10" / srcs[0].name).read_bytes() == \
        srcs[0].read_bytes()
    st = status(m)
    assert st["folders_held"] == 1, st
    assert {"path": "patients/New folder",
            "what": "held for its name: 3 file(s) in it not uploaded until "
            "it is renamed to a patient id or a date"} in st["problems"], st
    assert m.rows() == [] and m.object_keys() == []
    # a file would be left in the patient's folder itself: said, not done
    assert err(lambda: os.rename(new, top / "P5")) == errno.EPERM
    assert "'loose.jpg' would be a file in a patient's folder" in \
        m.log_text()
    os.rename(new / "loose.jpg", new / "2025-11-10" / "loose.jpg")
    os.rename(new, top / "P5")
    for name in [s.name for s in srcs[:2]] + ["loose.jpg"]:
        m.wait_uploaded(name)
    d = top / "P5/2025-11-10"
    wait_for(lambda: len(os.listdir(d)) == 6, 30, "the thumbnails")
    assert len(m.object_keys()) == 6
    assert status(m)["folders_held"] == 0
    assert "'/patients/New folder' renamed to '/patients/P5': 3 file(s)" \
        in m.log_text()


def test_a_date_as_people_write_it_and_a_folder_in_a_date(file_mount):
    m = file_mount
    srcs = photos()[:3]
    p = m.mnt / "patients/P1"
    os.makedirs(p)
    typed = p / "10.11.2025"
    os.mkdir(typed)
    shutil.copy(srcs[0], typed / "a.jpg")
    # a folder dropped into a date's folder, with a folder in it
    d = m.batch("P1", "2025-11-11")
    os.makedirs(d / "Scans" / "more")
    shutil.copy(srcs[1], d / "Scans" / "b.jpg")
    shutil.copy(srcs[2], d / "Scans" / "more" / "c.jpg")
    assert sorted(os.listdir(d)) == ["Scans"]
    assert os.path.isdir(d / "Scans")
    assert status(m)["folders_held"] == 2
    assert m.rows() == []
    # a name below a date that an image has is taken
    shutil.copy(srcs[0], d / "x.jpg")
    m.wait_uploaded("x.jpg")
    assert err(lambda: os.mkdir(d / "x.jpg")) == errno.EEXIST
    assert err(lambda: os.mkdir(d / "x_thumb.jpg")) == errno.EEXIST
    # the typed date renamed: its image goes in
    os.rename(typed, p / "2025-11-10")
    m.wait_uploaded("a.jpg")
    # a file moved out of the held folder goes in; the rest stays
    os.rename(d / "Scans" / "b.jpg", d / "b.jpg")
    m.wait_uploaded("b.jpg")
    assert sorted(r["name"] for r in m.rows()) == ["a.jpg", "b.jpg",
                                                   "x.jpg"]
    # a held folder renamed into the archive as a date, its own folder
    # held in turn
    os.rename(d / "Scans", p / "2025-11-12")
    assert status(m)["folders_held"] == 1
    assert os.listdir(p / "2025-11-12") == ["more"]
    os.rename(p / "2025-11-12" / "more", p / "2025-11-13")
    m.wait_uploaded("c.jpg")
    assert status(m)["folders_held"] == 0
    # rm -r of a held tree
    os.makedirs(d / "junk" / "deeper")
    shutil.copy(srcs[0], d / "junk" / "deeper" / "z.jpg")
    shutil.rmtree(d / "junk")
    assert status(m)["folders_held"] == 0
    assert not any("z.jpg" in k for k in m.object_keys())


def test_held_folders_stay_held_after_a_remount(file_mount):
    m = file_mount
    src = photos()[0]
    folder = m.mnt / "patients" / "Müller Anna" / "2025-11-10"
    os.makedirs(folder)
    shutil.copy(src, folder / "x.jpg")
    m.stop()
    m.start()
    assert (folder / "x.jpg").read_bytes() == src.read_bytes()
    st = status(m)
    assert st["folders_held"] == 1
    assert st["problems"][0]["path"] == "patients/Müller Anna", st
    assert m.rows() == [] and m.object_keys() == []
    os.rename(m.mnt / "patients" / "Müller Anna", m.mnt / "patients/P9")
    m.wait_uploaded("x.jpg")
    assert status(m)["folders_held"] == 0


def test_what_is_in_the_archive_stays_there(file_mount):
    m = file_mount
    src = photos()[0]
    d = m.batch("P1", "2025-11-10")
    shutil.copy(src, d / "x.jpg")
    m.wait_uploaded("x.jpg")
    p = m.mnt / "patients/P1"
    # a date with images keeps a date's name, a patient an id
    assert err(lambda: os.rename(d, p / "Nov")) == errno.EPERM
    assert err(lambda: os.rename(p, m.mnt / "patients/Ann B")) == \
        errno.EPERM
    # a held folder does not go over one with images
    os.mkdir(p / "New folder")
    assert err(lambda: os.rename(p / "New folder", d)) == errno.ENOTEMPTY
    # an empty one may take another name, and come back
    os.mkdir(p / "2025-11-11")
    os.rename(p / "2025-11-11", p / "later")
    assert status(m)["folders_held"] == 2
    os.rename(p / "later", p / "2025-11-11")
    assert status(m)["folders_held"] == 1
    # a held folder renamed within held places, and removed
    os.rename(p / "New folder", p / "Other")
    assert [x["path"] for x in status(m)["problems"]] == ["patients/P1/Other"]
    os.rmdir(p / "Other")
    assert status(m)["folders_held"] == 0
    # names that are no names are refused still
    assert err(lambda: os.mkdir(os.fsencode(p) + b"/bad\xff")) == \
        errno.EILSEQ
    assert err(lambda: os.mkdir(m.mnt / "elsewhere")) == errno.EPERM
    assert [r["name"] for r in m.rows()] == ["x.jpg"]


def test_a_held_folder_gone_from_the_spool_is_listed_no_more(file_mount):
    """The catalog's line is written before the folder is made: a daemon
    that dies between the two leaves a line for nothing, dropped at the
    next mount."""
    m = file_mount
    os.mkdir(m.mnt / "patients" / "New folder")
    assert status(m)["folders_held"] == 1
    m.kill9()
    os.rmdir(m.data / "spool/patients/New folder")
    m.start()
    assert status(m)["folders_held"] == 0
    assert "held folder '/patients/New folder' is gone from the spool" in \
        m.log_text()
