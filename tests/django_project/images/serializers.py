"""The gallery API's serializer: presigned URLs for the original and the
thumbnail; thumbnail_url is None when the row has no thumbnail key (the bug
thumbfs exists to prevent)."""
import boto3
from botocore.config import Config
from django.conf import settings
from rest_framework import serializers

from .models import Image


def s3_client():
    return boto3.client(
        "s3", endpoint_url=settings.AWS_S3_ENDPOINT_URL,
        region_name=settings.AWS_S3_REGION_NAME,
        aws_access_key_id=settings.AWS_ACCESS_KEY_ID,
        aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY,
        config=Config(signature_version="s3v4",
                      s3={"addressing_style": "path"}))


def presign(bucket, key):
    if not key:
        return None
    return s3_client().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)


class ImageSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    patient_id = serializers.CharField(source="batch.patient_id")
    batch_date = serializers.DateField(source="batch.batch_date")

    class Meta:
        model = Image
        fields = ["id", "patient_id", "batch_date", "original_filename",
                  "file_size", "thumbnail_size", "mime_type", "width",
                  "height", "sha256", "uploaded_by", "url", "thumbnail_url"]

    def get_url(self, obj):
        return presign(obj.s3_bucket, obj.s3_key)

    def get_thumbnail_url(self, obj):
        return presign(obj.s3_bucket, obj.s3_thumbnail_key)
