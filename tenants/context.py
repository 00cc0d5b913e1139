"""The current tenant, held in a ``contextvars.ContextVar``.

Invariant: the tenant scope is never inherited by accident. ``tenant_scope`` always resets the
variable with the token it got, even when the body raises, so a request, task or thread can never
leave its tenant behind for the next unit of work. ContextVars (not thread-locals) make this hold
for threads and for concurrent coroutines under ASGI alike: each asyncio task runs in a copy of the
context, and ``sync_to_async`` carries the caller's context into its worker thread.

Invariant (per-scope state ends with the scope): each ``tenant_scope`` opens a new ``Scope``, and
what is remembered for the unit of work (the tenant's cache generation, ``tenants.cache``) lives on
it. Entering a scope again, even with the very same ``Tenant`` object (a worker, a command, a
thread pool), starts from nothing, so it sees what other processes changed in between.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenants.exceptions import TenantScopeMissing

if TYPE_CHECKING:
    from tenants.models import Tenant


@dataclass
class Scope:
    """One unit of work under one tenant: the tenant, and state that must not outlive the work."""

    tenant: Tenant
    cache_generation: int | None = None


_current_scope: ContextVar[Scope | None] = ContextVar("ils_tenant_scope", default=None)


def current_scope() -> Scope | None:
    """The open scope, or ``None`` outside any."""
    return _current_scope.get()


def current_tenant() -> Tenant | None:
    """The tenant of the current scope, or ``None`` outside any scope."""
    scope = _current_scope.get()
    return None if scope is None else scope.tenant


def require_tenant() -> Tenant:
    """The tenant of the current scope; raises ``TenantScopeMissing`` outside any scope."""
    scope = _current_scope.get()
    if scope is None:
        raise TenantScopeMissing()
    return scope.tenant


@contextmanager
def tenant_scope(tenant: Tenant, *, cache_generation: int | None = None) -> Iterator[Tenant]:
    """Run the body with ``tenant`` as the current tenant; the previous scope is restored after.

    ``cache_generation``: the tenant's cache generation when the caller has just read it (the
    request's resolution does), so the scope's first cache key costs no round trip.
    """
    if tenant is None or tenant.pk is None:
        raise ValueError("tenant_scope() needs a saved Tenant")
    token = _current_scope.set(Scope(tenant, cache_generation))
    try:
        yield tenant
    finally:
        _current_scope.reset(token)


@contextmanager
def unscoped() -> Iterator[None]:
    """Run the body with no tenant: scoped managers and the tenant cache raise inside it.

    For global work (ops commands, global beat tasks) that must not run under a tenant it happened
    to inherit. To read across tenants use a model's explicitly named ``all_tenants`` manager; to
    cache global data use ``tenants.cache.global_cache``.
    """
    token = _current_scope.set(None)
    try:
        yield
    finally:
        _current_scope.reset(token)
