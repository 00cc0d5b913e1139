"""Route reads to healthy read replicas and everything else to the primary, with read-your-writes.

Invariant (no stale read after one's own write): a read goes to a replica only when all of these
hold, otherwise to ``default``:

- it runs inside a pinning scope (``ReplicaPinningMiddleware`` for a request,
  ``replica_pinning_scope()`` for a task). Outside any scope (commands, shell, migrations, the
  tenant resolution that runs before the scope is known) every read goes to the primary;
- no atomic block is open on ``default`` (a transaction reads what it wrote);
- the scope has not written (every ``db_for_write`` marks it, except bookkeeping writes:
  ``tenants.bookkeeping``);
- its tenant (API) or user (session) is not pinned: a write pins the subject in the shared cache
  for ``REPLICA_PIN_SECONDS``, so its next requests, in any process, read the primary too. The pin
  costs at most one cache read per scope, remembered in the scope for its other reads;
- the replica monitor (``config.replicas``) has seen the replica healthy: reachable, in recovery
  and lagging by at most ``REPLICA_MAX_LAG_SECONDS``.

A scope keeps the replica it first read from while it stays healthy, so one request never reads a
newer row from one replica and then an older one from another.

A replica that dies between two monitor checks: the request that meets it first fails, because
the pool drops the dead connection and waits up to ``DATABASE_REPLICA_POOL_TIMEOUT`` for a new one, then
raises ``OperationalError`` (answered as a 503 JSON error under /api/). When that request's scope
ends the replica is marked down for ``REPLICA_COOLDOWN_SECONDS``, so the following reads, in every
thread of the process, go to the primary. The query is not retried on the primary: the view may
have acted on earlier reads, and only the view knows whether repeating its work is safe.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest

from config.replicas import monitor
from tenants.bookkeeping import in_bookkeeping
from tenants.cache import global_cache
from tenants.context import current_tenant
from tenants.middleware import SyncAndAsyncMiddleware

logger = logging.getLogger(__name__)

# Pins live in the global cache, naming their tenant or user: a tenant's cache generation, bumped by
# the very writes that pin it, must not make its pin unreachable.
PIN_KEY_PREFIX = "replica-pin"


@dataclass
class PinningState:
    """What one request or task has done that decides where its reads may go."""

    pin_key: str | None
    wrote: bool = False
    pinned: bool | None = None  # None: the cache has not been asked yet in this scope
    replica: str | None = None
    used: set[str] = field(default_factory=set)


_state: ContextVar[PinningState | None] = ContextVar("ils_replica_pinning", default=None)


def _pin_key(user_id: int | None) -> str | None:
    tenant = current_tenant()
    if tenant is not None:
        return f"{PIN_KEY_PREFIX}:tenant:{tenant.pk}"
    if user_id is not None:
        return f"{PIN_KEY_PREFIX}:user:{user_id}"
    return None


def _set_pin(state: PinningState) -> None:
    if state.pin_key is None:
        return
    try:
        global_cache().set(state.pin_key, 1, timeout=settings.REPLICA_PIN_SECONDS)
    except Exception:  # a cache outage must not fail the write that already happened
        logger.warning("Could not store the replica pin %s", state.pin_key, exc_info=True)


def _is_pinned(state: PinningState) -> bool:
    if state.pinned is None:
        if state.pin_key is None:
            state.pinned = False
        else:
            try:
                state.pinned = global_cache().get(state.pin_key) is not None
            except Exception:  # without the pin we cannot prove a replica is fresh enough
                logger.warning("Could not read the replica pin %s", state.pin_key, exc_info=True)
                state.pinned = True
    return state.pinned


def _lost_connection(alias: str) -> bool:
    """Did this scope's connection to ``alias`` fail to open or break (not a mere SQL error)?"""
    wrapper = connections[alias]
    if not wrapper.errors_occurred:
        return False
    raw = wrapper.connection
    return raw is None or raw.closed or raw.broken


@contextmanager
def replica_pinning_scope(*, user_id: int | None = None) -> Iterator[PinningState]:
    """A unit of work (request, task) whose reads may use replicas, with read-your-writes.

    The pin subject is the current tenant, else ``user_id``. Enter it inside the tenant scope.
    """
    state = PinningState(pin_key=_pin_key(user_id))
    token = _state.set(state)
    try:
        yield state
    finally:
        _state.reset(token)
        if state.wrote:
            _set_pin(state)  # the window runs from the end of the writing unit of work
        for alias in state.used:
            if _lost_connection(alias):
                monitor.mark_down(alias, "a query lost its connection")


def _read_alias() -> str:
    state = _state.get()
    if (
        state is None
        or state.wrote
        or connections[DEFAULT_DB_ALIAS].in_atomic_block
        or _is_pinned(state)
    ):
        return DEFAULT_DB_ALIAS
    healthy = monitor.readable_aliases()
    if not healthy:
        return DEFAULT_DB_ALIAS
    if state.replica not in healthy:
        state.replica = random.choice(healthy)
        state.used.add(state.replica)
    return state.replica


class ReplicaRouter:
    """Writes, migrations and transactions on the primary; reads spread over healthy replicas."""

    def db_for_read(self, model, **hints) -> str:
        if not settings.READ_REPLICA_ALIASES:
            return DEFAULT_DB_ALIAS
        alias = _read_alias()
        monitor.count_read(alias)
        return alias

    def db_for_write(self, model, **hints) -> str:
        state = _state.get()
        if state is not None and not state.wrote and not in_bookkeeping():
            state.wrote = True
            _set_pin(state)  # now, so a concurrent request of the same subject sees it at once
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool | None:
        databases = {DEFAULT_DB_ALIAS, *settings.READ_REPLICA_ALIASES}
        if obj1._state.db in databases and obj2._state.db in databases:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, model_name=None, **hints) -> bool:
        return db == DEFAULT_DB_ALIAS


class ReplicaPinningMiddleware(SyncAndAsyncMiddleware):
    """Runs each request in a ``replica_pinning_scope``; place it right after TenantMiddleware."""

    def handle(self, request: HttpRequest):
        if not settings.READ_REPLICA_ALIASES:
            return self.get_response(request)
        user = getattr(request, "user", None)
        with replica_pinning_scope(user_id=_session_user_id(user)):
            return self.get_response(request)

    async def __acall__(self, request: HttpRequest):
        if not settings.READ_REPLICA_ALIASES:
            return await self.get_response(request)
        user = await request.auser() if hasattr(request, "auser") else None
        with replica_pinning_scope(user_id=_session_user_id(user)):
            return await self.get_response(request)


def _session_user_id(user) -> int | None:
    # Only asked when no tenant is in scope: the user's session is then loaded before the scope
    # opens, so it is read from the primary (a session written a moment ago is always found).
    if current_tenant() is not None or user is None or not user.is_authenticated:
        return None
    return user.pk
