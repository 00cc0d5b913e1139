"""Writes of the queues app: making a job. Keyword-only, typed.

``job_enqueue`` writes the row in the caller's transaction (so a job exists exactly when the work
that asked for it committed) and, after the commit, fills the tenant's free slots
(``dispatcher.dispatch_tenant``): the new job is published now if the tenant's share of the
workers allows, else it waits its turn in the table. It counts against the tenant's
``jobs_per_day`` quota (``tenants.limits``), released again if the row cannot be written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from queues.dispatcher import dispatch_tenant
from queues.exceptions import (
    IdempotencyConflict,
    InvalidJobPayload,
    JobNotCancellable,
    JobNotRetryable,
)
from queues.kinds import get_kind
from queues.models import Job
from tenants.context import tenant_scope
from tenants.limits.quotas import quota_reserve
from tenants.limits.registry import JOBS_PER_DAY
from tenants.models import Tenant


@dataclass(frozen=True)
class Enqueued:
    job: Job
    #: False when an idempotency key named a job made before: that one is returned.
    created: bool


def _existing(key: str, kind: str, payload: dict) -> Job | None:
    job = Job.objects.filter(idempotency_key=key).first()
    if job is not None and (job.kind != kind or job.payload != payload):
        raise IdempotencyConflict(details={"job": job.pk})
    return job


def job_enqueue(
    *,
    tenant: Tenant,
    kind: str,
    payload: dict | None = None,
    run_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> Enqueued:
    """Make a job of ``kind`` for ``tenant`` (see the module docstring).

    The payload is checked by the kind's serializer (400 with field details). With an
    ``idempotency_key`` the tenant's job made with that key is returned instead of a second one
    (409 when its kind or payload differ); the unique constraint settles a race between processes.
    """
    job_kind = get_kind(kind)
    clean = _clean(kind, payload)
    delayed = run_at is not None and run_at > timezone.now()
    with tenant_scope(tenant), transaction.atomic():
        if idempotency_key and (found := _existing(idempotency_key, kind, clean)):
            return Enqueued(job=found, created=False)
        try:
            with quota_reserve(tenant, JOBS_PER_DAY, 1), transaction.atomic():
                job = Job.objects.create(
                    kind=kind,
                    payload=clean,
                    queue=job_kind.queue,
                    max_attempts=job_kind.retry.max_attempts,
                    status=Job.Status.SCHEDULED if delayed else Job.Status.QUEUED,
                    idempotency_key=idempotency_key or "",
                    **({"run_at": run_at} if run_at else {}),
                )
        except IntegrityError:
            found = _existing(idempotency_key, kind, clean) if idempotency_key else None
            if found is None:
                raise
            return Enqueued(job=found, created=False)
        if not delayed:  # a delayed job is published by the dispatcher when it comes due
            transaction.on_commit(lambda: dispatch_tenant(tenant.pk), robust=True)
    return Enqueued(job=job, created=True)


RETRYABLE = (Job.Status.FAILED, Job.Status.DEAD, Job.Status.CANCELLED)


def _clean(kind: str, payload: dict | None) -> dict:
    try:
        return get_kind(kind).clean_payload(payload)
    except ValidationError as error:
        raise InvalidJobPayload(details={"payload": error.detail}) from None


@transaction.atomic
def job_retry(*, job: Job, payload: dict | None = None) -> Job:
    """Run a failed, dead or cancelled job again from its first attempt, with ``payload`` in place
    of its own when given (edit and retry). The row is locked, so two retries make one run."""
    with tenant_scope(job.tenant):
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status not in RETRYABLE:
            raise JobNotRetryable(details={"status": locked.status})
        if payload is not None:
            locked.payload = _clean(locked.kind, payload)
        locked.status, locked.run_at = Job.Status.QUEUED, timezone.now()
        locked.attempts = locked.rescues = 0
        locked.last_error, locked.worker = "", ""
        locked.lease_until = locked.finished_at = locked.published_at = None
        locked.save()
    transaction.on_commit(lambda: dispatch_tenant(locked.tenant_id), robust=True)
    return locked


@transaction.atomic
def job_cancel(*, job: Job) -> Job:
    """Cancel a job that has not started (queued or scheduled). A running job cannot be stopped
    from here: its claim stands, and a message for a cancelled job claims nothing."""
    with tenant_scope(job.tenant):
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status not in Job.WAITING:
            raise JobNotCancellable(details={"status": locked.status})
        locked.status, locked.finished_at = Job.Status.CANCELLED, timezone.now()
        locked.save(update_fields=["status", "finished_at"])
    return locked


@transaction.atomic
def job_discard(*, job: Job) -> None:
    """Delete a failed or dead job (a dead letter staff decided not to retry)."""
    with tenant_scope(job.tenant):
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status not in (Job.Status.FAILED, Job.Status.DEAD):
            raise JobNotRetryable(
                "Only a failed or dead job can be discarded.", details={"status": locked.status}
            )
        locked.delete()
