"""The tenant-keyed cache: key layout, generations, ``tenant_cache``, the cached view, invalidation.

Invalidation runs in ``transaction.on_commit``; writes that must invalidate run inside
``django_capture_on_commit_callbacks(execute=True)``, which runs the callbacks as a commit would.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache, caches
from django.db import connection
from django.http import HttpResponse
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from tenants import services
from tenants.cache import (
    cache_counters,
    generation_key,
    global_cache,
    tenant_cache,
    tenant_cache_invalidate,
    tenant_cache_invalidate_many,
    tenant_cached_view,
)
from tenants.context import tenant_scope, unscoped
from tenants.exceptions import TenantScopeMissing
from tenants.mirror import global_mirror
from tenants.models import Tenant
from tests.factories import TenantFactory, UserFactory, issue_key, key_client, plan

pytestmark = pytest.mark.django_db

URL = "/api/v1/tenant/"


@pytest.fixture
def two_tenants() -> tuple[Tenant, Tenant]:
    return TenantFactory(slug="acme"), TenantFactory(slug="globex")


def _raw_redis():
    return caches["default"].client.get_client(write=True)


def _fresh(tenant: Tenant) -> Tenant:
    """A new object for the same tenant, as a new request resolves one (a new scope)."""
    return Tenant.objects.get(pk=tenant.pk)


def _generation(tenant: Tenant) -> int:
    return global_cache().get(generation_key(tenant.pk))


def _counts(tenant: Tenant) -> dict[str, int]:
    return cache_counters().get(tenant.pk, {"hits": 0, "misses": 0})


@pytest.mark.redis
def test_keys_carry_the_tenant_and_its_generation_and_need_a_scope(two_tenants):
    acme, _ = two_tenants
    with tenant_scope(acme):
        cache.set("greeting", "hello")
        generation = _generation(acme)
        tenant_key = cache.make_key("greeting")
    global_cache().set("greeting", "global")
    global_key = global_cache().make_key("greeting")

    assert tenant_key == f"{cache.key_prefix}:1:t:{acme.pk}:{generation}:greeting"
    assert global_key == f"{global_cache().key_prefix}:1:greeting"
    assert _raw_redis().exists(tenant_key, global_key) == 2
    assert _raw_redis().exists(global_cache().make_key(generation_key(acme.pk))) == 1
    # Outside a scope the tenant cache refuses: tenant data never lands under a global key.
    with unscoped(), pytest.raises(TenantScopeMissing):
        cache.set("greeting", "nowhere")
    with unscoped(), pytest.raises(TenantScopeMissing):
        cache.get("greeting")


@pytest.mark.redis
def test_global_keys_are_the_same_inside_and_outside_any_scope(two_tenants):
    acme, globex = two_tenants
    with tenant_scope(acme):
        global_cache().set("resolution", "seen from acme")
    with tenant_scope(globex):
        assert global_cache().get("resolution") == "seen from acme"
        global_cache().delete("resolution")
    assert global_cache().get("resolution") is None


@pytest.mark.redis
def test_two_tenants_identical_keys_never_collide(two_tenants):
    acme, globex = two_tenants
    for tenant in two_tenants:
        with tenant_scope(tenant):
            cache.set("settings", {"owner": tenant.slug})
    global_cache().set("settings", {"owner": "platform"})

    with tenant_scope(_fresh(acme)):
        assert cache.get("settings") == {"owner": "acme"}
    with tenant_scope(_fresh(globex)):
        assert cache.get("settings") == {"owner": "globex"}
    assert global_cache().get("settings") == {"owner": "platform"}
    assert len(_raw_redis().keys(f"{cache.key_prefix}:1:*settings")) == 2


@pytest.mark.redis
def test_a_generation_bump_invalidates_one_tenant_and_nothing_else(two_tenants):
    acme, globex = two_tenants
    for tenant in two_tenants:
        with tenant_scope(tenant):
            cache.set("report", f"{tenant.slug} report")
    global_cache().set("report", "global report")
    before = _generation(acme)

    tenant_cache_invalidate(acme)

    assert _generation(acme) == before + 1  # one INCR
    with tenant_scope(_fresh(acme)):
        assert cache.get("report") is None
        cache.set("report", "new acme report")
        assert cache.get("report") == "new acme report"
    with tenant_scope(_fresh(globex)):
        assert cache.get("report") == "globex report"
    assert global_cache().get("report") == "global report"


@pytest.mark.redis
def test_the_generation_is_read_once_per_scope_and_through_the_mirror(two_tenants):
    acme, _ = two_tenants
    with tenant_scope(acme):
        cache.set_many({f"k{n}": n for n in range(5)})
    global_mirror.clear()

    def calls(command: str) -> int:
        stats = _raw_redis().info("commandstats")
        return stats.get(f"cmdstat_{command}", {}).get("calls", 0)

    before = calls("get"), calls("mget")
    with tenant_scope(_fresh(acme)):
        assert [cache.get(f"k{n}") for n in range(5)] == list(range(5))
    assert (calls("get") - before[0], calls("mget") - before[1]) == (5, 1)  # generation once

    before = calls("get"), calls("mget")
    with tenant_scope(_fresh(acme)):  # a new scope asks again: this process's fresh copy answers
        assert cache.get("k0") == 0
    assert (calls("get") - before[0], calls("mget") - before[1]) == (1, 0)

    tenant_cache_invalidate(acme)  # announced to every process's mirror
    with tenant_scope(_fresh(acme)):
        assert cache.get("k0") is None


def test_a_bump_in_the_current_scope_applies_to_it_at_once(two_tenants):
    acme, _ = two_tenants
    with tenant_scope(acme):
        cache.set("draft", "old")
        tenant_cache_invalidate(acme)
        assert cache.get("draft") is None


def test_a_missing_generation_is_seeded_anew_so_old_entries_stay_unreachable(two_tenants):
    acme, globex = two_tenants
    for tenant in two_tenants:
        with tenant_scope(tenant):
            cache.set("item", tenant.slug)
    first = _generation(acme)

    tenant_cache_invalidate_many([acme.pk, globex.pk])  # deletes both generation keys

    for tenant in two_tenants:
        with tenant_scope(_fresh(tenant)):
            assert cache.get("item") is None
    assert _generation(acme) > first


def test_get_or_set_computes_once_and_counts_hits_and_misses_per_tenant(two_tenants):
    acme, globex = two_tenants
    acme_before, globex_before = _counts(acme), _counts(globex)
    computed = []

    def compute():
        computed.append(1)
        return {"total": 42}

    with tenant_scope(acme):
        assert tenant_cache.get_or_set("totals", compute, 60) == {"total": 42}
        assert tenant_cache.get_or_set("totals", compute, 60) == {"total": 42}
        assert tenant_cache.get_or_set("nothing", lambda: None, 60) is None
        assert tenant_cache.get_or_set("nothing", compute, 60) is None  # None is cached too

    assert len(computed) == 1
    assert _counts(acme) == {
        "hits": acme_before["hits"] + 2,
        "misses": acme_before["misses"] + 2,
    }
    assert _counts(globex) == globex_before


def test_tenant_cache_refuses_to_work_outside_a_scope():
    with unscoped(), pytest.raises(TenantScopeMissing):
        tenant_cache.get_or_set("totals", dict, 60)


def _plain_view(status: int):
    calls = []

    @tenant_cached_view(timeout=60)
    def view(request):
        calls.append(request.method)
        return HttpResponse(f"answer {len(calls)}", status=status, content_type="text/plain")

    return view, calls


def test_a_plain_view_is_cached_per_tenant_and_query_for_get_and_head_only(two_tenants):
    acme, globex = two_tenants
    view, calls = _plain_view(200)
    factory = RequestFactory()

    with tenant_scope(acme):
        first = view(factory.get("/report/?b=2&a=1"))
        assert view(factory.get("/report/?a=1&b=2")).content == first.content == b"answer 1"
        assert view(factory.head("/report/?a=1&b=2")).content == b"answer 1"
        assert view(factory.get("/report/?a=2")).content == b"answer 2"
        assert view(factory.post("/report/?a=1&b=2")).content == b"answer 3"
        assert view(factory.get("/report/?a=1&b=2"))["Content-Type"] == "text/plain"
    with tenant_scope(globex):
        assert view(factory.get("/report/?a=1&b=2")).content == b"answer 4"
    with unscoped():
        assert view(factory.get("/report/?a=1&b=2")).content == b"answer 5"
        assert view(factory.get("/report/?a=1&b=2")).content == b"answer 6"

    assert calls == ["GET", "GET", "POST", "GET", "GET", "GET"]


def test_only_200_answers_are_cached(two_tenants):
    acme, _ = two_tenants
    view, calls = _plain_view(404)
    with tenant_scope(acme):
        view(RequestFactory().get("/missing/"))
        view(RequestFactory().get("/missing/"))
    assert calls == ["GET", "GET"]


@pytest.fixture
def acme_key(two_tenants):
    acme, _ = two_tenants
    _, secret = issue_key(acme)
    return acme, key_client(secret)


def test_a_warm_tenant_read_runs_no_sql_and_counts_a_hit(acme_key):
    acme, client = acme_key
    before = _counts(acme)
    cold = client.get(URL)
    assert cold.status_code == 200, cold.content

    with CaptureQueriesContext(connection) as warm:
        response = client.get(URL)

    assert response.status_code == 200, response.content
    assert response.json() == cold.json()
    assert warm.captured_queries == []
    assert _counts(acme) == {"hits": before["hits"] + 1, "misses": before["misses"] + 1}
    assert client.head(URL).status_code == 200


def test_the_tenant_read_reflects_a_rename_on_the_next_request(
    acme_key, django_capture_on_commit_callbacks
):
    _, client = acme_key
    assert client.get(URL).json()["name"] == "Company acme"

    with django_capture_on_commit_callbacks(execute=True):
        assert client.patch(URL, {"name": "Acme Group"}, format="json").status_code == 200

    assert client.get(URL).json()["name"] == "Acme Group"


def test_the_tenant_read_reflects_members_and_keys_on_the_next_request(
    acme_key, django_capture_on_commit_callbacks
):
    acme, client = acme_key
    assert client.get(URL).json()["usage"] == {"members": 0, "api_keys": 1}

    with django_capture_on_commit_callbacks(execute=True):
        services.membership_add(tenant=acme, user=UserFactory())
    assert client.get(URL).json()["usage"] == {"members": 1, "api_keys": 1}

    with django_capture_on_commit_callbacks(execute=True):
        issue_key(acme, name="second")
    assert client.get(URL).json()["usage"] == {"members": 1, "api_keys": 2}


def test_the_tenant_read_reflects_a_change_of_its_plan(
    acme_key, django_capture_on_commit_callbacks
):
    _, client = acme_key
    pro = plan("pro")
    assert client.get(URL).json()["limits"]["max_members"] == pro.max_members

    with django_capture_on_commit_callbacks(execute=True):
        pro.max_members = 77
        pro.save()

    assert client.get(URL).json()["limits"]["max_members"] == 77


def test_without_a_commit_nothing_is_invalidated(acme_key):
    acme, client = acme_key
    client.get(URL)
    before = _generation(acme)

    with tenant_scope(acme):
        services.membership_add(tenant=acme, user=UserFactory())  # on_commit never runs

    assert _generation(acme) == before
    assert client.get(URL).json()["usage"]["members"] == 0
