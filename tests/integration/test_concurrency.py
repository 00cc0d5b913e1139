"""Interleaved requests of two tenants, in threads and as coroutines, each see only their own tenant.

The requests go through the production middleware chain (``settings.MIDDLEWARE`` with
``TenantMiddleware``) to probe views (``tests/integration/urls_probe.py``). Barriers make the
interleaving certain rather than likely: no request gets past its barrier until every request of
both tenants has resolved its tenant and is inside its view, so all of them are in flight at once.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import ThreadSensitiveContext, async_to_sync
from django.db import connections
from django.test import AsyncClient, Client, RequestFactory

from tenants.context import current_tenant
from tenants.exceptions import TenantScopeMissing
from tenants.middleware import TenantMiddleware
from tenants.models import Membership
from tests.factories import MembershipFactory, TenantFactory, issue_key
from tests.integration.urls_probe import ProbeError, probe_state

REQUESTS = 16
probe_urls = pytest.mark.urls("tests.integration.urls_probe")


@pytest.fixture(autouse=True)
def _reset_probe_state():
    probe_state.thread_barrier = None
    probe_state.async_barrier = None
    probe_state.close_connections = False
    probe_state.seen_in_failing_view = None
    yield
    probe_state.thread_barrier = None
    probe_state.async_barrier = None
    probe_state.close_connections = False
    probe_state.seen_in_failing_view = None


@pytest.fixture
def two_tenants():
    """Two tenants with members and keys: ``{slug: (secret, membership ids)}``."""
    tenants = {}
    for slug, members in (("conc-a", 2), ("conc-b", 3)):
        tenant = TenantFactory(slug=slug)
        ids = sorted(MembershipFactory(tenant=tenant).pk for _ in range(members))
        _, secret = issue_key(tenant)
        tenants[slug] = (secret, ids)
    assert set(tenants["conc-a"][1]).isdisjoint(tenants["conc-b"][1])
    return tenants


def _warm(two_tenants) -> None:
    """One request per key first, so the burst only reads (SQLite's shared-cache test database
    locks whole tables on write; the last_used_at write is then already done)."""
    for slug, (secret, _) in two_tenants.items():
        response = Client(HTTP_AUTHORIZATION=f"Bearer {secret}").get("/probe/tenant/")
        assert response.json()["tenant"] == slug


def _request_slugs() -> list[str]:
    """The tenants of the requests to send, alternating A and B."""
    return [("conc-a", "conc-b")[index % 2] for index in range(REQUESTS)]


def _slug_or_none() -> str | None:
    tenant = current_tenant()
    return None if tenant is None else tenant.slug


def _assert_each_saw_its_own(answers: list[tuple[str, dict]], two_tenants) -> None:
    assert len(answers) == REQUESTS
    for slug, body in answers:
        _, own_ids = two_tenants[slug]
        seen = {key: value for key, value in body.items() if key != "membership_ids"}
        assert set(seen.values()) == {slug}, (slug, body)
        assert body["membership_ids"] == own_ids, (slug, body)


# --- (a) threads ----------------------------------------------------------------------------


@probe_urls
@pytest.mark.django_db(transaction=True)
def test_threaded_requests_of_two_tenants_each_see_their_own(two_tenants):
    _warm(two_tenants)
    barrier = probe_state.thread_barrier = threading.Barrier(REQUESTS)

    def one_request(slug: str) -> tuple[str, dict]:
        try:
            secret, _ = two_tenants[slug]
            client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}", raise_request_exception=False)
            response = client.get("/probe/threads/")
            if response.status_code != 200:
                barrier.abort()  # the others would wait for this request in vain
            assert response.status_code == 200, response.content
            answer = response.json()
            return slug, {**answer, "thread_scope_after": _slug_or_none()}
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        answers = list(pool.map(one_request, _request_slugs()))

    assert not barrier.broken
    for slug, body in answers:
        assert body.pop("thread_scope_after") is None, slug  # reset when the request ended
    _assert_each_saw_its_own(answers, two_tenants)
    assert current_tenant() is None


# --- (b) coroutines -------------------------------------------------------------------------


@probe_urls
@pytest.mark.django_db(transaction=True)
def test_async_requests_of_two_tenants_each_see_their_own(two_tenants):
    """Concurrent requests through an async view, as under an ASGI server.

    The event loop runs under ``asyncio.run`` (no parent sync thread) and each request runs in its
    own ``ThreadSensitiveContext``, as Django's ``ASGIHandler`` does, so the sync parts of the
    chain (WhiteNoise, the tenant lookup) run in one thread per request instead of serialising
    every request through one thread. (Under ``async_to_sync`` from the test thread they would all
    share that thread, and a sync-only middleware holds it for the whole request.) An
    ``asyncio.Barrier`` in the view holds every request until all of them are in flight; the view
    also yields with ``asyncio.sleep(0)`` before and after its query.
    """
    _warm(two_tenants)
    probe_state.async_barrier = asyncio.Barrier(REQUESTS)
    probe_state.close_connections = True  # the per-request threads close their connections

    async def one_request(slug: str | None) -> tuple[str | None, dict]:
        headers = {"Authorization": f"Bearer {two_tenants[slug][0]}"} if slug else {}
        async with ThreadSensitiveContext():
            response = await AsyncClient().get("/probe/async/", headers=headers)
        assert response.status_code == 200, response.content
        return slug, response.json()

    async def all_requests() -> tuple[list[tuple[str | None, dict]], str | None, dict]:
        answers = await asyncio.gather(*(one_request(slug) for slug in _request_slugs()))
        scope_after = _slug_or_none()
        probe_state.async_barrier = None
        _, anonymous = await one_request(None)
        return list(answers), scope_after, anonymous

    answers, scope_after, anonymous = asyncio.run(all_requests())

    _assert_each_saw_its_own(answers, two_tenants)
    assert scope_after is None
    assert anonymous == {"before": None, "middle": None, "after": None, "membership_ids": []}
    assert current_tenant() is None


# --- The scope is cleared after every request -----------------------------------------------


@probe_urls
@pytest.mark.django_db
def test_the_scope_is_cleared_after_a_request(two_tenants):
    secret, _ = two_tenants["conc-a"]
    keyed = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert keyed.get("/probe/tenant/").json()["tenant"] == "conc-a"
    assert current_tenant() is None
    assert Client().get("/probe/tenant/").json()["tenant"] is None
    with pytest.raises(TenantScopeMissing):
        Membership.objects.count()


@probe_urls
@pytest.mark.django_db
def test_a_failing_view_still_resets_the_scope(two_tenants):
    probe_state.seen_in_failing_view = []
    secret, _ = two_tenants["conc-a"]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    with pytest.raises(ProbeError):
        client.get("/probe/fail/")
    assert probe_state.seen_in_failing_view == ["conc-a"]
    assert current_tenant() is None
    assert Client().get("/probe/tenant/").json()["tenant"] is None

    quiet = Client(HTTP_AUTHORIZATION=f"Bearer {secret}", raise_request_exception=False)
    assert quiet.get("/probe/fail/").status_code == 500
    assert current_tenant() is None


@probe_urls
@pytest.mark.django_db
def test_a_failing_async_view_still_resets_the_scope(two_tenants):
    probe_state.seen_in_failing_view = []
    secret, _ = two_tenants["conc-b"]

    async def fail_then_probe():
        with pytest.raises(ProbeError):
            await AsyncClient().get(
                "/probe/async-fail/", headers={"Authorization": f"Bearer {secret}"}
            )
        scope_after = _slug_or_none()
        anonymous = await AsyncClient().get("/probe/async/")
        return scope_after, anonymous.json()

    scope_after, anonymous = async_to_sync(fail_then_probe)()
    assert probe_state.seen_in_failing_view == ["conc-b"]
    assert scope_after is None
    assert anonymous["before"] is None
    assert current_tenant() is None


@pytest.mark.django_db
def test_the_middleware_resets_the_scope_when_the_view_raises(two_tenants):
    """The middleware's own ``finally``, without Django's exception-to-response wrapper between."""
    secret, _ = two_tenants["conc-a"]
    seen = []

    def raising_view(request):
        seen.append(_slug_or_none())
        raise ProbeError("boom")

    request = RequestFactory().get("/probe/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    request.user = None
    with pytest.raises(ProbeError):
        TenantMiddleware(raising_view)(request)
    assert seen == ["conc-a"]
    assert current_tenant() is None


@pytest.mark.django_db
def test_the_async_middleware_resets_the_scope_when_the_view_raises(two_tenants):
    secret, _ = two_tenants["conc-b"]
    seen = []

    async def raising_view(request):
        seen.append(_slug_or_none())
        await asyncio.sleep(0)
        raise ProbeError("boom")

    middleware = TenantMiddleware(raising_view)
    assert middleware.is_async
    request = RequestFactory().get("/probe/", HTTP_AUTHORIZATION=f"Bearer {secret}")

    async def call_and_look():
        with pytest.raises(ProbeError):
            await middleware(request)
        return _slug_or_none()

    # async_to_sync copies context changes back to this thread, so a leak would show here too
    assert async_to_sync(call_and_look)() is None
    assert seen == ["conc-b"]
    assert current_tenant() is None
