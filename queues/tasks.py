"""Celery tasks. Thin: each calls the runner or the dispatcher."""

from __future__ import annotations

import os

from celery import shared_task

from queues import dispatcher, maintenance, runner


@shared_task(name="queues.run_job", bind=True, acks_late=True, ignore_result=True)
def run_job_task(self, job_id: int) -> str:
    """Run job ``job_id`` if it can be claimed. A duplicate message finds it claimed: a no-op."""
    return runner.run_job(job_id, worker=f"{self.request.hostname or 'worker'}:{os.getpid()}")


@shared_task(name="queues.dispatch", ignore_result=True)
def dispatch_task() -> dict[str, int]:
    """Global (no tenant): rescue expired leases, publish due jobs."""
    return dispatcher.dispatch()


@shared_task(name="queues.prune_jobs", ignore_result=True)
def prune_jobs_task() -> int:
    """Global: delete finished jobs past their retention."""
    return maintenance.prune_finished()


@shared_task(name="queues.reconcile_jobs_per_day", ignore_result=True)
def reconcile_jobs_per_day_task() -> dict[int, int]:
    """Global: bring every tenant's jobs-per-day counter to its job rows."""
    return maintenance.reconcile_jobs_per_day()
