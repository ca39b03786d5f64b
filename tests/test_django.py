"""The rule the project exists for, checked the way the web app reads it:
after a mount ingests a folder of photographs, every row serializes with a
thumbnail_url, a width and a height, and both presigned URLs download."""
import io
import json
import subprocess
import sys
import urllib.request

from PIL import Image

from conftest import ROOT, pg_mount, photos, wait_for

APP = r'''
import json, sys
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["rest_framework", "images"],
    DATABASES={"default": {"ENGINE": "django.db.backends.postgresql",
                           "HOST": "127.0.0.1", "PORT": sys.argv[1],
                           "NAME": "thumbfs", "USER": "postgres"}},
    AWS_S3_ENDPOINT_URL=sys.argv[2], AWS_S3_REGION_NAME="us-east-1",
    AWS_ACCESS_KEY_ID=sys.argv[3], AWS_SECRET_ACCESS_KEY=sys.argv[4],
    USE_TZ=True)
django.setup()
from images.models import Image
from images.serializers import ImageSerializer
rows = Image.objects.select_related("batch").order_by("original_filename")
print(json.dumps(ImageSerializer(rows, many=True).data, default=str))
'''


def serialize(pg, s3store):
    """The app's view of the rows: run in a process of its own, as the app
    is, with Debian's Django, DRF, psycopg2 and boto3."""
    r = subprocess.run(
        [sys.executable, "-c", APP, str(pg.port), s3store.endpoint,
         s3store.access_key, s3store.secret_key], capture_output=True,
        text=True, timeout=120,
        cwd=ROOT / "tests/django_project")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_every_row_has_thumbnail_width_height(thumbfs_bin, tmp_path, s3store,
                                              clean_postgres):
    pg = clean_postgres
    m = pg_mount(thumbfs_bin, tmp_path, s3store, pg).start()
    d = m.batch("P42", "2025-11-10")
    srcs = photos()[:8]
    subprocess.run(["cp", *map(str, srcs), str(d)], check=True)
    (d / "notes.jpg").write_bytes(b"a text file with a photo's name")
    wait_for(lambda: len(pg.rows("SELECT id FROM images_image")) == len(srcs),
             120, "every photo in PostgreSQL")
    m.wait_uploaded("notes.jpg")
    wait_for(lambda: "queue postgres: 0" in
             (m.mnt / ".thumbfs/status").read_text(), 30, "the sync queue")

    data = serialize(pg, s3store)
    assert len(data) == len(srcs)
    for row, src in zip(data, sorted(srcs, key=lambda p: p.name)):
        assert row["original_filename"] == src.name
        assert row["thumbnail_url"] is not None
        assert row["width"] and row["height"]
        assert (row["width"], row["height"]) == Image.open(src).size
        original = urllib.request.urlopen(row["url"], timeout=30).read()
        assert original == src.read_bytes()
        assert len(original) == row["file_size"]
        thumb = urllib.request.urlopen(row["thumbnail_url"], timeout=30).read()
        assert len(thumb) == row["thumbnail_size"]
        t = Image.open(io.BytesIO(thumb))
        assert t.format == "JPEG" and max(t.size) == 300
        assert row["patient_id"] == "P42"
        assert row["batch_date"] == "2025-11-10"
    m.stop()
