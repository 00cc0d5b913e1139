"""A test-only URL conf: probe views that report the tenant scope they run in.

Used with ``@pytest.mark.urls("tests.integration.urls_probe")``. The production middleware chain
(``settings.MIDDLEWARE``, with ``TenantMiddleware``) stays in place; only the views are test code.
The tenant API stays mounted under ``/api/v1/`` so a test can mix probes and real endpoints.

A test that needs concurrent requests to meet installs a ``threading.Barrier`` or an
``asyncio.Barrier`` in ``probe_state`` before sending them, so requests of both tenants are provably
in flight at the same time (a request that never arrives breaks the barrier and fails the test).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from tenants.context import current_tenant
from tenants.models import Membership

#: How long a barrier waits for the other requests before it breaks (a failure, not a timing).
BARRIER_TIMEOUT_SECONDS = 30


class ProbeError(RuntimeError):
    """Raised on purpose by the failing probes."""


@dataclass
class ProbeState:
    thread_barrier: threading.Barrier | None = None
    async_barrier: asyncio.Barrier | None = None
    async_yields: int = 5
    close_connections: bool = False
    seen_in_failing_view: list[str | None] | None = None


probe_state = ProbeState()


def _slug() -> str | None:
    tenant = current_tenant()
    return None if tenant is None else tenant.slug


def tenant_probe(request: HttpRequest) -> JsonResponse:
    """The tenant and plan of the scope. Runs no SQL itself (the plan comes with the tenant)."""
    tenant = current_tenant()
    if tenant is None:
        return JsonResponse({"tenant": None, "plan": None, "limits": None})
    return JsonResponse(
        {"tenant": tenant.slug, "plan": tenant.plan.code, "limits": tenant.limits()}
    )


def thread_probe(request: HttpRequest) -> JsonResponse:
    """Reads the scope, waits for every other request to be in flight, then queries."""
    before = _slug()
    if probe_state.thread_barrier is not None:
        probe_state.thread_barrier.wait(timeout=BARRIER_TIMEOUT_SECONDS)
    ids = sorted(Membership.objects.values_list("id", flat=True))
    return JsonResponse({"before": before, "after": _slug(), "membership_ids": ids})


def _scoped_membership_ids() -> list[int]:
    """The ids ``Membership.objects`` sees; ``[]`` without a scope (where it would raise)."""
    try:
        if current_tenant() is None:
            return []
        return sorted(Membership.objects.values_list("id", flat=True))
    finally:
        if probe_state.close_connections:
            connections.close_all()


async def async_probe(request: HttpRequest) -> JsonResponse:
    """Reads the scope, yields to the other requests, queries through sync_to_async, reads again."""
    before = _slug()
    for _ in range(probe_state.async_yields):
        await asyncio.sleep(0)
    if probe_state.async_barrier is not None:
        await asyncio.wait_for(probe_state.async_barrier.wait(), BARRIER_TIMEOUT_SECONDS)
    middle = _slug()
    ids = await sync_to_async(_scoped_membership_ids)()
    for _ in range(probe_state.async_yields):
        await asyncio.sleep(0)
    return JsonResponse(
        {"before": before, "middle": middle, "after": _slug(), "membership_ids": ids}
    )


def failing_probe(request: HttpRequest) -> JsonResponse:
    if probe_state.seen_in_failing_view is not None:
        probe_state.seen_in_failing_view.append(_slug())
    raise ProbeError("the probe view failed on purpose")


async def async_failing_probe(request: HttpRequest) -> JsonResponse:
    if probe_state.seen_in_failing_view is not None:
        probe_state.seen_in_failing_view.append(_slug())
    await asyncio.sleep(0)
    raise ProbeError("the async probe view failed on purpose")


urlpatterns = [
    path("probe/tenant/", tenant_probe),
    path("probe/threads/", thread_probe),
    path("probe/async/", async_probe),
    path("probe/fail/", failing_probe),
    path("probe/async-fail/", async_failing_probe),
    path("api/v1/", include("tenants.urls")),
]
