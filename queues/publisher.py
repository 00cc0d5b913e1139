"""Publishing a job: a wake-up message to its queue, or (embedded mode) a run in this process.

A publish is only ever a hint that a row is ready: the row is the truth, a lost or duplicated
message is harmless (the dispatcher republishes rows nobody claimed; a second message claims
nothing). So a failure here is logged and swallowed, never raised to the caller whose job is safe
in the table. The ``broker`` circuit breaker (``degradation``) stops a down broker from costing every
request a connection timeout: while it is open, jobs are not published, only written.
"""

from __future__ import annotations

import logging

from django.conf import settings
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

    found = Job.all_tenants.filter(pk__in=job_ids, status__in=Job.WAITING).values_list(
        "pk", "queue", "tenant_id"
    )
    by_id = {job_id: (queue, tenant_id) for job_id, queue, tenant_id in found}
    sent = []
    for job_id in (job_id for job_id in job_ids if job_id in by_id):  # in the order given
        queue, tenant_id = by_id[job_id]
        try:
            with breaker("broker").calling():
                run_job_task.apply_async(
                    args=[job_id], queue=queue, headers={"tenant_id": tenant_id}, retry=False
                )
        except CircuitOpen:
            logger.info("Broker breaker open: job %s and the rest wait in the table", job_id)
            break
        except BROKER_ERRORS as error:
            logger.warning("Job %s not published (it waits in the table): %s", job_id, error)
            break  # the broker is down: the rest would fail the same way, after a timeout each
        sent.append(job_id)
    if sent:
        Job.all_tenants.filter(pk__in=sent).update(published_at=timezone.now())
    return len(sent)
