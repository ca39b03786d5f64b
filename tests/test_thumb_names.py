"""Thumbnails are what thumbfs made, by the catalog's record, not by a
name's shape (#28): a photo of a right thumb named right_thumb.jpg is an
image with its own thumbnail; a thumbnail's name written with the
thumbnail's own bytes (a date's folder downloaded and copied back in, by
cp, rsync or Explorer) succeeds and changes nothing; other bytes under a
thumbnail's name are refused when they are saved, and the thumbnail stays."""
import errno
import hashlib
import os
import shutil
import subprocess

import pytest
from PIL import Image

from conftest import photos, wait_for


def sha(b):
    return hashlib.sha256(b).hexdigest()


def test_a_photo_named_like_a_thumbnail_is_an_image(file_mount):
    m = file_mount
    a, b = photos()[:2]
    d = m.batch()
    shutil.copy(a, d / "right_thumb.jpg")
    row = m.wait_uploaded("right_thumb.jpg")
    assert row["error"] == "" and row["width"] > 0, row
    assert row["thumbnail_name"] == "right_thumb_thumb.jpg", row
    assert (d / "right_thumb.jpg").read_bytes() == a.read_bytes()
    # the image of the stem takes the next thumbnail name
    shutil.copy(b, d / "right.jpg")
    r2 = m.wait_uploaded("right.jpg")
    wait_for(lambda: m.rows("name = 'right.jpg'")[0]["thumbnail_name"],
             30, "right.jpg's thumbnail")
    r2 = m.rows("name = 'right.jpg'")[0]
    assert r2["thumbnail_name"] == "right.jpg_thumb.jpg", r2
    assert r2["s3_thumbnail_key"] != row["s3_key"]
    assert sorted(os.listdir(d)) == ["right.jpg", "right.jpg_thumb.jpg",
                                     "right_thumb.jpg",
                                     "right_thumb_thumb.jpg"]
    # each name shows its own picture
    assert (d / "right_thumb.jpg").read_bytes() == a.read_bytes()
    assert m.object(row["s3_key"]) == a.read_bytes()
    with Image.open(d / "right.jpg_thumb.jpg") as t, Image.open(b) as o:
        assert abs(t.width / t.height - o.width / o.height) < 0.02
    # it is an image in every way: renamed, overwritten, removed
    os.rename(d / "right_thumb.jpg", d / "left_thumb.jpg")
    m.wait_uploaded("left_thumb.jpg")
    shutil.copy(b, d / "left_thumb.jpg")
    wait_for(lambda: [r["sha256"] for r in m.rows(
        "name = 'left_thumb.jpg' AND state = 'uploaded'")] ==
        [sha(b.read_bytes())], 30, "its new content")
    os.unlink(d / "left_thumb.jpg")
    assert [r["name"] for r in m.rows()] == ["right.jpg"]


def test_a_thumbnails_name_takes_only_its_own_bytes(file_mount):
    m = file_mount
    a, b = photos()[:2]
    d = m.batch()
    shutil.copy(a, d / "right.jpg")
    m.wait_uploaded("right.jpg")
    thumb = (d / "right_thumb.jpg").read_bytes()
    # another picture under the thumbnail's name: refused when saved
    with pytest.raises(OSError) as e:
        shutil.copy(b, d / "right_thumb.jpg")
    assert e.value.errno == errno.EPERM
    assert (d / "right_thumb.jpg").read_bytes() == thumb
    # a rename onto it too (rsync's temporary file)
    shutil.copy(b, d / ".tmp.jpg")
    with pytest.raises(OSError) as e:
        os.rename(d / ".tmp.jpg", d / "right_thumb.jpg")
    assert e.value.errno == errno.EPERM
    os.unlink(d / ".tmp.jpg")
    assert (d / "right_thumb.jpg").read_bytes() == thumb
    assert [r["name"] for r in m.rows()] == ["right.jpg"]
    assert "the name is a thumbnail's" in m.log_text()


def test_a_date_folder_copied_back_in(file_mount, tmp_path):
    """Downloaded with its thumbnails, copied back by cp -r, cp -a and
    rsync -a: no error, and nothing changes in the archive."""
    m = file_mount
    srcs = photos()[:3]
    d = m.batch()
    for s in srcs:
        shutil.copy(s, d / s.name)
    for s in srcs:
        m.wait_uploaded(s.name)
    wait_for(lambda: len(os.listdir(d)) == 6, 30, "the thumbnails")
    before = sorted((r["name"], r["sha256"], r["thumbnail_name"],
                     r["s3_thumbnail_key"]) for r in m.rows())
    keys = m.object_keys()
    down = tmp_path / "download"
    shutil.copytree(d, down)
    assert len(os.listdir(down)) == 6
    for cmd in (["cp", "-r", f"{down}/.", str(d)],
                ["cp", "-a", f"{down}/.", str(d)],
                ["rsync", "-a", "--checksum", f"{down}/", f"{d}/"],
                ["rsync", "-a", "--ignore-times", f"{down}/", f"{d}/"]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, (cmd, r.stderr)
    wait_for(lambda: all(r["state"] == "uploaded" for r in m.rows()), 60,
             "the images' rewrites")
    after = sorted((r["name"], r["sha256"], r["thumbnail_name"],
                    r["s3_thumbnail_key"]) for r in m.rows())
    assert after == before
    assert m.object_keys() == keys
    for s in srcs:
        assert (d / s.name).read_bytes() == s.read_bytes()
    assert "refused" not in m.log_text()
