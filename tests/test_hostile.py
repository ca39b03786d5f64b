"""Hostile names: each refused with the right errno and a log line naming
the rule, and nothing of a refused operation reaches the catalog or the
store. Keys are built only from names that passed."""
import errno
import os

import pytest

BAD_NAMES = [
    (b"\xff\xfe.jpg", errno.EILSEQ),        # not UTF-8
    (b"\xc0\xaf.jpg", errno.EILSEQ),        # an overlong '/'
    (b"\xed\xa0\x80.jpg", errno.EILSEQ),    # a UTF-16 surrogate
    (b"a\nb.jpg", errno.EINVAL),            # a control character
    (b"tab\there.jpg", errno.EINVAL),
    (b"x" * 256 + b".jpg", errno.ENAMETOOLONG),
]


def test_hostile_names_are_refused(file_mount, tmp_path):
    m = file_mount
    d = os.fsencode(m.batch())
    good = tmp_path / "good.jpg"
    good.write_bytes(b"not really an image")
    for name, err in BAD_NAMES:
        path = d + b"/" + name
        with pytest.raises(OSError) as e:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
        assert e.value.errno == err, (name, e.value)
        with pytest.raises(OSError) as e:  # nor by a rename onto it
            os.rename(os.fsencode(good), path)
        assert e.value.errno in (err, errno.EXDEV), (name, e.value)
        with pytest.raises(OSError) as e:
            os.mkdir(path)
        assert e.value.errno == err, (name, e.value)
    # a NUL cannot reach a filesystem at all: the call refuses it first
    with pytest.raises(ValueError):
        os.open(d + b"/a\0b.jpg", os.O_WRONLY | os.O_CREAT)
    # '..' is resolved by the kernel, inside the tree the mount shows
    with pytest.raises(OSError) as e:
        os.close(os.open(d + b"/../../../x.jpg", os.O_WRONLY | os.O_CREAT))
    assert e.value.errno == errno.EPERM
    # patient ids and dates with the same bytes
    top = os.fsencode(m.mnt / "patients")
    for bad, want in ((b"P\xff", errno.EILSEQ), (b"P\n1", errno.EINVAL),
                      (b"..x\xc0", errno.EILSEQ)):
        with pytest.raises(OSError) as e:
            os.mkdir(top + b"/" + bad)
        assert e.value.errno == want, (bad, e.value)
    with pytest.raises(OSError) as e:
        os.mkdir(top + b"/P1/2025-11-10\xff")
    assert e.value.errno == errno.EILSEQ

    assert os.listdir(d) == []
    assert m.rows() == []
    m.stop()
    assert m.object_keys() == []
    log = m.log_text()
    assert "a file name must be valid UTF-8" in log
    assert "a file name may not hold control characters" in log
    m.start()  # the fixture stops it


def test_utf8_names_with_spaces_are_stored_under_their_names(file_mount):
    m = file_mount
    d = m.batch()
    name = "R\u00f6ntgen Aufnahme \u20ac \U0001F4F7.jpg"
    from conftest import photos
    data = min(photos(), key=lambda p: p.stat().st_size).read_bytes()
    (d / name).write_bytes(data)
    row = m.wait_uploaded(name)
    assert row["s3_key"].endswith("/P1/2025-11-10/" + name)
    assert m.object(row["s3_key"]) == data
