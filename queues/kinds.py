"""The registry of job kinds: what a kind runs, on which queue, with which payload and retries.

A kind is registered in code with ``@job_kind(...)`` on its handler, ``handler(payload, context)``.
Its payload serializer (DRF) checks what ``job_enqueue`` is given, so a job row never holds a
payload its handler cannot take.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from rest_framework import serializers

from queues.exceptions import UnknownJobKind


@dataclass(frozen=True)
class RetryPolicy:
    """How a kind retries: ``max_attempts`` runs in all, waiting an exponential backoff with
    jitter between them, for the errors in ``retry_on`` (any other error fails the job at once)."""

    max_attempts: int = 5
    backoff_seconds: float = 10.0
    backoff_max_seconds: float = 3600.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def delay(self, attempt: int) -> float:
        """Seconds before the run after ``attempt`` (1-based): half the exponential step fixed, half
        random ("equal jitter"), so retries spread out but never come at once."""
        step = min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        return step / 2 + random.uniform(0, step / 2)

    def retries(self, error: BaseException) -> bool:
        return isinstance(error, self.retry_on)


@dataclass(frozen=True)
class JobContext:
    """What a handler knows of the run: the job, which attempt this is, the tenant it runs for."""

    job_id: int
    attempt: int
    tenant_id: int


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: Callable[[dict, JobContext], Any]
    queue: str = "default"
    payload: type[serializers.Serializer] | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Creatable through ``POST /api/v1/jobs/`` (else only from code).
    public: bool = True
    #: At most this many runs start per second across every worker (``None``: no limit).
    rate_per_second: int | None = None

    def clean_payload(self, payload: dict | None) -> dict:
        """The payload as the handler will get it; raises DRF's ``ValidationError``."""
        if self.payload is None:
            return dict(payload or {})
        serializer = self.payload(data=payload or {})
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


_KINDS: dict[str, JobKind] = {}


def job_kind(
    name: str,
    *,
    queue: str = "default",
    payload: type[serializers.Serializer] | None = None,
    retry: RetryPolicy | None = None,
    public: bool = True,
    rate_per_second: int | None = None,
) -> Callable:
    """Register the decorated function as the handler of kind ``name``."""
    if queue not in settings.JOB_QUEUES:
        raise ValueError(f"Job kind {name!r}: queue {queue!r} is not in JOB_QUEUES.")

    def register(handler: Callable) -> Callable:
        if name in _KINDS and _KINDS[name].handler is not handler:
            raise ValueError(f"Job kind {name!r} is registered twice.")
        _KINDS[name] = JobKind(
            name, handler, queue, payload, retry or RetryPolicy(), public, rate_per_second
        )
        return handler

    return register


def get_kind(name: str) -> JobKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownJobKind(details={"kind": [f"Unknown kind {name!r}."]}) from None


def registered_kinds() -> list[JobKind]:
    return sorted(_KINDS.values(), key=lambda kind: kind.name)
