"""Beat maintenance of files (global jobs, on the cleanup queue; ``storage.tasks``).

* ``purge_overdue``: soft-deleted files whose retention (``FILES_PURGE_AFTER_HOURS``) ended more
  than an hour ago are purged here, in case their ``storage.purge_file`` job was lost or is dead.
* ``report_orphans``: per storage, objects under ``tenants/`` without a row and rows naming the
  storage without an object, as an ``OrphanReport`` (never deleted automatically). Objects younger
  than ``ORPHAN_GRACE`` are skipped: an upload stores its object just before its row commits.
* ``reconcile_storage_usage``: each tenant's ``storage_bytes`` counter is set to the sum of its
  rows' sizes (soft-deleted ones count until purged), the drift logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage
from django.db import connection
from django.db.models import Sum
from django.db.models.functions import Collate
from django.utils import timezone

from storage.backends import backend_named
from storage.keys import TENANTS_PREFIX
from storage.models import OrphanReport, StoredFile
from storage.services import file_purge
from storage.transfer import file_storages
from tenants.context import tenant_scope
from tenants.limits.quotas import quota_reconcile, tenants_counting
from tenants.limits.registry import STORAGE_BYTES
from tenants.models import Tenant

logger = logging.getLogger(__name__)
ORPHAN_GRACE = timedelta(hours=1)
SAMPLES = 100


def purge_overdue(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Purge up to ``limit`` soft-deleted files an hour past their retention; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.FILES_PURGE_AFTER_HOURS + 1)
    overdue = StoredFile.all_tenants.filter(deleted_at__lt=cutoff).select_related("tenant")
    purged = 0
    for stored in overdue.order_by("pk")[:limit]:
        with tenant_scope(stored.tenant):
            file_purge(stored=stored)
        purged += 1
    return purged


def _object_keys(backend: Storage, prefix: str, older_than: datetime) -> Iterator[str]:
    """Every key under ``prefix`` modified before ``older_than``, in byte order."""
    if isinstance(backend, FileSystemStorage):
        root = backend.path(prefix)
        for folder, subfolders, names in os.walk(root):
            subfolders.sort()
            for name in names:
                path = os.path.join(folder, name)
                if (
                    datetime.fromtimestamp(os.path.getmtime(path), tz=older_than.tzinfo)
                    < older_than
                ):
                    yield os.path.relpath(path, backend.location).replace(os.sep, "/")
        return
    # S3Storage: its ``bucket`` (boto3's Bucket resource, a documented attribute) lists flat, in
    # key order, a page of 1,000 per call; ``listdir`` would cost a call per folder.
    for summary in backend.bucket.objects.filter(Prefix=prefix):
        if summary.last_modified < older_than:
            yield summary.key


def _row_keys(storage: str) -> Iterator[str]:
    rows = StoredFile.all_tenants.filter(storage=storage)
    ordering = Collate("key", "C") if connection.vendor == "postgresql" else "key"
    yield from rows.order_by(ordering).values_list("key", flat=True).iterator(chunk_size=5000)


def report_orphans(storage: str, *, now: datetime | None = None) -> OrphanReport:
    """Compare the objects of ``storage`` under ``tenants/`` with its rows (a merge of two sorted
    streams: memory stays flat whatever the number of files) and record what does not match."""
    now = now or timezone.now()
    report = OrphanReport.objects.create(storage=storage)
    samples: dict[str, list[str]] = {"objects_without_row": [], "rows_without_object": []}
    try:
        backend = backend_named(storage)
        objects = _object_keys(backend, TENANTS_PREFIX, now - ORPHAN_GRACE)
        rows = _row_keys(storage)
        obj, row = next(objects, None), next(rows, None)
        while obj is not None or row is not None:
            if row is None or (obj is not None and obj.encode() < row.encode()):
                report.objects_scanned += 1
                report.objects_without_row += 1
                _sample(samples["objects_without_row"], obj)
                obj = next(objects, None)
            elif obj is None or row.encode() < obj.encode():
                report.rows_scanned += 1
                if not backend.exists(row):  # younger than the grace, or really missing
                    report.rows_without_object += 1
                    _sample(samples["rows_without_object"], row)
                row = next(rows, None)
            else:
                report.objects_scanned += 1
                report.rows_scanned += 1
                obj, row = next(objects, None), next(rows, None)
    except Exception as error:
        logger.exception("Orphan report of %s failed", storage)
        report.error = f"{type(error).__name__}: {error}"
    report.samples = samples
    report.finished_at = timezone.now()
    report.save()
    if report.objects_without_row or report.rows_without_object:
        logger.warning(
            "storage orphans",
            extra={
                "storage": storage,
                "objects_without_row": report.objects_without_row,
                "rows_without_object": report.rows_without_object,
            },
        )
    return report


def _sample(into: list[str], key: str) -> None:
    if len(into) < SAMPLES:
        into.append(key)


def report_all_orphans() -> list[OrphanReport]:
    return [report_orphans(name) for name in file_storages()]


def reconcile_storage_usage(*, now: datetime | None = None) -> dict[int, int]:
    """Set each tenant's ``storage_bytes`` to the bytes its rows hold; returns the drifts. One
    GROUP BY for the truth, then a short transaction per tenant that has rows or a counter."""
    truth = dict(
        StoredFile.all_tenants.values("tenant_id")
        .annotate(total=Sum("size"))
        .values_list("tenant_id", "total")
    )
    ids = set(truth) | tenants_counting(STORAGE_BYTES, now=now)
    drifts = {}
    for tenant in Tenant.objects.select_related("plan").filter(pk__in=ids).iterator():
        if drift := quota_reconcile(tenant, STORAGE_BYTES, truth.get(tenant.pk, 0), now=now):
            drifts[tenant.pk] = drift
    return drifts
