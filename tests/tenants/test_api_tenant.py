"""``/api/v1/tenant/``: the caller's tenant, its plan, limits and usage; renaming it."""

from __future__ import annotations

import pytest

from tenants.models import ApiKey, Tenant
from tests.assertions import assert_error
from tests.factories import MembershipFactory, TenantFactory, issue_key, key_client, plan

pytestmark = pytest.mark.django_db

URL = "/api/v1/tenant/"


@pytest.fixture
def tenant() -> Tenant:
    return TenantFactory(slug="acme", name="Acme Ltd", plan=plan("free"))


def test_get_returns_the_tenant_its_plan_limits_and_usage(tenant):
    MembershipFactory(tenant=tenant)
    MembershipFactory(tenant=tenant)
    _, secret = issue_key(tenant)
    revoked, _ = issue_key(tenant, name="old")
    revoked.revoked_at = revoked.created_at
    revoked.save()

    response = key_client(secret).get(URL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == tenant.pk
    assert body["slug"] == "acme"
    assert body["name"] == "Acme Ltd"
    assert body["status"] == "active"
    assert body["plan"] == {"code": "free", "name": tenant.plan.name}
    assert body["limits"] == tenant.plan.limits()
    assert body["limits"]["max_members"] == 3
    assert body["limits"]["max_api_keys"] == 2
    assert body["usage"] == {"members": 2, "api_keys": 1}


def test_limits_apply_the_tenants_overrides(tenant):
    tenant.limit_overrides = {"max_members": 7, "jobs_per_day": None}
    tenant.save()
    free = plan("free")
    free.jobs_per_day = 100
    free.save()
    _, secret = issue_key(tenant)

    limits = key_client(secret).get(URL).json()["limits"]

    assert limits["max_members"] == 7
    assert limits["jobs_per_day"] is None
    assert limits["max_api_keys"] == 2
    assert limits["requests_per_minute"] == free.requests_per_minute


def test_patch_with_a_write_key_renames_the_tenant(tenant, django_capture_on_commit_callbacks):
    _, secret = issue_key(tenant)
    client = key_client(secret)
    client.get(URL)  # warms the cached resolution of the tenant

    with django_capture_on_commit_callbacks(execute=True):
        response = client.patch(URL, {"name": "Acme Group"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Acme Group"
    tenant.refresh_from_db()
    assert tenant.name == "Acme Group"
    assert client.get(URL).json()["name"] == "Acme Group"


def test_patch_with_a_read_only_key_is_forbidden(tenant):
    _, secret = issue_key(tenant, scopes=[ApiKey.Scope.READ])

    response = key_client(secret).patch(URL, {"name": "Hijacked"}, format="json")

    assert_error(response, 403, "permission_denied")
    tenant.refresh_from_db()
    assert tenant.name == "Acme Ltd"


def test_patch_by_a_signed_in_plain_member_is_forbidden(tenant, api_client):
    member = MembershipFactory(tenant=tenant)
    api_client.force_login(member.user)

    response = api_client.patch(URL, {"name": "Hijacked"}, format="json", HTTP_X_TENANT="acme")

    assert_error(response, 403, "permission_denied")


def test_patch_by_a_signed_in_owner_renames_the_tenant(tenant, api_client):
    owner = MembershipFactory(tenant=tenant, role="owner")
    api_client.force_login(owner.user)

    response = api_client.patch(URL, {"name": "Owned"}, format="json", HTTP_X_TENANT="acme")

    assert response.status_code == 200, response.content
    tenant.refresh_from_db()
    assert tenant.name == "Owned"


def test_patch_with_nothing_to_change_changes_nothing(tenant):
    """PATCH is partial: ``{}`` (and unknown fields) leave the tenant as it is."""
    _, secret = issue_key(tenant)
    name = tenant.name

    response = key_client(secret).patch(URL, {"unknown": 1}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["name"] == name
    tenant.refresh_from_db()
    assert tenant.name == name


@pytest.mark.parametrize(
    "payload",
    [
        {"name": ""},
        {"name": "   "},
        {"name": " Acme"},
        {"name": "Acme\nGroup"},
        {"name": None},
        {"name": 0},
        {"name": True},
        {"name": ["Acme"]},
    ],
)
def test_patch_with_a_bad_name_is_invalid_with_details_per_field(tenant, payload):
    _, secret = issue_key(tenant)

    response = key_client(secret).patch(URL, payload, format="json")

    error = assert_error(response, 400, "invalid")
    assert set(error["details"]) == {"name"}
    assert isinstance(error["details"]["name"], list) and error["details"]["name"]
    tenant.refresh_from_db()
    assert tenant.name == "Acme Ltd"


def test_patch_with_a_too_long_name_is_invalid(tenant):
    _, secret = issue_key(tenant)

    response = key_client(secret).patch(URL, {"name": "x" * 201}, format="json")

    assert "name" in assert_error(response, 400, "invalid")["details"]


def test_patch_with_malformed_json_is_a_malformed_request(tenant):
    _, secret = issue_key(tenant)

    response = key_client(secret).patch(
        URL, data='{"name": "Broken', content_type="application/json"
    )

    assert_error(response, 400, "malformed_request")
    tenant.refresh_from_db()
    assert tenant.name == "Acme Ltd"


def test_patch_ignores_slug_status_and_plan(tenant):
    _, secret = issue_key(tenant)

    response = key_client(secret).patch(
        URL,
        {"name": "Renamed", "slug": "other", "status": "closed", "plan": "enterprise"},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["slug"], body["status"], body["plan"]["code"]) == ("acme", "active", "free")
    tenant.refresh_from_db()
    assert tenant.name == "Renamed"
    assert tenant.slug == "acme"
    assert tenant.status == Tenant.Status.ACTIVE
    assert tenant.plan.code == "free"


def test_each_key_sees_only_its_own_tenant(tenant):
    other = TenantFactory(slug="globex", name="Globex")
    _, secret = issue_key(other)

    body = key_client(secret).get(URL).json()

    assert (body["id"], body["slug"], body["name"]) == (other.pk, "globex", "Globex")
