"""The current tenant, held in a ``contextvars.ContextVar``.

Invariant: the tenant scope is never inherited by accident. ``tenant_scope`` always resets the
variable with the token it got, even when the body raises, so a request, task or thread can never
leave its tenant behind for the next unit of work. ContextVars (not thread-locals) make this hold
for threads and for concurrent coroutines under ASGI alike: each asyncio task runs in a copy of the
context, and ``sync_to_async`` carries the caller's context into its worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from tenants.exceptions import TenantScopeMissing

if TYPE_CHECKING:
    from tenants.models import Tenant

_current_tenant: ContextVar[Tenant | None] = ContextVar("ils_current_tenant", default=None)


def current_tenant() -> Tenant | None:
    """The tenant of the current scope, or ``None`` outside any scope."""
    return _current_tenant.get()


def require_tenant() -> Tenant:
    """The tenant of the current scope; raises ``TenantScopeMissing`` outside any scope."""
    tenant = _current_tenant.get()
    if tenant is None:
        raise TenantScopeMissing()
    return tenant


@contextmanager
def tenant_scope(tenant: Tenant) -> Iterator[Tenant]:
    """Run the body with ``tenant`` as the current tenant; the previous scope is restored after."""
    if tenant is None or tenant.pk is None:
        raise ValueError("tenant_scope() needs a saved Tenant")
    token = _current_tenant.set(tenant)
    try:
        yield tenant
    finally:
        _current_tenant.reset(token)


@contextmanager
def unscoped() -> Iterator[None]:
    """Run the body with no tenant: scoped managers raise and cache keys are global inside it.

    For global work (ops commands, global beat tasks) that must not run under a tenant it happened
    to inherit. To read across tenants use a model's explicitly named ``all_tenants`` manager.
    """
    token = _current_tenant.set(None)
    try:
        yield
    finally:
        _current_tenant.reset(token)
