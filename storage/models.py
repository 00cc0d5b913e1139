"""StoredFile: the record of a tenant's file, and where its bytes live.

Invariants (``storage.services``):

* The key is made by the platform, never taken from the client: ``tenants/<tenant id>/<yyyy>/<mm>/
  <random>/<sanitised name>``. A client's file name only ever becomes the last part, sanitised, so
  no name reaches another tenant's prefix or another path.
* ``content_type`` is what the bytes are (detected), not what the client claimed.
* ``storage`` names the entry of ``STORAGES`` that holds the bytes; reads go there, so a file is
  served from wherever its row says while a migration moves files.
* ``size`` bytes are counted in the tenant's ``storage_bytes`` from the moment the row exists until
  its bytes are purged.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tenants.scoping import TenantScopedModel


class StoredFile(TenantScopedModel):
    key = models.CharField(max_length=500)
    original_name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=100, help_text="Detected from the bytes.")
    sha256 = models.CharField(max_length=64)
    storage = models.CharField(max_length=32, help_text="The STORAGES entry holding the bytes.")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    uploaded_by_key = models.ForeignKey(
        "tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="Soft-deleted: purge later.")

    class Meta(TenantScopedModel.Meta):
        ordering = ["id"]
        constraints = [
            *TenantScopedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "key"], name="storage_file_tenant_key_uniq"),
        ]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="storage_file_created_idx"),
            models.Index(fields=["tenant", "content_type"], name="storage_file_type_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.key})"
