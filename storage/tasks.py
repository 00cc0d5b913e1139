"""Beat tasks of the storage app: global maintenance (``storage.maintenance``), cleanup queue."""

from __future__ import annotations

from celery import shared_task

from storage import maintenance


@shared_task(name="storage.purge_overdue", ignore_result=True)
def purge_overdue_task() -> int:
    """Global: purge soft-deleted files whose purge job did not run."""
    return maintenance.purge_overdue()


@shared_task(name="storage.report_orphans", ignore_result=True)
def report_orphans_task() -> list[int]:
    """Global: an orphan report per configured file storage."""
    return [report.pk for report in maintenance.report_all_orphans()]


@shared_task(name="storage.reconcile_usage", ignore_result=True)
def reconcile_usage_task() -> dict[int, int]:
    """Global: each tenant's storage_bytes counter set to its rows' bytes."""
    return maintenance.reconcile_storage_usage()
