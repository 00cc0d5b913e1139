"""Job kinds for the tests. A real worker loads them too (``celery worker --include
tests.queues.kinds``), so the end-to-end tests run the same handlers as the in-process ones."""

from __future__ import annotations

import os
import signal
import threading

from django.db import connection

from queues.kinds import JobContext, RetryPolicy, job_kind
from queues.models import Job
from tenants import services
from tenants.context import current_tenant
from tenants.models import Invitation


def side_effect_email(job_id: int) -> str:
    return f"job-{job_id}@side-effect.example"


def side_effects(job_id: int) -> int:
    """How many times the job's handler committed its side effect (an invitation row)."""
    return Invitation.all_tenants.filter(email=side_effect_email(job_id)).count()


def _side_effect(context: JobContext) -> None:
    services.invitation_create(tenant=current_tenant(), email=side_effect_email(context.job_id))


@job_kind("tests.scope")
def scope(payload: dict, context: JobContext) -> dict:
    return {"tenant": current_tenant().pk, "attempt": context.attempt}


@job_kind("tests.side_effect", queue="email")
def side_effect(payload: dict, context: JobContext) -> dict:
    _side_effect(context)
    return {"done": True}


@job_kind("tests.write_then_fail", retry=RetryPolicy(max_attempts=2, backoff_seconds=0.01))
def write_then_fail(payload: dict, context: JobContext) -> None:
    _side_effect(context)
    raise RuntimeError("failed after writing")


@job_kind("tests.not_retried", retry=RetryPolicy(max_attempts=5, retry_on=(ConnectionError,)))
def not_retried(payload: dict, context: JobContext) -> None:
    raise ValueError("a bug, not a blip")


@job_kind("tests.steal_lease")
def steal_lease(payload: dict, context: JobContext) -> None:
    """Another run takes the claim while this one runs (as a rescuer and a second worker would):
    committed on its own connection, outside this run's transaction."""
    _side_effect(context)

    def steal() -> None:
        try:
            Job.all_tenants.filter(pk=context.job_id).update(worker="someone-else")
        finally:
            connection.close()

    thief = threading.Thread(target=steal)
    thief.start()
    thief.join()


@job_kind("tests.kill_worker_once")
def kill_worker_once(payload: dict, context: JobContext) -> dict:
    """Kills the process running it on its first run (as the OOM killer would); then succeeds."""
    if context.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    _side_effect(context)
    return {"attempt": context.attempt}


@job_kind("tests.kill_worker_always")
def kill_worker_always(payload: dict, context: JobContext) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@job_kind("tests.rate_limited", rate_per_second=2)
def rate_limited(payload: dict, context: JobContext) -> dict:
    return {"attempt": context.attempt}


@job_kind("tests.hidden", public=False)
def hidden(payload: dict, context: JobContext) -> None:
    """Made from code only: the jobs API does not offer it."""
