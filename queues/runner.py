"""Running one job: claim its row, run its handler in its tenant's scope, record the outcome.

Invariants are ``queues.models``'s: nothing runs without a claim (one conditional UPDATE), the
lease is renewed while the handler runs, and the outcome is written only by the claim's holder
(``worker`` and ``status=running`` in every WHERE), so a worker that lost its lease cannot
overwrite what the job's rescuer did. The handler and the success mark share one transaction:
the handler's own database writes commit exactly when the job is marked succeeded, or not at all.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import traceback
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.core.cache import caches
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError

from queues.dispatcher import dispatch_tenant
from queues.exceptions import UnknownJobKind
from queues.kinds import JobContext, JobKind, get_kind
from queues.models import Job
from queues.publisher import broker_configured
from queues.signals import job_finished, job_started
from tenants.context import tenant_scope

logger = logging.getLogger(__name__)

#: Enough of an error to act on; the full traceback is in the worker's log.
MAX_ERROR_CHARS = 4000


def _lease() -> timedelta:
    return timedelta(seconds=settings.JOB_LEASE_SECONDS)


def claim(job_id: int, worker: str) -> bool:
    """Take the job if it is waiting and due: ONE conditional UPDATE, so at most one claimant."""
    now = timezone.now()
    return bool(
        Job.all_tenants.filter(pk=job_id, status__in=Job.WAITING, run_at__lte=now).update(
            status=Job.Status.RUNNING,
            worker=worker,
            lease_until=now + _lease(),
            attempts=F("attempts") + 1,
            started_at=now,
        )
    )


def _held(job_id: int, worker: str):
    return Job.all_tenants.filter(pk=job_id, status=Job.Status.RUNNING, worker=worker)


@contextmanager
def _lease_renewed(job_id: int, worker: str):
    """Renew the lease every third of its length while the block runs (own thread, own
    connection)."""
    stop = threading.Event()

    def renew() -> None:
        try:
            while not stop.wait(settings.JOB_LEASE_SECONDS / 3):
                _held(job_id, worker).update(lease_until=timezone.now() + _lease())
        finally:
            connection.close()

    thread = threading.Thread(target=renew, name=f"lease-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _error_text(error: BaseException) -> str:
    return "".join(traceback.format_exception_only(error)).strip()[:MAX_ERROR_CHARS]


def _record_failure(job: Job, kind: JobKind, worker: str, error: BaseException) -> str:
    now = timezone.now()
    if kind.retry.retries(error) and job.attempts < job.max_attempts:
        status, run_at = (
            Job.Status.SCHEDULED,
            now + timedelta(seconds=kind.retry.delay(job.attempts)),
        )
    else:
        status = Job.Status.DEAD if kind.retry.retries(error) else Job.Status.FAILED
        run_at = job.run_at
    written = _held(job.pk, worker).update(
        status=status,
        run_at=run_at,
        last_error=_error_text(error),
        lease_until=None,
        published_at=None,
        finished_at=None if status == Job.Status.SCHEDULED else now,
    )
    return status if written else "lost"


def current_second() -> int:
    """The second a kind's rate counts in (the wall clock: every worker's must agree)."""
    return int(time.time())


def _over_kind_rate(kind: JobKind) -> bool:
    """Whether this run would pass the kind's ``rate_per_second``, counted across every worker in
    the rate-limit counter store (the ``ratelimit`` cache: one add and one INCR per run of a
    limited kind, on a key of the current second). A store that is down lets the run through
    (logged): the limit protects a downstream service, not the job table."""
    if kind.rate_per_second is None:
        return False
    counters = caches[settings.RATELIMIT_USE_CACHE]
    key = f"jobs:rate:{kind.name}:{current_second()}"
    try:
        counters.add(key, 0, timeout=5)
        return counters.incr(key) > kind.rate_per_second
    except (RedisError, ValueError) as error:
        logger.warning("Rate of job kind %s not counted (%s): the run goes ahead", kind.name, error)
        return False


def _give_back(job_id: int, worker: str) -> str:
    """Undo the claim of a run the kind's rate refused: the job waits for a later second (plus
    jitter, so the refused runs do not all come back at once), its attempt not counted."""
    run_at = timezone.now() + timedelta(seconds=1 + random.random())
    _held(job_id, worker).update(
        status=Job.Status.SCHEDULED,
        run_at=run_at,
        attempts=F("attempts") - 1,
        worker="",
        lease_until=None,
        started_at=None,
        published_at=None,
    )
    return "throttled"


class LeaseLost(RuntimeError):
    """The claim passed to another run while this one ran: roll this run's writes back."""


def run_job(job_id: int, *, worker: str) -> str:
    """Run the job if this call can claim it; returns the outcome (a status, or ``skipped``).

    With a broker, a job that ends (one way or another) frees a slot of its tenant's share, which
    is filled at once (``dispatcher.dispatch_tenant``) rather than at the next dispatcher round.
    """
    if not claim(job_id, worker):
        return "skipped"  # running elsewhere, finished, cancelled, not due, or no such row
    job = Job.all_tenants.select_related("tenant").get(pk=job_id)
    outcome = _run(job, worker)
    if broker_configured():
        dispatch_tenant(job.tenant_id)
    return outcome


def _run(job: Job, worker: str) -> str:
    """Run a job this worker has claimed; returns its outcome."""
    job_id = job.pk
    try:
        kind = get_kind(job.kind)
    except UnknownJobKind as error:  # a kind removed from the code since the job was made
        _held(job_id, worker).update(
            status=Job.Status.FAILED, last_error=_error_text(error), finished_at=timezone.now()
        )
        return Job.Status.FAILED
    if _over_kind_rate(kind):
        return _give_back(job_id, worker)
    context = JobContext(job_id=job.pk, attempt=job.attempts, tenant_id=job.tenant_id)
    signal_args = {"kind": job.kind, "job_id": job.pk, "tenant_id": job.tenant_id}
    with _lease_renewed(job_id, worker), tenant_scope(job.tenant):
        # Due since run_at (its enqueue, or the retry's time), claimed at started_at.
        waited = max(0.0, (job.started_at - job.run_at).total_seconds())
        job_started.send(sender=Job, queue=job.queue, waited_seconds=waited, **signal_args)
        outcome = Job.Status.FAILED  # what an exception escaping _handled (none should) means
        try:
            outcome = _handled(job, kind, worker, context)
        finally:
            job_finished.send(sender=Job, queue=job.queue, outcome=outcome, **signal_args)
    return outcome


def _handled(job: Job, kind: JobKind, worker: str, context: JobContext) -> str:
    """The handler and the success mark in one transaction; the failure recorded otherwise."""
    try:
        with transaction.atomic():
            result = kind.handler(job.payload, context)
            done = _held(job.pk, worker).update(
                status=Job.Status.SUCCEEDED,
                result=result,
                lease_until=None,
                finished_at=timezone.now(),
                last_error="",
            )
            if not done:  # the lease was lost and the job rescued: its run is the one
                raise LeaseLost(job.pk)
    except LeaseLost:
        logger.warning("Job %s lost its lease while running; its result is dropped", job.pk)
        return "lost"
    except Exception as error:
        logger.warning(
            "Job %s (%s) attempt %s failed", job.pk, job.kind, job.attempts, exc_info=True
        )
        return _record_failure(job, kind, worker, error)
    return Job.Status.SUCCEEDED
