"""The web app's Image and Batch models, as DESIGN.md lists their columns."""
import uuid

from django.db import models


class Batch(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient_id = models.CharField(max_length=64)
    batch_date = models.DateField()
    name = models.CharField(max_length=255, blank=True)
    uploaded_by = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        managed = False
        db_table = "images_batch"
        unique_together = [("patient_id", "batch_date")]


class Image(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE,
                              related_name="images")
    s3_key = models.CharField(max_length=1024)
    s3_thumbnail_key = models.CharField(max_length=1024, null=True, blank=True)
    s3_bucket = models.CharField(max_length=255)
    original_filename = models.CharField(max_length=255)
    file_size = models.BigIntegerField()
    thumbnail_size = models.IntegerField(null=True, blank=True)
    mime_type = models.CharField(max_length=100, blank=True)
    width = models.IntegerField(null=True, blank=True)
    height = models.IntegerField(null=True, blank=True)
    category = models.CharField(max_length=50, blank=True)
    filemaker_id = models.CharField(max_length=100, null=True, blank=True)
    uploaded_by = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        managed = False
        db_table = "images_image"
        unique_together = [("batch", "original_filename")]
