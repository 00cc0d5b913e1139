"""Writes of the queues app: making a job. Keyword-only, typed.

``job_enqueue`` writes the row in the caller's transaction (so a job exists exactly when the work
that asked for it committed) and, after the commit, fills the tenant's free slots
(``dispatcher.dispatch_tenant``): the new job is published now if the tenant's share of the
workers allows, else it waits its turn in the table. It counts against the tenant's
``jobs_per_day`` quota (``tenants.limits``), released again if the row cannot be written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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


#: Unique keys become idempotency keys with this prefix (and their window), so the two never meet.
UNIQUE_PREFIX = "unique:"


def _existing(key: str, kind: str, payload: dict, *, same_payload: bool) -> Job | None:
    job = Job.objects.filter(idempotency_key=key).first()
    if job is not None and (job.kind != kind or (same_payload and job.payload != payload)):
        raise IdempotencyConflict(details={"job": job.pk})
    return job


def _unique_as_idempotency_key(unique_key: str, window: timedelta) -> str:
    """The key of ``unique_key``'s current window: windows of ``window`` aligned on the epoch."""
    seconds = int(window.total_seconds())
    if seconds < 1:
        raise ValueError("unique_for must be at least one second.")
    return f"{UNIQUE_PREFIX}{unique_key}:{int(timezone.now().timestamp()) // seconds}"


def job_enqueue(
    *,
    tenant: Tenant,
    kind: str,
    payload: dict | None = None,
    run_at: datetime | None = None,
    idempotency_key: str | None = None,
    unique_key: str | None = None,
    unique_for: timedelta | None = None,
) -> Enqueued:
    """Make a job of ``kind`` for ``tenant`` (see the module docstring).

    The payload is checked by the kind's serializer (400 with field details). With an
    ``idempotency_key`` (the API's header) the tenant's job made with that key is returned instead
    of a second one (409 when its kind or payload differ). With ``unique_key`` and ``unique_for``
    (code: "refresh this report at most once an hour") the job made with that key in the current
    window is returned whatever its payload (a different kind is a 409); windows are aligned on
    the epoch, so two calls just either side of a boundary make two jobs. Either way the unique
    constraint on ``(tenant, idempotency_key)`` settles a race between processes.
    """
    if unique_key is not None:
        if idempotency_key is not None or unique_for is None:
            raise ValueError("unique_key takes unique_for, and not an idempotency_key as well.")
        idempotency_key = _unique_as_idempotency_key(unique_key, unique_for)
    elif idempotency_key and idempotency_key.startswith(UNIQUE_PREFIX):
        raise InvalidJobPayload(details={"idempotency_key": [f"Must not start {UNIQUE_PREFIX!r}."]})
    same_payload = unique_key is None
    job_kind = get_kind(kind)
    clean = _clean(kind, payload)
    delayed = run_at is not None and run_at > timezone.now()
    with tenant_scope(tenant), transaction.atomic():
        if idempotency_key and (
            found := _existing(idempotency_key, kind, clean, same_payload=same_payload)
        ):
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
            found = None
            if idempotency_key:
                found = _existing(idempotency_key, kind, clean, same_payload=same_payload)
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
