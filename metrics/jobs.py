"""Jobs, observed through ``queues``' signals: each is a unit of the query monitor (labelled
``job:<kind>``) and counts in its tenant's usage (``metrics.usage``)."""

from __future__ import annotations

import contextvars
from contextlib import ExitStack

from django.conf import settings
from django.dispatch import receiver

from metrics import usage
from metrics.queries.monitor import monitored
from queues.signals import job_finished, job_started

_open: contextvars.ContextVar[ExitStack | None] = contextvars.ContextVar("job_unit", default=None)


@receiver(job_started)
def _start(sender, *, kind: str, tenant_id: int, **kwargs) -> None:
    stack = ExitStack()
    stack.enter_context(monitored(f"job:{kind}"))
    _open.set(stack)
    if settings.TENANT_METRICS_ENABLED:
        usage.record_job(tenant_id)


@receiver(job_finished)
def _finish(sender, **kwargs) -> None:
    stack = _open.get()
    if stack is not None:
        _open.set(None)
        stack.close()
