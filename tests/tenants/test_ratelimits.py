"""Per-tenant rate limits on ``/api/v1/`` (``tenants/limits/ratelimits.py``, docs/RATELIMITS.md).

The clock django-ratelimit reads is pinned, so a window never ends in the middle of a test and the
window end (``Retry-After``, ``RateLimit-Reset``) is known exactly; moving it on starts a new window.
"""

from __future__ import annotations

import pytest

from tenants.limits import api_calls
from tenants.limits.ratelimits import group_for, group_limit
from tenants.models import Tenant
from tests.assertions import assert_error
from tests.factories import TenantFactory, issue_key, key_client, plan

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

URL = "/api/v1/tenant/"
NOW = 1_800_000_000.0


@pytest.fixture
def clock(ratelimit_clock):
    return ratelimit_clock


def _tenant(django_capture_on_commit_callbacks, **overrides) -> Tenant:
    with django_capture_on_commit_callbacks(execute=True):
        return TenantFactory(plan=plan("free"), limit_overrides=overrides)


def _client(tenant: Tenant, scopes=None):
    _, secret = issue_key(tenant, scopes=scopes)
    return key_client(secret)


def _save(tenant: Tenant, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        tenant.save()


def _allowed(client, count: int, method: str = "get", **kwargs) -> list:
    responses = [getattr(client, method)(URL, **kwargs) for _ in range(count)]
    assert [r.status_code for r in responses] == [200] * count, responses[-1].content
    return responses


def test_a_tenant_gets_its_limit_then_429_with_retry_after_and_ratelimit_headers(
    clock, django_capture_on_commit_callbacks
):
    tenant = _tenant(django_capture_on_commit_callbacks, requests_per_minute=5)
    client = _client(tenant)

    responses = _allowed(client, 5)

    reset = int(responses[0]["RateLimit-Reset"])  # the window's end, seen from the pinned clock
    assert 0 <= reset <= 60
    assert [r["RateLimit-Limit"] for r in responses] == ["5"] * 5
    assert [r["RateLimit-Remaining"] for r in responses] == ["4", "3", "2", "1", "0"]
    assert {r["RateLimit-Reset"] for r in responses} == {str(reset)}
    limited = client.get(URL)
    error = assert_error(limited, 429, "rate_limited")
    assert error["message"]
    assert limited["Retry-After"] == str(max(reset, 1))
    assert limited["RateLimit-Limit"] == "5"
    assert limited["RateLimit-Remaining"] == "0"
    assert limited["RateLimit-Reset"] == str(max(reset, 1))


def test_the_next_window_starts_a_new_budget(clock, django_capture_on_commit_callbacks):
    tenant = _tenant(django_capture_on_commit_callbacks, requests_per_minute=2)
    client = _client(tenant)
    _allowed(client, 2)
    assert client.get(URL).status_code == 429

    clock.now = NOW + 60

    _allowed(client, 2)
    assert client.get(URL).status_code == 429


def test_a_higher_plan_gets_proportionally_more(clock, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        free, pro = plan("free"), plan("pro")
        free.requests_per_minute, pro.requests_per_minute = 3, 9
        free.save()
        pro.save()
        small = TenantFactory(plan=free)
        big = TenantFactory(plan=pro)
    small_client, big_client = _client(small), _client(big)

    assert _allowed(small_client, 3)[0]["RateLimit-Limit"] == "3"
    assert small_client.get(URL).status_code == 429
    assert _allowed(big_client, 9)[0]["RateLimit-Limit"] == "9"
    assert big_client.get(URL).status_code == 429


def test_two_tenants_are_independent(clock, django_capture_on_commit_callbacks):
    exhausted = _tenant(django_capture_on_commit_callbacks, requests_per_minute=2)
    other = _tenant(django_capture_on_commit_callbacks, requests_per_minute=2)
    exhausted_client, other_client = _client(exhausted), _client(other)
    _allowed(exhausted_client, 2)
    assert exhausted_client.get(URL).status_code == 429

    response = other_client.get(URL)

    assert response.status_code == 200
    assert response["RateLimit-Remaining"] == "1"
    assert exhausted_client.get(URL).status_code == 429


def test_a_raised_override_applies_at_once_without_resetting_the_window(
    clock, django_capture_on_commit_callbacks
):
    tenant = _tenant(django_capture_on_commit_callbacks, requests_per_minute=5)
    client = _client(tenant)
    _allowed(client, 5)
    assert client.get(URL).status_code == 429  # refused requests do not use up budget

    tenant.limit_overrides = {"requests_per_minute": 8}
    _save(tenant, django_capture_on_commit_callbacks)

    responses = _allowed(client, 3)  # 8 - 5: the refused request cost nothing
    # Refunds are read only once a count passes the limit (a fitting request costs one round
    # trip), so until then RateLimit-Remaining is a lower bound: here it counts the refusal.
    assert [r["RateLimit-Remaining"] for r in responses] == ["1", "0", "0"]
    assert responses[0]["RateLimit-Limit"] == "8"
    assert client.get(URL).status_code == 429


def test_a_plan_upgrade_keeps_the_count_of_the_current_window(
    clock, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        free, pro = plan("free"), plan("pro")
        free.requests_per_minute, pro.requests_per_minute = 2, 4
        free.save()
        pro.save()
        tenant = TenantFactory(plan=free)
    client = _client(tenant)
    _allowed(client, 2)
    assert client.get(URL).status_code == 429

    tenant.plan = pro
    _save(tenant, django_capture_on_commit_callbacks)

    _allowed(client, 2)
    assert client.get(URL).status_code == 429


def test_writes_have_their_own_smaller_budget(clock, django_capture_on_commit_callbacks):
    tenant = _tenant(django_capture_on_commit_callbacks, requests_per_minute=8)
    client = _client(tenant, scopes=["read", "write"])

    writes = [client.patch(URL, {"name": f"Name {n}"}, format="json") for n in range(2)]

    assert [r.status_code for r in writes] == [200, 200], writes[-1].content
    assert [r["RateLimit-Limit"] for r in writes] == ["2", "2"]
    assert [r["RateLimit-Remaining"] for r in writes] == ["1", "0"]
    assert_error(client.patch(URL, {"name": "Too many"}, format="json"), 429, "rate_limited")
    read = client.get(URL)
    assert read.status_code == 200
    assert read["RateLimit-Limit"] == "8"
    assert read["RateLimit-Remaining"] == "7"


def test_a_zero_limit_blocks_every_tenant_request(clock, django_capture_on_commit_callbacks):
    tenant = _tenant(django_capture_on_commit_callbacks, requests_per_minute=0)
    client = _client(tenant)

    assert_error(client.get(URL), 429, "rate_limited")
    assert_error(client.patch(URL, {"name": "x"}, format="json"), 429, "rate_limited")


def test_an_unlimited_tenant_is_not_limited(clock, django_capture_on_commit_callbacks):
    tenant = _tenant(django_capture_on_commit_callbacks, requests_per_minute=None)

    response = _client(tenant).get(URL)

    assert response.status_code == 200
    assert "RateLimit-Limit" not in response


@pytest.mark.parametrize("path", ["/api/schema/", "/health/ready", "/health/live"])
def test_requests_outside_the_tenant_api_carry_no_limit(
    path, clock, django_capture_on_commit_callbacks
):
    tenant = _tenant(django_capture_on_commit_callbacks, requests_per_minute=0)
    client = _client(tenant)  # the key resolves the tenant, but the path is not /api/v1/
    assert client.get(URL).status_code == 429

    response = client.get(path)

    assert response.status_code == 200, response.content
    assert "RateLimit-Limit" not in response
    assert "RateLimit-Remaining" not in response


def test_requests_without_a_tenant_carry_no_limit(clock, api_client):
    responses = [api_client.get("/api/schema/") for _ in range(3)]

    assert [r.status_code for r in responses] == [200] * 3
    assert all("RateLimit-Limit" not in r for r in responses)


def test_anonymous_requests_naming_a_tenant_spend_none_of_its_budget(
    clock, api_client, django_capture_on_commit_callbacks
):
    tenant = _tenant(django_capture_on_commit_callbacks, requests_per_minute=2)
    anonymous = [api_client.get(URL, HTTP_X_TENANT=tenant.slug) for _ in range(5)]
    assert {r.status_code for r in anonymous} <= {401, 403}
    assert all("RateLimit-Limit" not in r for r in anonymous)

    _allowed(_client(tenant), 2)  # the whole budget is still there
    assert api_calls.api_calls_used(tenant) == 2


def test_a_view_in_the_uploads_group_gets_a_tenth_with_its_own_counter(
    clock, settings, django_capture_on_commit_callbacks
):
    settings.ROOT_URLCONF = "tests.tenants.upload_urls"
    tenant = _tenant(django_capture_on_commit_callbacks, requests_per_minute=20)
    client = _client(tenant, scopes=["read", "write"])

    uploads = [client.post("/api/v1/probe-upload/", {}, format="json") for _ in range(2)]

    assert [r.status_code for r in uploads] == [201, 201]
    assert [r["RateLimit-Limit"] for r in uploads] == ["2", "2"]
    assert_error(client.post("/api/v1/probe-upload/", {}, format="json"), 429, "rate_limited")
    write = client.patch(URL, {"name": "Still allowed"}, format="json")
    assert write.status_code == 200
    assert (write["RateLimit-Limit"], write["RateLimit-Remaining"]) == ("5", "4")


def test_an_unknown_declared_group_is_an_error():
    with pytest.raises(ValueError, match="Unknown rate-limit group 'bulk'"):
        group_for("POST", "bulk")


@pytest.mark.parametrize(
    ("per_minute", "expected"),
    [
        (None, {"reads": None, "writes": None, "uploads": None}),
        (0, {"reads": 0, "writes": 0, "uploads": 0}),
        (3, {"reads": 3, "writes": 1, "uploads": 1}),
        (1200, {"reads": 1200, "writes": 300, "uploads": 120}),
    ],
)
def test_group_budgets_scale_with_the_per_minute_limit(per_minute, expected):
    assert {group: group_limit(per_minute, group) for group in expected} == expected


def test_a_key_with_its_own_limit_is_held_to_it_within_the_tenants(
    clock, django_capture_on_commit_callbacks
):
    tenant = _tenant(django_capture_on_commit_callbacks, requests_per_minute=10)
    limited_key, limited_secret = issue_key(tenant, name="batch job")
    with django_capture_on_commit_callbacks(execute=True):
        limited_key.requests_per_minute = 2
        limited_key.save()
    limited, other = key_client(limited_secret), _client(tenant)

    answers = _allowed(limited, 2)
    assert [(r["RateLimit-Limit"], r["RateLimit-Remaining"]) for r in answers] == [
        ("2", "1"),
        ("2", "0"),
    ]
    assert_error(limited.get(URL), 429, "rate_limited")

    # The refused call was refunded to the tenant: 10 - 2 accepted = 8 left before this one.
    after = other.get(URL)
    assert after.status_code == 200
    assert (after["RateLimit-Limit"], after["RateLimit-Remaining"]) == ("10", "7")


def test_the_tenants_budget_still_bounds_a_key_with_a_larger_limit(
    clock, django_capture_on_commit_callbacks
):
    tenant = _tenant(django_capture_on_commit_callbacks, requests_per_minute=3)
    key, secret = issue_key(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        key.requests_per_minute = 100
        key.save()
    client = key_client(secret)

    assert [r["RateLimit-Limit"] for r in _allowed(client, 3)] == ["3", "3", "3"]
    assert_error(client.get(URL), 429, "rate_limited")
