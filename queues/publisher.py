"""Publishing a job: a wake-up message to its queue, or (embedded mode) a run in this process.

A publish is only ever a hint that a row is ready: the row is the truth, a lost or duplicated
message is harmless (the dispatcher republishes rows nobody claimed; a second message claims
nothing). So a failure here is logged and swallowed, never raised to the caller whose job is safe
in the table. The ``broker`` circuit breaker (``degradation``) stops a down broker from costing every
request a connection timeout: while it is open, jobs are not published, only written.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import KombuError, OperationalError

from degradation.breakers import CircuitOpen, breaker
from queues.models import Job

logger = logging.getLogger(__name__)

#: What a broker that is down raises through Celery's publish (kombu's errors, sockets).
BROKER_ERRORS = (KombuError, OperationalError, ConnectionError, OSError, TimeoutError)


def broker_configured() -> bool:
    """Full mode: a broker carries jobs to workers. Embedded mode: jobs run in this process."""
    return bool(settings.CELERY_BROKER_URL)


def publish(job_ids: list[int]) -> int:
    """Send a wake-up for each job (or run it here, in embedded mode); returns how many went."""
    if not broker_configured():
        from queues.runner import run_job

        for job_id in job_ids:
            run_job(job_id, worker="inline")
        return len(job_ids)
    from queues.tasks import run_job_task

    with transaction.atomic():  # mark first: a dispatcher running meanwhile skips them
        targets = {
            pk: (queue, tenant_id)
            for pk, queue, tenant_id in Job.all_tenants.select_for_update(skip_locked=True)
            .filter(unpublished(timezone.now()), pk__in=job_ids)
            .values_list("pk", "queue", "tenant_id")
        }
        Job.all_tenants.filter(pk__in=targets).update(published_at=timezone.now())
    order = [job_id for job_id in job_ids if job_id in targets]  # in the order given
    sent = 0
    for job_id in order:
        try:
            with breaker("broker").calling():
                queue, tenant_id = targets[job_id]
                run_job_task.apply_async(
                    args=[job_id], queue=queue, headers={"tenant_id": tenant_id}, retry=False
                )
        except CircuitOpen:
            logger.info("Broker breaker open: job %s and the rest wait in the table", job_id)
            break
        except BROKER_ERRORS as error:
            logger.warning("Job %s not published (it waits in the table): %s", job_id, error)
            break  # the broker is down: the rest would fail the same way, after a timeout each
        sent += 1
    if unsent := order[sent:]:  # not sent after all: unmark, so the dispatcher sends them
        Job.all_tenants.filter(pk__in=unsent, status__in=Job.WAITING).update(published_at=None)
    return sent


def published_recently_since(now):
    """A job published after this moment and still unclaimed is in flight; one published before
    it lost its message and is sent again (``JOB_REPUBLISH_SECONDS``)."""
    return now - timedelta(seconds=settings.JOB_REPUBLISH_SECONDS)


def unpublished(now) -> Q:
    """Jobs a publish may send: waiting and due, and not published recently (or never)."""
    return Q(status__in=Job.WAITING, run_at__lte=now) & (
        Q(published_at__isnull=True) | Q(published_at__lt=published_recently_since(now))
    )
