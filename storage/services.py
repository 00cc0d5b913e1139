"""Writes of the storage app: storing a tenant's file. Keyword-only, typed.

``file_store`` takes bytes the caller has already received (a temporary file on disk, with its
size, sha256 and first bytes counted on the way in) and makes them a ``StoredFile``:

1. the type is detected from the bytes and checked against the plan's ``FilePolicy`` (or
   ``FILES_ALLOWED_TYPES`` for a plan without one) (415);
2. ``max_file_bytes`` (413) and ``storage_bytes`` (403) are reserved, each in its own short
   transaction (a counter row is never locked while bytes travel);
3. the bytes go to the storage of ``FILES_STORAGE`` under a key the platform makes, through the
   ``storage`` breaker (``storage.backends.guarded``: a storage that fails is a 503);
4. the row is written.

Any failure after (2) releases the reservations, and any failure after (3) deletes the stored
object, before the error propagates: no usage counted without a file, no object without a row. A
process killed between the steps can leave usage counted or an object without a row: the
reconciliation and orphan reports (maintenance) find both.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import IO

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from queues.services import job_enqueue
from storage.backends import backend_named, guarded
from storage.detection import detect_type
from storage.exceptions import UnsupportedFileType
from storage.keys import file_key
from storage.models import FilePolicy, StoredFile, type_allowed
from tenants.context import tenant_scope
from tenants.limits.quotas import quota_release, quota_reserve
from tenants.limits.registry import MAX_FILE_BYTES, STORAGE_BYTES
from tenants.models import ApiKey, Tenant

logger = logging.getLogger(__name__)

#: The job kind that purges a soft-deleted file (storage/jobs.py).
PURGE_KIND = "storage.purge_file"


def file_store(
    *,
    tenant: Tenant,
    source: IO[bytes],
    name: str,
    size: int,
    sha256: str,
    head: bytes,
    uploaded_by=None,
    uploaded_by_key: ApiKey | None = None,
) -> StoredFile:
    """Store ``source`` (``size`` bytes, read from its start) for ``tenant`` (module docstring)."""
    content_type = detect_type(head)
    allowed = allowed_types(tenant)
    if not type_allowed(content_type, allowed):
        raise UnsupportedFileType(details={"detected": content_type, "allowed": sorted(allowed)})
    storage_name = settings.FILES_STORAGE
    backend = backend_named(storage_name)
    now = timezone.now()
    with quota_reserve(tenant, MAX_FILE_BYTES, size), quota_reserve(tenant, STORAGE_BYTES, size):
        key = guarded(backend.save, file_key(tenant.pk, name, now), File(source, name=name))
        try:
            with tenant_scope(tenant), transaction.atomic():
                return StoredFile.objects.create(
                    key=key,
                    original_name=name[:255],
                    size=size,
                    content_type=content_type,
                    sha256=sha256,
                    storage=storage_name,
                    uploaded_by=uploaded_by if getattr(uploaded_by, "pk", None) else None,
                    uploaded_by_key=uploaded_by_key,
                )
        except BaseException:
            try:
                guarded(backend.delete, key)
            except Exception:  # the row's error matters more; the orphan report lists the object
                logger.exception("The object %s of a failed upload could not be deleted", key)
            raise


def allowed_types(tenant: Tenant) -> list[str]:
    """The types ``tenant``'s plan may upload (one query): its ``FilePolicy``, or the default."""
    policy = FilePolicy.objects.filter(plan_id=tenant.plan_id).values_list("allowed_types").first()
    return list(policy[0]) if policy is not None else list(settings.FILES_ALLOWED_TYPES)


@transaction.atomic
def file_delete(*, stored: StoredFile) -> StoredFile:
    """Soft-delete: the file is no longer listed, read or linked at once; its bytes (and the
    usage they count) are purged by a ``storage.purge_file`` job after ``FILES_PURGE_AFTER_HOURS``.
    Deleting again changes nothing."""
    with tenant_scope(stored.tenant):
        locked = StoredFile.objects.select_for_update().get(pk=stored.pk)
        if locked.deleted_at is not None:
            return locked
        locked.deleted_at = timezone.now()
        locked.save(update_fields=["deleted_at"])
        job_enqueue(
            tenant=stored.tenant,
            kind=PURGE_KIND,
            payload={"file": locked.pk},
            run_at=locked.deleted_at + timedelta(hours=settings.FILES_PURGE_AFTER_HOURS),
        )
    return locked


def file_purge(*, stored: StoredFile) -> None:
    """Delete a soft-deleted file's bytes, give back its usage, drop its row. Safe to repeat."""
    if stored.deleted_at is None:
        return
    guarded(backend_named(stored.storage).delete, stored.key)
    quota_release(stored.tenant, STORAGE_BYTES, stored.size)
    stored.delete()
