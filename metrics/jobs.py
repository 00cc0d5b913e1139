"""Jobs, observed through ``queues``' signals: each is a unit of the query monitor (labelled
``job:<kind>``), counts in its tenant's usage (``metrics.usage``) and in the worker's Prometheus
metrics (``ils_jobs_total`` by outcome, ``ils_job_queue_seconds``, ``ils_job_duration_seconds``:
``metrics.instruments``; a worker exports them with ``WORKER_METRICS_PORT``, ``metrics.worker``)."""

from __future__ import annotations

import contextvars
import time
from contextlib import ExitStack

from django.conf import settings
from django.dispatch import receiver

from metrics import instruments, usage
from metrics.queries.monitor import monitored
from queues.signals import job_finished, job_started

_open: contextvars.ContextVar[tuple[ExitStack, float] | None] = contextvars.ContextVar(
    "job_unit", default=None
)


@receiver(job_started)
def _start(sender, *, kind: str, tenant_id: int, queue: str, waited_seconds: float, **kwargs):
    stack = ExitStack()
    stack.enter_context(monitored(f"job:{kind}"))
    _open.set((stack, time.perf_counter()))
    if settings.METRICS_ENABLED:
        instruments.job_wait.labels(queue).observe(waited_seconds)
    if settings.TENANT_METRICS_ENABLED:
        usage.record_job(tenant_id)


@receiver(job_finished)
def _finish(sender, *, kind: str, queue: str, outcome: str, **kwargs) -> None:
    opened = _open.get()
    if opened is None:
        return
    _open.set(None)
    stack, started = opened
    if settings.METRICS_ENABLED:
        instruments.job_duration.labels(queue, kind).observe(time.perf_counter() - started)
        instruments.jobs.labels(queue, kind, outcome).inc()
    stack.close()
