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


class FilePolicy(models.Model):
    """Which detected types a plan's tenants may upload; a plan without one takes
    ``FILES_ALLOWED_TYPES``. An entry is a type (``image/png``) or a family (``image/``)."""

    plan = models.OneToOneField("tenants.Plan", on_delete=models.CASCADE, related_name="+")
    allowed_types = models.JSONField(
        default=list, help_text='Types ("image/png") or families ("image/"); empty: none allowed.'
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "file policies"

    def __str__(self) -> str:
        return f"File types of {self.plan}"


# The one rule of types and families: an entry ending in "/" (``image/``) is a family, and names
# every type that starts with it; any other entry names that one type.


def type_allowed(content_type: str, allowed: list[str]) -> bool:
    """``content_type`` is one of ``allowed``, or of a family (``image/``) in it."""
    return any(
        content_type.startswith(entry) if entry.endswith("/") else content_type == entry
        for entry in allowed
    )


def of_type(entry: str) -> models.Q:
    """The files whose detected type is ``entry``, or of the family ``entry``."""
    if entry.endswith("/"):
        return models.Q(content_type__startswith=entry)
    return models.Q(content_type=entry)


class StorageMigration(models.Model):
    """One ``migrate_storage`` run from ``source`` to ``target`` (optionally one tenant's files),
    and its manifest (``MigrationItem``). Killed, it stays ``running`` with a runner that is gone;
    the next run with the same source, target and tenant takes it over and finishes the rest."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished: every file moved"
        INCOMPLETE = "incomplete", "Finished with files that did not move"

    source = models.CharField(max_length=32)
    target = models.CharField(max_length=32)
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    verify = models.BooleanField(default=False)
    delete_source = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    runner = models.CharField(max_length=255, help_text="host:pid of the run that holds it.")
    total_files = models.PositiveBigIntegerField(default=0)
    total_bytes = models.PositiveBigIntegerField(default=0)
    moved_files = models.PositiveBigIntegerField(default=0)
    moved_bytes = models.PositiveBigIntegerField(default=0)
    failed_files = models.PositiveBigIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["source", "status"], name="storage_migration_src_idx")]

    def __str__(self) -> str:
        scope = f" ({self.tenant})" if self.tenant_id else ""
        return f"{self.source} → {self.target}{scope} #{self.pk}"


class MigrationItem(TenantScopedModel):
    """One file of a migration's manifest, and how far its move got (``storage.transfer``)."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        COPIED = "copied", "Copied, row still on the source"
        SWITCHED = "switched", "Row on the target, source copy still to delete"
        MOVED = "moved", "Moved"
        FAILED = "failed", "Failed"

    migration = models.ForeignKey(StorageMigration, on_delete=models.CASCADE, related_name="items")
    file = models.ForeignKey(StoredFile, on_delete=models.CASCADE, related_name="+")
    size = models.PositiveBigIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    copies = models.PositiveIntegerField(default=0, help_text="Copies written to the target.")
    error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantScopedModel.Meta):
        ordering = ["id"]
        constraints = [
            *TenantScopedModel.Meta.constraints,
            models.UniqueConstraint(
                fields=["tenant", "migration", "file"], name="storage_item_file_uniq"
            ),
        ]
        indexes = [models.Index(fields=["migration", "state"], name="storage_item_state_idx")]

    def __str__(self) -> str:
        return f"file {self.file_id}: {self.state}"


class OrphanReport(models.Model):
    """One orphan check of a storage (``storage.maintenance.report_orphans``): objects under
    ``tenants/`` without a row, and rows naming the storage without an object. Reported, never
    deleted automatically: an operator decides (docs/FILES.md)."""

    storage = models.CharField(max_length=32)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    objects_scanned = models.PositiveBigIntegerField(default=0)
    rows_scanned = models.PositiveBigIntegerField(default=0)
    objects_without_row = models.PositiveBigIntegerField(default=0)
    rows_without_object = models.PositiveBigIntegerField(default=0)
    samples = models.JSONField(
        default=dict,
        help_text="Up to 100 keys of each kind: objects_without_row, rows_without_object.",
    )
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Orphans of {self.storage} at {self.started_at:%Y-%m-%d %H:%M}"
