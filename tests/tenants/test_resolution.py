"""Tenant resolution: API key, subdomain, X-Tenant; cached (no SQL when warm) and invalidated.

Cache invalidation runs in ``transaction.on_commit``; pytest-django wraps each test in a
transaction, so the writes that must drop cached entries run inside
``django_capture_on_commit_callbacks(execute=True)``, which runs the callbacks as a commit would.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tenants import resolution, services
from tenants.cache import global_cache, tenant_cache_invalidate
from tenants.context import current_tenant
from tenants.models import ApiKey, Membership, Plan, Tenant
from tests.factories import (
    MembershipFactory,
    TenantFactory,
    UserFactory,
    issue_key,
    key_client,
    plan,
)

pytestmark = pytest.mark.django_db

TENANT_URL = "/api/v1/tenant/"
PROBE_URL = "/probe/tenant/"
probe_urls = pytest.mark.urls("tests.integration.urls_probe")


def _code(response) -> str:
    return response.json()["error"]["code"]


def _sql(captured: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in captured.captured_queries]


def _resolution_sql(statements: list[str]) -> list[str]:
    """Statements that resolve a key, tenant or plan (or write last_used_at)."""
    return [
        sql
        for sql in statements
        if '"tenants_tenant"' in sql
        or '"tenants_plan"' in sql
        or '"tenants_apikey"."prefix"' in sql
        or "last_used_at" in sql
    ]


@pytest.fixture
def acme():
    tenant = TenantFactory(slug="acme", name="Acme")
    MembershipFactory(tenant=tenant, role=Membership.Role.OWNER)
    api_key, secret = issue_key(tenant)
    return tenant, api_key, secret


# --- No SQL when warm -----------------------------------------------------------------------


@probe_urls
def test_a_warm_request_runs_no_sql_to_find_its_key_tenant_and_plan(acme):
    tenant, api_key, secret = acme
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")

    with CaptureQueriesContext(connection) as cold:
        first = client.get(PROBE_URL)
    assert first.status_code == 200, first.content
    assert first.json()["tenant"] == "acme"
    assert first.json()["plan"] == tenant.plan.code
    cold_sql = _sql(cold)
    # the cold request did resolve through the database (so the warm one is a real comparison)
    assert any('"tenants_apikey"."prefix"' in sql for sql in cold_sql), cold_sql
    assert any('FROM "tenants_tenant"' in sql for sql in cold_sql), cold_sql
    assert any('FROM "tenants_plan"' in sql for sql in cold_sql), cold_sql
    assert ApiKey.all_tenants.get(pk=api_key.pk).last_used_at is not None

    for _ in range(3):
        with CaptureQueriesContext(connection) as warm:
            again = client.get(PROBE_URL)
        assert again.status_code == 200, again.content
        assert again.json() == first.json()
        assert _sql(warm) == []


def test_the_tenant_endpoint_resolves_without_sql_when_warm(acme):
    tenant, _, secret = acme
    client = key_client(secret)
    assert client.get(TENANT_URL).status_code == 200
    tenant_cache_invalidate(tenant)  # the answer is computed again; the resolution stays warm

    with CaptureQueriesContext(connection) as warm:
        response = client.get(TENANT_URL)
    assert response.status_code == 200, response.content
    assert response.json()["slug"] == "acme"
    assert response.json()["plan"]["code"] == tenant.plan.code
    statements = _sql(warm)
    assert statements, "the endpoint counts usage, so some SQL is expected"
    assert _resolution_sql(statements) == []


@probe_urls
def test_a_warm_slug_and_membership_resolution_runs_no_sql(acme):
    tenant, _, _ = acme
    member = Membership.all_tenants.get(tenant=tenant).user
    client = Client(HTTP_X_TENANT="acme")
    client.force_login(member)
    assert client.get(PROBE_URL).json()["tenant"] == "acme"

    with CaptureQueriesContext(connection) as warm:
        response = client.get(PROBE_URL)
    assert response.json()["tenant"] == "acme"
    statements = _sql(warm)
    assert _resolution_sql(statements) == []
    assert not any('"tenants_membership"' in sql for sql in statements), statements


def test_last_used_at_is_written_at_most_once_per_interval(acme, settings):
    _, api_key, secret = acme
    assert api_key.last_used_at is None
    clients = [key_client(secret) for _ in range(3)]  # as if from different processes

    with CaptureQueriesContext(connection) as captured:
        for client in clients * 2:
            assert client.get(TENANT_URL).status_code == 200
    writes = [sql for sql in _sql(captured) if sql.startswith("UPDATE") and "last_used_at" in sql]
    assert len(writes) == 1, writes
    first_use = ApiKey.all_tenants.get(pk=api_key.pk).last_used_at
    assert first_use is not None

    touched = f"{resolution._NS}:touched:{api_key.pk}"
    store = global_cache()
    assert store.get(touched) is not None
    if hasattr(store, "ttl"):  # django-redis: the marker lives for the interval
        assert 0 < store.ttl(touched) <= settings.API_KEY_LAST_USED_INTERVAL_SECONDS

    # the marker gone (the interval over elsewhere): this process still waits out its own interval
    store.delete(touched)
    assert clients[0].get(TENANT_URL).status_code == 200
    assert ApiKey.all_tenants.get(pk=api_key.pk).last_used_at == first_use

    # a process whose interval is over too (here: one that starts now) writes again
    resolution.clear_process_memory()
    assert clients[0].get(TENANT_URL).status_code == 200
    assert ApiKey.all_tenants.get(pk=api_key.pk).last_used_at > first_use


# --- Changes take effect on the next request although the cache is warm ----------------------


def test_revoking_a_key_takes_effect_on_the_next_request(acme, django_capture_on_commit_callbacks):
    _, api_key, secret = acme
    client = key_client(secret)
    assert client.get(TENANT_URL).status_code == 200
    assert global_cache().get(resolution.api_key_cache_key(api_key.prefix)) is not None  # warm

    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(api_key=api_key)

    response = client.get(TENANT_URL)
    assert response.status_code == 401
    assert _code(response) == "api_key_revoked"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_cached_key_of_a_deleted_tenant_is_refused_not_a_500(acme):
    """The key's cache entry may outlive its tenant's (they expire apart): answer 401."""
    tenant, api_key, secret = acme
    client = key_client(secret)
    assert client.get(TENANT_URL).status_code == 200
    tenant_id = tenant.pk
    tenant.delete()  # in the test transaction: the on-commit cache drops do not run
    global_cache().delete(resolution.tenant_cache_key(tenant_id))
    assert global_cache().get(
        resolution.api_key_cache_key(api_key.prefix)
    )  # the key is still cached

    response = client.get(TENANT_URL)
    assert response.status_code == 401
    assert _code(response) == "invalid_api_key"


def test_suspending_a_tenant_takes_effect_on_the_next_request(
    acme, django_capture_on_commit_callbacks
):
    tenant, _, secret = acme
    client = key_client(secret)
    assert client.get(TENANT_URL).status_code == 200
    assert global_cache().get(resolution.tenant_cache_key(tenant.pk)) is not None  # warm

    with django_capture_on_commit_callbacks(execute=True):
        services.tenant_set_status(tenant=tenant, status=Tenant.Status.SUSPENDED)
    response = client.get(TENANT_URL)
    assert response.status_code == 403
    assert _code(response) == "tenant_suspended"

    with django_capture_on_commit_callbacks(execute=True):
        services.tenant_set_status(tenant=tenant, status=Tenant.Status.CLOSED)
    assert _code(client.get(TENANT_URL)) == "tenant_closed"

    with django_capture_on_commit_callbacks(execute=True):
        services.tenant_set_status(tenant=tenant, status=Tenant.Status.ACTIVE)
    assert client.get(TENANT_URL).status_code == 200


def test_changing_the_plan_takes_effect_on_the_next_request(
    acme, django_capture_on_commit_callbacks
):
    tenant, _, secret = acme
    client = key_client(secret)
    before = client.get(TENANT_URL).json()
    assert before["plan"]["code"] == "pro"
    other = plan("starter")
    assert other.max_members != tenant.plan.max_members

    with django_capture_on_commit_callbacks(execute=True):
        tenant.plan = other
        tenant.save()

    after = client.get(TENANT_URL).json()
    assert after["plan"]["code"] == "starter"
    assert after["limits"]["max_members"] == other.max_members
    assert after["limits"]["max_api_keys"] == other.max_api_keys


def test_changing_a_plans_limits_takes_effect_on_the_next_request(
    django_capture_on_commit_callbacks,
):
    custom = Plan.objects.create(code="res-custom", name="Custom", max_members=4, max_api_keys=3)
    tenant = TenantFactory(plan=custom)
    _, secret = issue_key(tenant)
    client = key_client(secret)
    assert client.get(TENANT_URL).json()["limits"]["max_members"] == 4
    assert global_cache().get(resolution.plan_cache_key(custom.pk)) is not None  # warm

    with django_capture_on_commit_callbacks(execute=True):
        custom.max_members = 7
        custom.name = "Custom plus"
        custom.save()
    answer = client.get(TENANT_URL).json()
    assert answer["limits"]["max_members"] == 7
    assert answer["plan"]["name"] == "Custom plus"

    with django_capture_on_commit_callbacks(execute=True):
        tenant.limit_overrides = {"max_members": 11}
        tenant.save()
    assert client.get(TENANT_URL).json()["limits"]["max_members"] == 11


@probe_urls
def test_removing_a_member_takes_effect_on_the_next_request(
    acme, django_capture_on_commit_callbacks
):
    tenant, _, _ = acme
    user = UserFactory()
    membership = MembershipFactory(tenant=tenant, user=user)
    client = Client(HTTP_X_TENANT="acme")
    client.force_login(user)
    assert client.get(PROBE_URL).json()["tenant"] == "acme"

    with django_capture_on_commit_callbacks(execute=True):
        services.membership_remove(membership=membership)
    response = client.get(PROBE_URL)
    assert response.status_code == 403
    assert _code(response) == "tenant_access_denied"


# --- Keys -----------------------------------------------------------------------------------


def test_an_expired_key_is_refused(acme):
    tenant, _, _ = acme
    issued = services.api_key_create(
        tenant=tenant, name="old", expires_at=timezone.now() - timedelta(minutes=1)
    )
    response = key_client(issued.secret).get(TENANT_URL)
    assert response.status_code == 401
    assert _code(response) == "api_key_expired"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_key_that_expires_later_works(acme):
    tenant, _, _ = acme
    issued = services.api_key_create(
        tenant=tenant, name="new", expires_at=timezone.now() + timedelta(days=1)
    )
    assert key_client(issued.secret).get(TENANT_URL).status_code == 200


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda secret: "not-a-key", id="garbage"),
        pytest.param(lambda secret: "ils_abc_def", id="short"),
        pytest.param(lambda secret: secret + "x", id="too-long"),
        pytest.param(lambda secret: "ils_" + "0" * 12 + "_" + "A" * 43, id="unknown-prefix"),
        pytest.param(lambda secret: secret[:-4] + "AAAA", id="known-prefix-wrong-secret"),
        pytest.param(lambda secret: "", id="empty"),
    ],
)
def test_malformed_and_unknown_keys_are_refused(acme, make_token):
    _, _, secret = acme
    token = make_token(secret)
    assert token != secret
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.get(TENANT_URL)
    assert response.status_code == 401, response.content
    assert _code(response) == "invalid_api_key"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_key_naming_another_tenant_is_refused(acme):
    _, _, secret = acme
    TenantFactory(slug="globex")
    client = key_client(secret)
    response = client.get(TENANT_URL, HTTP_X_TENANT="globex")
    assert response.status_code == 403
    assert _code(response) == "tenant_mismatch"
    response = client.get(TENANT_URL, HTTP_HOST="globex.localhost")
    assert response.status_code == 403
    assert _code(response) == "tenant_mismatch"
    # naming its own tenant is fine
    assert client.get(TENANT_URL, HTTP_X_TENANT="acme").json()["slug"] == "acme"
    assert client.get(TENANT_URL, HTTP_HOST="acme.localhost").json()["slug"] == "acme"


@pytest.mark.parametrize("host", ["www.localhost", "api.localhost", "localhost", "127.0.0.1"])
def test_platform_hosts_are_not_tenant_subdomains(acme, host):
    _, _, secret = acme
    response = key_client(secret).get(TENANT_URL, HTTP_HOST=host)
    assert response.status_code == 200, response.content
    assert response.json()["slug"] == "acme"


# --- Signed-in users: X-Tenant and subdomains -----------------------------------------------


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_member_names_the_tenant_with_x_tenant(acme):
    tenant, _, _ = acme
    member = Membership.all_tenants.get(tenant=tenant).user
    response = _signed_in(member).get(TENANT_URL, HTTP_X_TENANT="acme")
    assert response.status_code == 200, response.content
    assert response.json()["slug"] == "acme"


def test_x_tenant_naming_an_unknown_tenant_is_404(acme):
    member = Membership.all_tenants.get(tenant=acme[0]).user
    response = _signed_in(member).get(TENANT_URL, HTTP_X_TENANT="no-such-tenant")
    assert response.status_code == 404
    assert _code(response) == "tenant_not_found"


def test_a_non_member_naming_a_tenant_is_refused(acme):
    outsider = UserFactory()
    MembershipFactory(user=outsider)  # a member of some other tenant
    response = _signed_in(outsider).get(TENANT_URL, HTTP_X_TENANT="acme")
    assert response.status_code == 403
    assert _code(response) == "tenant_access_denied"
    assert b"Acme" not in response.content


def test_staff_may_name_any_tenant(acme):
    staff = UserFactory(is_staff=True)
    response = _signed_in(staff).get(TENANT_URL, HTTP_X_TENANT="acme")
    assert response.status_code == 200, response.content
    assert response.json()["slug"] == "acme"


def test_subdomain_resolution_for_a_member(acme):
    member = Membership.all_tenants.get(tenant=acme[0]).user
    response = _signed_in(member).get(TENANT_URL, HTTP_HOST="acme.localhost")
    assert response.status_code == 200, response.content
    assert response.json()["slug"] == "acme"


def test_subdomain_resolution_refuses_a_non_member(acme):
    response = _signed_in(UserFactory()).get(TENANT_URL, HTTP_HOST="acme.localhost")
    assert response.status_code == 403
    assert _code(response) == "tenant_access_denied"


def test_subdomain_of_an_unknown_tenant_is_404(acme):
    member = Membership.all_tenants.get(tenant=acme[0]).user
    response = _signed_in(member).get(TENANT_URL, HTTP_HOST="nobody.localhost")
    assert response.status_code == 404
    assert _code(response) == "tenant_not_found"


def test_subdomain_wins_over_x_tenant(acme):
    """The subdomain is checked first: a member of acme cannot reach globex with X-Tenant."""
    TenantFactory(slug="globex")
    member = Membership.all_tenants.get(tenant=acme[0]).user
    response = _signed_in(member).get(
        TENANT_URL, HTTP_HOST="acme.localhost", HTTP_X_TENANT="globex"
    )
    assert response.status_code == 200
    assert response.json()["slug"] == "acme"


@probe_urls
def test_a_request_without_credentials_runs_unscoped(acme):
    response = Client().get(PROBE_URL)
    assert response.json() == {"tenant": None, "plan": None, "limits": None}
    assert current_tenant() is None
