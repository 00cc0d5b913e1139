"""Named circuit breakers, their registry, event recording and counters.

A ``Breaker`` wraps a ``pybreaker.CircuitBreaker`` (which holds the thresholds, the ``exclude``
rules of what is not a dependency failure, the name and the storage). The call path and the
transitions are ours, deliberately, for three reasons: pybreaker runs the guarded call while holding
the breaker's lock (every thread of a process would queue behind one slow call); its state changes
are not atomic across processes (N processes reaching the threshold would each record a change);
and it has no forced-open state or actor for the audit trail. The states and their meaning are
pybreaker's: closed, open (calls fail fast with ``CircuitOpen``), half-open after ``reset_seconds``
(calls pass; the first result closes or re-opens it).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pybreaker
from django.conf import settings

from degradation.breakers.storage import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    MemoryStateStorage,
    SharedRedisStorage,
    Snapshot,
)
from degradation.exceptions import CircuitOpen, UnknownBreaker
from tenants.bookkeeping import bookkeeping_writes

logger = logging.getLogger(__name__)
T = TypeVar("T")

BREAKER_NAMES = ("redis", "storage", "email", "broker", "replica", "webhooks")
"""Every breaker the code knows. A name in settings or in ``requires_dependencies`` that is not
here is the system check error ``degradation.E001``."""

PROCESS_LOCAL = frozenset({"redis"})
"""The ``redis`` breaker guards the cache Redis, so its state cannot live there: it is per process."""

SYSTEM = "system"
_counters: dict[str, Counter] = {name: Counter() for name in BREAKER_NAMES}
_counters_lock = threading.Lock()


def _count(name: str, what: str) -> None:
    with _counters_lock:
        _counters.setdefault(name, Counter())[what] += 1


def breaker_counters() -> dict[str, dict[str, int]]:
    """This process's counters per breaker: ``failures``, ``rejected``, ``to_open``, ``to_closed``,
    ``to_half-open`` (only grow: Prometheus counters)."""
    with _counters_lock:
        return {name: dict(counter) for name, counter in _counters.items()}


def _record(name: str, old: str, new: str, reason: str, actor=None) -> None:
    """One INSERT of a ``BreakerEvent``; a failing database is logged, never raised to the caller."""
    _count(name, f"to_{new}")
    log = logger.warning if new == OPEN else logger.info
    log("Breaker %s: %s -> %s (%s, by %s)", name, old, new, reason, actor or SYSTEM)
    try:
        from django.db import transaction

        from degradation.models import BreakerEvent

        # A savepoint inside a caller's transaction (it stays usable); a bookkeeping write, so a
        # breaker that changes state during a request does not pin the tenant's reads.
        with bookkeeping_writes(), transaction.atomic():
            BreakerEvent.objects.create(
                breaker=name,
                from_state=old,
                to_state=new,
                reason=reason[:255],
                actor=actor if getattr(actor, "pk", None) else None,
            )
    except Exception:
        logger.exception("Breaker %s: could not record the %s -> %s event", name, old, new)


class Breaker:
    """One named breaker. Use ``call``, ``guard`` (decorator) or ``calling`` (context manager)."""

    def __init__(self, name: str, *, failures: int, reset_seconds: float, storage) -> None:
        self.name = name
        self.storage = storage
        self.pybreaker = pybreaker.CircuitBreaker(
            fail_max=failures, reset_timeout=reset_seconds, state_storage=storage, name=name
        )

    @property
    def failures(self) -> int:
        return self.pybreaker.fail_max

    @property
    def reset_seconds(self) -> float:
        return self.pybreaker.reset_timeout

    def configure(self, *, failures: int | None = None, reset_seconds: float | None = None) -> None:
        if failures is not None:
            self.pybreaker.fail_max = failures
        if reset_seconds is not None:
            self.pybreaker.reset_timeout = reset_seconds

    def snapshot(self) -> Snapshot:
        return self.storage.snapshot()

    def retry_after(self, snap: Snapshot) -> float:
        """Seconds until an open breaker half-opens (a forced one: one reset period from now)."""
        if snap.forced:
            return self.reset_seconds
        return max(0.0, snap.opened_at + self.reset_seconds - time.time())

    # -- the call path: before / success / failure --------------------------------------------
    def before_call(self) -> Snapshot:
        """Raise ``CircuitOpen`` while open; after the timeout, half-open and let the call through.

        Returns the state the call is made in (one read of the store: one HGETALL when shared)."""
        snap = self.storage.snapshot()
        if snap.state != OPEN:
            return snap
        wait = self.retry_after(snap)
        if snap.forced or wait > 0:
            _count(self.name, "rejected")
            raise CircuitOpen(self.name, wait)
        self._transition(HALF_OPEN, expect=OPEN, reason="reset timeout elapsed")
        return Snapshot(state=HALF_OPEN, failures=snap.failures)

    def allow(self) -> bool:
        """``before_call`` as a boolean, for code that has its own fallback (the cache)."""
        try:
            self.before_call()
        except CircuitOpen:
            return False
        return True

    def on_success(self, snap: Snapshot | None = None) -> None:
        """``snap``: what ``before_call`` returned (saves a second read of the store)."""
        snap = snap or self.storage.snapshot()
        if snap.state == HALF_OPEN:
            self._transition(CLOSED, expect=HALF_OPEN, reason="trial call succeeded")
        elif snap.failures:
            self.storage.reset_counter()

    def on_failure(self, error: BaseException) -> None:
        if not self.pybreaker.is_system_error(error):
            self.on_success()
            return
        _count(self.name, "failures")
        count = self.storage.add_failure()
        state = self.storage.snapshot().state
        if state == HALF_OPEN:
            self._transition(OPEN, expect=HALF_OPEN, reason=f"trial call failed: {error!r}")
        elif state == CLOSED and count >= self.failures:
            self._transition(
                OPEN, expect=CLOSED, reason=f"{count} consecutive failures, last: {error!r}"
            )

    def _transition(self, to: str, *, expect: str | None, reason: str, actor=None, force=False):
        old = self.storage.transition(to, expect=expect, force=force)
        if old is not None:
            _record(self.name, old, to, reason, actor)
        return old

    # -- the three ways to guard a call -------------------------------------------------------
    def call(self, func: Callable[..., T], *args, fallback: Callable[..., T] | None = None, **kw):
        """``func(*args, **kw)`` through the breaker; with ``fallback``, its answer replaces a
        ``CircuitOpen`` or a counted failure (``fallback(error)``)."""
        try:
            snap = self.before_call()
        except CircuitOpen as error:
            if fallback is None:
                raise
            return fallback(error)
        try:
            result = func(*args, **kw)
        except Exception as error:
            self.on_failure(error)
            if fallback is None or not self.pybreaker.is_system_error(error):
                raise
            return fallback(error)
        self.on_success(snap)
        return result

    def guard(self, fallback: Callable[[BaseException], Any] | None = None):
        """Decorator: ``@breaker("email").guard(fallback=lambda error: None)``."""

        def decorate(func):
            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                return self.call(func, *args, fallback=fallback, **kwargs)

            return wrapper

        return decorate

    @contextmanager
    def calling(self) -> Iterator[None]:
        """``with breaker("storage").calling(): ...``: raises ``CircuitOpen`` before the body while
        open; an exception from the body counts as a failure and propagates. (A context manager
        cannot skip its body, so the fallback belongs to ``call`` and ``guard``.)"""
        snap = self.before_call()
        try:
            yield
        except Exception as error:
            self.on_failure(error)
            raise
        self.on_success(snap)

    # -- operator actions ---------------------------------------------------------------------
    def force(self, action: str, *, actor=None, reason: str = "") -> str:
        """``open`` (stays open until closed), ``close`` or ``reset``; recorded with ``actor``."""
        by = f"{action} by {getattr(actor, 'get_username', lambda: SYSTEM)()}"
        if action == "open":
            self._transition(OPEN, expect=None, reason=reason or by, actor=actor, force=True)
        elif action in ("close", "reset"):
            self._transition(CLOSED, expect=None, reason=reason or by, actor=actor, force=True)
            self.storage.reset_counter()
        else:
            raise ValueError(f"unknown action {action!r}: open, close or reset")
        return self.snapshot().state

    def describe(self) -> dict[str, Any]:
        snap = self.snapshot()
        return {
            "name": self.name,
            "state": snap.state,
            "forced": snap.forced,
            "failure_count": snap.failures,
            "failure_threshold": self.failures,
            "reset_timeout_seconds": self.reset_seconds,
            "retry_after_seconds": round(self.retry_after(snap), 3) if snap.state == OPEN else 0,
            "last_change": snap.changed_at or None,
            "shared_state": isinstance(self.storage, SharedRedisStorage) and self.storage.shared,
        }


_registry: dict[str, Breaker] = {}
_registry_lock = threading.Lock()


def _build(name: str) -> Breaker:
    config = settings.CIRCUIT_BREAKERS.get(name, {})
    url = settings.CIRCUIT_BREAKER_REDIS_URL
    if name in PROCESS_LOCAL or not url:
        storage = MemoryStateStorage(name)
    else:
        storage = SharedRedisStorage(
            name,
            url,
            timeout=settings.CIRCUIT_BREAKER_REDIS_TIMEOUT,
            retry_seconds=settings.CIRCUIT_BREAKER_REDIS_RETRY_SECONDS,
        )
    return Breaker(
        name,
        failures=int(config.get("failures", 5)),
        reset_seconds=float(config.get("reset_seconds", 30.0)),
        storage=storage,
    )


def breaker(name: str) -> Breaker:
    """The process's breaker called ``name`` (built on first use; never touches Redis to build)."""
    found = _registry.get(name)
    if found is not None:
        return found
    if name not in BREAKER_NAMES:
        raise UnknownBreaker(name)
    with _registry_lock:
        if name not in _registry:
            _registry[name] = _build(name)
        return _registry[name]


def all_breakers() -> list[Breaker]:
    return [breaker(name) for name in BREAKER_NAMES]


def reset_registry() -> None:
    """Forget the built breakers (settings changed); the next ``breaker()`` builds them again."""
    with _registry_lock:
        _registry.clear()


def open_breakers() -> list[str]:
    return [b.name for b in all_breakers() if b.snapshot().state == OPEN]
