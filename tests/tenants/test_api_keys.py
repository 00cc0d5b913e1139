"""``/api/v1/api-keys/``: issuing (the secret shown once), listing, revoking, scopes and limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.keys import hash_key
from tenants.models import ApiKey, Membership, Tenant
from tests.assertions import assert_error
from tests.factories import MembershipFactory, TenantFactory, issue_key, key_client, plan

pytestmark = pytest.mark.django_db

URL = "/api/v1/api-keys/"
PUBLIC_FIELDS = {
    "id",
    "requests_per_minute",
    "name",
    "prefix",
    "scopes",
    "created_at",
    "last_used_at",
    "expires_at",
    "revoked",
    "revoked_at",
}


@pytest.fixture
def tenant() -> Tenant:
    return TenantFactory(slug="acme", plan=plan("pro"))


@pytest.fixture
def writer_key(tenant) -> tuple[ApiKey, str]:
    return issue_key(tenant, name="admin key")


@pytest.fixture
def writer(writer_key) -> APIClient:
    return key_client(writer_key[1])


def test_create_returns_the_secret_once_with_default_scopes(tenant, writer):
    response = writer.post(URL, {"name": "CI deploys"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == PUBLIC_FIELDS | {"key"}
    assert body["name"] == "CI deploys"
    assert body["scopes"] == ["read", "write"]
    assert body["revoked"] is False
    assert body["expires_at"] is None
    assert body["key"].startswith(f"ils_{body['prefix']}_")
    stored = ApiKey.all_tenants.get(pk=body["id"])
    assert stored.tenant_id == tenant.pk
    assert stored.secret_hash == hash_key(body["key"])
    assert body["key"] not in (stored.secret_hash, stored.prefix)
    assert stored.secret_hash not in response.content.decode()


def test_the_new_key_authenticates_requests_for_its_tenant(tenant, writer):
    secret = writer.post(URL, {"name": "new"}, format="json").json()["key"]

    response = key_client(secret).get("/api/v1/tenant/")

    assert response.status_code == 200, response.content
    assert response.json()["slug"] == "acme"


def test_the_secret_is_never_shown_again(writer):
    created = writer.post(URL, {"name": "new"}, format="json").json()
    stored_hash = ApiKey.all_tenants.get(pk=created["id"]).secret_hash

    answers = [writer.get(f"{URL}{created['id']}/"), writer.get(URL)]

    assert answers[0].status_code == 200
    assert set(answers[0].json()) == PUBLIC_FIELDS
    assert all(set(row) == PUBLIC_FIELDS for row in answers[1].json()["results"])
    for answer in answers:
        text = answer.content.decode()
        assert created["key"] not in text
        assert stored_hash not in text
        assert "secret" not in text


def test_list_and_retrieve_show_the_tenants_keys_only(tenant, writer_key, writer):
    other, _ = issue_key(tenant, name="reporting", scopes=["read"])
    foreign, _ = issue_key(TenantFactory(), name="foreign")

    listed = writer.get(URL)

    assert listed.status_code == 200, listed.content
    body = listed.json()
    assert set(body) == {"results", "next", "previous"}
    assert [(row["id"], row["name"]) for row in body["results"]] == [
        (other.pk, "reporting"),
        (writer_key[0].pk, "admin key"),
    ]
    retrieved = writer.get(f"{URL}{other.pk}/").json()
    assert (retrieved["name"], retrieved["scopes"], retrieved["prefix"]) == (
        "reporting",
        ["read"],
        other.prefix,
    )
    assert_error(writer.get(f"{URL}{foreign.pk}/"), 404, "not_found")
    assert_error(writer.post(f"{URL}{foreign.pk}/revoke/"), 404, "not_found")
    foreign.refresh_from_db()
    assert foreign.revoked_at is None


def test_a_non_integer_pk_is_a_json_404(writer):
    assert_error(writer.get(f"{URL}abc/"), 404, "not_found")
    assert_error(writer.post(f"{URL}abc/revoke/"), 404, "not_found")


def test_revoke_answers_the_revoked_key_and_the_key_stops_working(
    tenant, writer, django_capture_on_commit_callbacks
):
    victim, victim_secret = issue_key(tenant, name="leaked")
    victim_client = key_client(victim_secret)
    assert victim_client.get("/api/v1/tenant/").status_code == 200  # resolution now cached

    with django_capture_on_commit_callbacks(execute=True):
        response = writer.post(f"{URL}{victim.pk}/revoke/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == victim.pk
    assert body["revoked"] is True
    assert body["revoked_at"] is not None
    victim.refresh_from_db()
    assert victim.revoked_at is not None
    refused = victim_client.get("/api/v1/tenant/")
    assert_error(refused, 401, "api_key_revoked")
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert writer.get("/api/v1/tenant/").status_code == 200


def test_revoking_twice_keeps_the_first_revocation_time(tenant, writer):
    victim, _ = issue_key(tenant, name="leaked")
    first = writer.post(f"{URL}{victim.pk}/revoke/").json()["revoked_at"]

    again = writer.post(f"{URL}{victim.pk}/revoke/")

    assert again.status_code == 200
    assert again.json()["revoked_at"] == first


def test_a_read_only_key_cannot_create_or_revoke_keys(tenant, writer_key):
    reader = key_client(issue_key(tenant, scopes=[ApiKey.Scope.READ])[1])

    assert reader.get(URL).status_code == 200
    assert_error(reader.post(URL, {"name": "mine"}, format="json"), 403, "permission_denied")
    assert_error(reader.post(f"{URL}{writer_key[0].pk}/revoke/"), 403, "permission_denied")
    assert ApiKey.all_tenants.filter(tenant=tenant).count() == 2
    writer_key[0].refresh_from_db()
    assert writer_key[0].revoked_at is None


def test_a_key_with_explicit_scopes_and_lifetime(writer):
    before = timezone.now()

    response = writer.post(
        URL, {"name": "reporting", "scopes": ["read", "read"], "expires_in_days": 30}, format="json"
    )

    assert response.status_code == 201, response.content
    stored = ApiKey.all_tenants.get(pk=response.json()["id"])
    assert stored.scopes == ["read"]
    assert before + timedelta(days=30) <= stored.expires_at <= timezone.now() + timedelta(days=30)
    assert response.json()["expires_at"] is not None
    secret = response.json()["key"]
    assert key_client(secret).get(URL).status_code == 200
    assert_error(
        key_client(secret).post(URL, {"name": "x"}, format="json"), 403, "permission_denied"
    )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": -1}, "expires_in_days"),
        ({"expires_in_days": 3651}, "expires_in_days"),
        ({"expires_in_days": "²"}, "expires_in_days"),
        # a moment is refused, not ignored: ignoring it would make a key that never expires
        ({"expires_at": "2999-01-01T00:00:00Z"}, "expires_at"),
    ],
)
def test_a_bad_lifetime_is_invalid(tenant, writer, payload, field):
    response = writer.post(URL, {"name": "old", **payload}, format="json")

    error = assert_error(response, 400, "invalid")
    assert list(error["details"]) == [field]
    assert not ApiKey.all_tenants.filter(tenant=tenant, name="old").exists()


@pytest.mark.parametrize("scopes", [["admin"], ["read", "delete"], [], "read"])
def test_invalid_scopes_are_invalid(tenant, writer, scopes):
    response = writer.post(URL, {"name": "bad", "scopes": scopes}, format="json")

    error = assert_error(response, 400, "invalid")
    assert "scopes" in error["details"]
    assert not ApiKey.all_tenants.filter(tenant=tenant, name="bad").exists()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"name": ""},
        {"name": " "},
        {"name": "x" * 101},
        {"name": "ci "},
        {"name": "two\nlines"},
        {"name": 7},
        {"name": False},
    ],
)
def test_a_name_is_required_as_one_line_of_text(writer, payload):
    error = assert_error(writer.post(URL, payload, format="json"), 400, "invalid")
    assert "name" in error["details"]


def test_the_plans_key_limit_counts_active_keys():
    free = TenantFactory(plan=plan("free"))
    _, secret = issue_key(free)
    client = key_client(secret)

    assert client.post(URL, {"name": "second"}, format="json").status_code == 201
    response = client.post(URL, {"name": "third"}, format="json")

    error = assert_error(response, 403, "quota_exceeded")
    assert error["details"] == {"resource": "max_api_keys", "limit": 2, "used": 2, "requested": 1}
    assert ApiKey.all_tenants.filter(tenant=free).count() == 2

    second = ApiKey.all_tenants.get(tenant=free, name="second")
    assert client.post(f"{URL}{second.pk}/revoke/").status_code == 200
    assert client.post(URL, {"name": "third"}, format="json").status_code == 201


def test_a_key_created_by_a_signed_in_owner_records_its_creator(tenant):
    owner = MembershipFactory(tenant=tenant, role=Membership.Role.OWNER)
    client = APIClient()
    client.force_login(owner.user)

    response = client.post(URL, {"name": "mine"}, format="json", HTTP_X_TENANT="acme")

    assert response.status_code == 201, response.content
    stored = ApiKey.all_tenants.get(pk=response.json()["id"])
    assert stored.created_by_id == owner.user_id
    assert stored.tenant_id == tenant.pk


def test_a_key_created_with_a_key_has_no_creator(writer):
    response = writer.post(URL, {"name": "machine"}, format="json")

    assert response.status_code == 201, response.content
    assert ApiKey.all_tenants.get(pk=response.json()["id"]).created_by_id is None


def test_a_signed_in_plain_member_cannot_create_keys(tenant):
    member = MembershipFactory(tenant=tenant, role=Membership.Role.MEMBER)
    client = APIClient()
    client.force_login(member.user)

    response = client.post(URL, {"name": "mine"}, format="json", HTTP_X_TENANT="acme")

    assert_error(response, 403, "permission_denied")
    assert not ApiKey.all_tenants.filter(tenant=tenant).exists()


def test_a_key_may_be_created_with_its_own_rate_limit(writer):
    response = writer.post(URL, {"name": "batch", "requests_per_minute": 30}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["requests_per_minute"] == 30
    assert ApiKey.all_tenants.get(pk=response.json()["id"]).requests_per_minute == 30
    limited = key_client(response.json()["key"]).get("/api/v1/tenant/")
    assert limited["RateLimit-Limit"] == "30"


@pytest.mark.parametrize("value", [-1, "lots", 10_000_001, 1.5])
def test_a_bad_key_rate_limit_is_invalid(writer, value):
    before = ApiKey.all_tenants.count()

    response = writer.post(URL, {"name": "batch", "requests_per_minute": value}, format="json")

    error = assert_error(response, 400, "invalid")
    assert "requests_per_minute" in error["details"]
    assert ApiKey.all_tenants.count() == before
