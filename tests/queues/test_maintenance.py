"""Beat maintenance of the job table: pruning past the retention, the jobs-per-day reconciliation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from queues import maintenance, services
from queues.models import Job
from tenants.limits.quotas import quota_reserve, quota_usage
from tenants.limits.registry import JOBS_PER_DAY
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

LATER = timezone.now() + timedelta(days=1)


def _job(tenant, status: str, finished_days_ago: float | None) -> Job:
    job = services.job_enqueue(tenant=tenant, kind="diagnostics.echo", run_at=LATER).job
    finished = (
        None if finished_days_ago is None else timezone.now() - timedelta(days=finished_days_ago)
    )
    Job.all_tenants.filter(pk=job.pk).update(status=status, finished_at=finished)
    return job


def test_only_old_succeeded_and_cancelled_jobs_are_pruned(settings):
    settings.JOB_RETENTION_DAYS = 30
    tenant = TenantFactory()
    old_done = _job(tenant, "succeeded", 31)
    old_cancelled = _job(tenant, "cancelled", 40)
    recent = _job(tenant, "succeeded", 29)
    dead = _job(tenant, "dead", 90)
    failed = _job(tenant, "failed", 90)
    waiting = _job(tenant, "scheduled", None)

    assert maintenance.prune_finished(batch=1) == 2

    left = set(Job.all_tenants.values_list("pk", flat=True))
    assert left == {recent.pk, dead.pk, failed.pk, waiting.pk}
    assert old_done.pk not in left and old_cancelled.pk not in left


def test_the_daily_counter_is_brought_to_the_jobs_made_today():
    tenant, untouched = TenantFactory(), TenantFactory()
    for _ in range(3):
        services.job_enqueue(tenant=tenant, kind="diagnostics.echo", run_at=LATER)
    with quota_reserve(tenant, JOBS_PER_DAY, 2):  # counted, never made (a killed process)
        pass
    assert quota_usage(tenant, JOBS_PER_DAY) == 5

    assert maintenance.reconcile_jobs_per_day() == {tenant.pk: 2}

    assert quota_usage(tenant, JOBS_PER_DAY) == 3
    assert quota_usage(untouched, JOBS_PER_DAY) == 0
    assert maintenance.reconcile_jobs_per_day() == {}
