"""Beat maintenance of the job table: pruning and the jobs-per-day reconciliation (global jobs)."""

from __future__ import annotations

from datetime import UTC, timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from queues.models import Job
from tenants.limits.quotas import quota_reconcile
from tenants.limits.registry import JOBS_PER_DAY
from tenants.models import Tenant

#: Succeeded and cancelled jobs are deleted after the retention; failed and dead ones are kept
#: until staff retry or discard them (they are the dead letters).
PRUNED = (Job.Status.SUCCEEDED, Job.Status.CANCELLED)


def prune_finished(*, now=None, batch: int = 1000, max_batches: int = 100) -> int:
    """Delete succeeded and cancelled jobs finished more than ``JOB_RETENTION_DAYS`` ago, in
    batches by primary key (short transactions, no long lock); returns how many went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.JOB_RETENTION_DAYS)
    old = Job.all_tenants.filter(status__in=PRUNED, finished_at__lt=cutoff)
    deleted = 0
    for _ in range(max_batches):
        ids = list(old.values_list("pk", flat=True)[:batch])
        if not ids:
            break
        deleted += Job.all_tenants.filter(pk__in=ids).delete()[0]
    return deleted


def reconcile_jobs_per_day(*, now=None) -> dict[int, int]:
    """Set each tenant's ``jobs_per_day`` counter of today to its job rows made today (the truth);
    returns the drift per tenant that had one. Jobs pruned today were made on an earlier day."""
    now = now or timezone.now()
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    made = dict(
        Job.all_tenants.filter(created_at__gte=start)
        .values("tenant_id")
        .annotate(count=Count("id"))
        .values_list("tenant_id", "count")
    )
    drifts = {}
    for tenant in Tenant.objects.select_related("plan").filter(pk__in=made):
        if drift := quota_reconcile(tenant, JOBS_PER_DAY, made[tenant.pk], now=now):
            drifts[tenant.pk] = drift
    return drifts
