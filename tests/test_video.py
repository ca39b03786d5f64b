"""Video (#31): a poster frame, the first of the first ten seconds that is
neither black nor nearly uniform, turned as the container says, decoded by
FFmpeg's libraries; the row's width and height are the video's as shown.
The videos are made by ffmpeg from its lavfi sources; the frame chosen is
checked by its time and against ffmpeg's own decoding of that frame.
Broken and hostile videos are an error for that file, never a crash."""
import shutil
import struct
import subprocess

import pytest
from PIL import Image

from conftest import BUILD, Mount, check_broken, thumb_png, psnr

THUMB = BUILD / "thumbfs-thumb"
# our frame and ffmpeg's, both fit by Lanczos and kept as PNG: what is
# left is rounding in the resampling (53 dB measured for H.264)
PSNR_MIN = 40

pytestmark = pytest.mark.skipif(not shutil.which("ffmpeg"),
                                reason="ffmpeg is not installed")

# 1 s of black, 0.6 s of grey with a faint noise, then a test pattern: at
# 25 frames a second the first picture is frame 40, at 1.6 s
OPENING = ("color=black:s=320x240:r=25:d=1",
           # with a faint noise, as a camera's sensor gives: still uniform
           "color=0x808080:s=320x240:r=25:d=0.6,noise=alls=6:allf=t",
           "testsrc=s=320x240:r=25:d=1")
CODECS = {  # container: its codec
    "mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    "webm": ["-c:v", "libvpx-vp9", "-b:v", "300k"],
    "avi": ["-c:v", "mpeg4", "-q:v", "3"],
    "mov": ["-c:v", "mjpeg", "-q:v", "3"],
    "mkv": ["-c:v", "ffv1"],
}
MIME = {"mp4": "video/mp4", "webm": "video/webm", "avi": "video/x-msvideo",
        "mov": "video/quicktime", "mkv": "video/x-matroska"}


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True,
                   timeout=120)


def make_video(path, sources=OPENING, codec=CODECS["mp4"], more=()):
    """A video of the lavfi sources one after the other."""
    ins = []
    for s in sources:
        ins += ["-f", "lavfi", "-i", s]
    n = len(sources)
    flt = "".join(f"[{i}]" for i in range(n)) + \
        f"concat=n={n}:v=1:a=0,format=yuv420p"
    ffmpeg(*ins, "-filter_complex", flt, *codec, *more, str(path))
    return path


def ffmpeg_frame(tmp_path, src, n):
    """Frame n as ffmpeg decodes it (turned as it turns it), fit in
    300x300 as Pillow's thumbnail() fits it."""
    ref = tmp_path / "ref.png"
    ffmpeg("-i", str(src), "-vf", f"select=eq(n\\,{n})", "-frames:v", "1",
           str(ref))
    img = Image.open(ref).convert("RGB")
    img.thumbnail((300, 300), Image.LANCZOS)
    return img


@pytest.mark.parametrize("kind", sorted(CODECS))
def test_poster_is_the_first_picture(tmp_path, kind):
    src = make_video(tmp_path / f"v.{kind}", codec=CODECS[kind])
    for args in ([], ["--isolated"]):
        r, out = thumb_png(tmp_path, src, *args)
        assert r.returncode == 0, r.stderr
        assert r.stdout == (f"{src}: {MIME[kind]} 320x240, thumbnail "
                            "300x225, frame at 1.600 s\n"), r.stdout
        assert psnr(Image.open(out).convert("RGB"),
                    ffmpeg_frame(tmp_path, src, 40)) >= PSNR_MIN


@pytest.mark.parametrize("angle,size", [(90, (240, 320)), (180, (320, 240)),
                                        (270, (240, 320))])
def test_poster_is_turned_as_the_container_says(tmp_path, angle, size):
    plain = make_video(tmp_path / "plain.mp4")
    src = tmp_path / "turned.mp4"
    # a phone's portrait video: the frames as the sensor gave them and a
    # display matrix (ffmpeg writes it from the rotate tag on a copy)
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0",
           f"rotate={angle}", str(src))
    r, out = thumb_png(tmp_path, src)
    assert r.returncode == 0, r.stderr
    w, h = size
    tw, th = (300, 225) if w > h else (225, 300)
    assert f"video/mp4 {w}x{h}, thumbnail {tw}x{th}, frame at 1.600 s" \
        in r.stdout, r.stdout
    assert psnr(Image.open(out).convert("RGB"),
                ffmpeg_frame(tmp_path, src, 40)) >= PSNR_MIN


def test_size_is_as_shown_with_the_sample_aspect(tmp_path):
    src = tmp_path / "wide.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=320x240:r=25:d=1", "-vf",
           "setsar=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(src))
    r, out = thumb_png(tmp_path, src)
    assert r.returncode == 0, r.stderr
    assert "640x240, thumbnail 300x113, frame at 0.000 s" in r.stdout, \
        r.stdout
    # the frame as stored, 320x240, drawn at the size shown (Lanczos)
    ref = tmp_path / "ref.png"
    ffmpeg("-i", str(src), "-frames:v", "1", str(ref))
    img = Image.open(ref).convert("RGB").resize((300, 113), Image.LANCZOS)
    assert psnr(Image.open(out).convert("RGB"), img) >= PSNR_MIN


def test_poster_is_looked_for_in_the_first_seconds_only(tmp_path):
    # black until 11 s: no picture in the first ten, so the first of the
    # most varied frames seen (all black alike) is the poster
    src = make_video(tmp_path / "late.mp4",
                     ("color=black:s=64x48:r=25:d=11",
                      "testsrc=s=64x48:r=25:d=1"))
    r, out = thumb_png(tmp_path, src)
    assert r.returncode == 0, r.stderr
    assert "64x48, thumbnail 64x48, frame at 0.000 s" in r.stdout, r.stdout
    assert Image.open(out).convert("L").getextrema()[1] < 40


def patch(data, box, offset, fmt, *values):
    """data with values packed at offset from the first box named box."""
    b = bytearray(data)
    struct.pack_into(fmt, b, data.index(box) + offset, *values)
    return bytes(b)


def test_broken_and_hostile_videos_are_an_error(tmp_path):
    good = make_video(tmp_path / "good.mp4").read_bytes()  # moov at the end
    fast = tmp_path / "fast.mp4"  # moov first, as a web upload has it
    ffmpeg("-i", str(tmp_path / "good.mp4"), "-c", "copy", "-movflags",
           "+faststart", str(fast))
    fast = fast.read_bytes()
    raw = tmp_path / "raw.avi"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=32x24:r=5:d=1", "-c:v",
           "rawvideo", "-pix_fmt", "bgr24", str(raw))
    sound = tmp_path / "sound.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", str(sound))
    cases = {  # what the error says; None: FFmpeg makes do (a thumbnail)
        "truncated before its index": (good[:len(good) // 2],
                                       "not a video FFmpeg reads"),
        "truncated after its index": (fast[:len(fast) // 2], None),
        "header only": (fast[:64], "a file without a video stream"),
        "2^31 samples": (patch(fast, b"stsz", 12, ">I", 1 << 31),
                         "not a video FFmpeg reads"),
        "2^31 frames of one duration": (
            patch(patch(fast, b"stts", 8, ">I", 1), b"stts", 12, ">II",
                  1 << 31, 512), None),
        "declared 65535x65535, coded 320x240": (
            patch(fast, b"avc1", 28, ">HH", 65535, 65535), None),
        "raw frames declared 60000x60000": (
            patch(raw.read_bytes(), b"strf", 12, "<ii", 60000, 60000),
            "a video stream of no size FFmpeg takes"),
        "sound only": (sound.read_bytes(), "a file without a video stream"),
        "Matroska's magic and noise": (b"\x1a\x45\xdf\xa3" + bytes(
            range(256)) * 8, "not a video FFmpeg reads"),
    }
    check_broken(THUMB, cases, tmp_path / "bad.mp4")


def test_a_video_in_the_mount_gets_its_thumbnail(thumbfs_bin, tmp_path):
    m = Mount(thumbfs_bin, tmp_path, "file")
    # a video is read from its start: the bound on what is decoded whole
    # does not keep it from its thumbnail
    m.config["thumbnail"] = {"max_bytes": "4096"}
    m.start()
    try:
        src = make_video(tmp_path / "gait.mov", codec=CODECS["mov"])
        assert src.stat().st_size > 4096
        _, d = m.copy_checked(src, "gait.mov", "video/quicktime",
                              (320, 240))
        with Image.open(d / "gait_thumb.jpg") as t:
            t = t.convert("RGB")
        assert t.size == (300, 225)
        # against the same frame saved as the web app's Pillow saves it
        ffmpeg_frame(tmp_path, src, 40).save(tmp_path / "ref.jpg",
                                              quality=85)
        assert psnr(t, Image.open(tmp_path / "ref.jpg").convert("RGB")) >= 38
    finally:
        m.stop()
