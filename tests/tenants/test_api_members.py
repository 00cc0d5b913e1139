"""``/api/v1/members/``: who may list, add, change and remove members, and the rules they keep."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tenants.models import ApiKey, Membership, Tenant
from tests.assertions import assert_error
from tests.factories import (
    MembershipFactory,
    TenantFactory,
    UserFactory,
    issue_key,
    key_client,
    plan,
)

pytestmark = pytest.mark.django_db

URL = "/api/v1/members/"
OWNER, ADMIN, MEMBER = Membership.Role.OWNER, Membership.Role.ADMIN, Membership.Role.MEMBER


def detail_url(membership: Membership) -> str:
    return f"{URL}{membership.pk}/"


def members_of(tenant: Tenant) -> dict[str, str]:
    """``{username: role}`` of the tenant's members, read from the database."""
    return dict(Membership.all_tenants.filter(tenant=tenant).values_list("user__username", "role"))


def signed_in(membership: Membership) -> APIClient:
    """A client signed in as the member's user that names the member's tenant in X-Tenant."""
    client = APIClient()
    client.force_login(membership.user)
    client.credentials(HTTP_X_TENANT=membership.tenant.slug)
    return client


@pytest.fixture
def tenant() -> Tenant:
    return TenantFactory(slug="acme", plan=plan("pro"))


@pytest.fixture
def owner(tenant) -> Membership:
    return MembershipFactory(tenant=tenant, role=OWNER, user__username="olivia")


@pytest.fixture
def admin(tenant) -> Membership:
    return MembershipFactory(tenant=tenant, role=ADMIN, user__username="adam")


@pytest.fixture
def member(tenant) -> Membership:
    return MembershipFactory(tenant=tenant, role=MEMBER, user__username="mia")


@pytest.fixture
def writer(tenant) -> APIClient:
    return key_client(issue_key(tenant)[1])


# --- Reading ------------------------------------------------------------------------------------


def test_list_is_paginated_and_shows_only_the_tenants_members(tenant, owner, member, writer):
    MembershipFactory(tenant=TenantFactory(), user__username="outsider")

    response = writer.get(URL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"results", "next", "previous"}
    assert body["next"] is None and body["previous"] is None
    assert [row["username"] for row in body["results"]] == ["mia", "olivia"]
    assert body["results"][0] == {
        "id": member.pk,
        "email": "mia@example.com",
        "username": "mia",
        "role": "member",
        "created_at": body["results"][0]["created_at"],
    }


def test_retrieve_one_member(owner, member, writer):
    response = writer.get(detail_url(member))

    assert response.status_code == 200, response.content
    assert response.json()["id"] == member.pk
    assert response.json()["email"] == "mia@example.com"
    assert response.json()["role"] == "member"


def test_another_tenants_member_is_not_found(writer):
    stranger = MembershipFactory(tenant=TenantFactory())

    assert_error(writer.get(detail_url(stranger)), 404, "not_found")
    assert_error(writer.delete(detail_url(stranger)), 404, "not_found")
    assert Membership.all_tenants.filter(pk=stranger.pk).exists()


@pytest.mark.parametrize("pk", ["abc", "1.5", "-1", "9" * 19])
def test_a_non_integer_pk_is_a_json_404(writer, pk):
    assert_error(writer.get(f"{URL}{pk}/"), 404, "not_found")


def test_a_missing_integer_pk_is_a_json_404(writer):
    assert_error(writer.get(f"{URL}999999/"), 404, "not_found")


def test_a_plain_member_signed_in_can_list(member, owner):
    response = signed_in(member).get(URL)

    assert response.status_code == 200, response.content
    assert {row["username"] for row in response.json()["results"]} == {"mia", "olivia"}


def test_a_read_only_key_can_list_but_not_write(tenant, member):
    reader = key_client(issue_key(tenant, scopes=[ApiKey.Scope.READ])[1])
    UserFactory(username="newbie")

    assert reader.get(URL).status_code == 200
    assert_error(
        reader.post(URL, {"email": "newbie@example.com"}, format="json"), 403, "permission_denied"
    )
    assert_error(
        reader.patch(detail_url(member), {"role": ADMIN}, format="json"), 403, "permission_denied"
    )
    assert_error(reader.delete(detail_url(member)), 403, "permission_denied")
    assert members_of(tenant) == {"mia": MEMBER}


def test_a_signed_in_user_of_another_tenant_is_denied(tenant, member):
    outsider = MembershipFactory(tenant=TenantFactory(), role=OWNER)
    client = APIClient()
    client.force_login(outsider.user)

    response = client.get(URL, HTTP_X_TENANT=tenant.slug)

    assert_error(response, 403, "tenant_access_denied")


# --- Adding -------------------------------------------------------------------------------------


def test_a_write_key_adds_an_existing_user_by_email_case_insensitively(tenant, writer):
    user = UserFactory(username="alice", email="Alice@Example.com")

    response = writer.post(URL, {"email": "  ALICE@example.COM "}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["email"] == "Alice@Example.com"
    assert body["role"] == "member"
    created = Membership.all_tenants.get(pk=body["id"])
    assert (created.tenant_id, created.user_id, created.role) == (tenant.pk, user.pk, MEMBER)


def test_adding_with_a_role(tenant, writer):
    UserFactory(username="ann")

    response = writer.post(URL, {"email": "ann@example.com", "role": "admin"}, format="json")

    assert response.status_code == 201, response.content
    assert members_of(tenant) == {"ann": ADMIN}


def test_adding_an_unknown_email_is_invalid_with_details(tenant, writer):
    response = writer.post(URL, {"email": "nobody@example.com"}, format="json")

    error = assert_error(response, 400, "user_not_found")
    assert error["details"]["email"]
    assert members_of(tenant) == {}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@b.co", "role": "god"}, "role"),
    ],
)
def test_adding_with_invalid_fields_is_invalid(writer, payload, field):
    error = assert_error(writer.post(URL, payload, format="json"), 400, "invalid")
    assert field in error["details"]


def test_adding_an_existing_member_is_a_conflict(tenant, member, writer):
    response = writer.post(URL, {"email": "MIA@example.com"}, format="json")

    assert_error(response, 409, "already_member")
    assert members_of(tenant) == {"mia": MEMBER}


def test_the_plans_member_limit_is_enforced(writer):
    free = TenantFactory(plan=plan("free"))
    for _ in range(3):
        MembershipFactory(tenant=free)
    client = key_client(issue_key(free)[1])
    UserFactory(username="fourth")

    response = client.post(URL, {"email": "fourth@example.com"}, format="json")

    error = assert_error(response, 403, "quota_exceeded")
    assert error["details"] == {"resource": "max_members", "limit": 3, "used": 3, "requested": 1}
    assert Membership.all_tenants.filter(tenant=free).count() == 3


def test_a_limit_override_raises_the_member_limit():
    free = TenantFactory(plan=plan("free"), limit_overrides={"max_members": 4})
    for _ in range(3):
        MembershipFactory(tenant=free)
    client = key_client(issue_key(free)[1])
    UserFactory(username="fourth")
    UserFactory(username="fifth")

    assert client.post(URL, {"email": "fourth@example.com"}, format="json").status_code == 201
    error = assert_error(
        client.post(URL, {"email": "fifth@example.com"}, format="json"), 403, "quota_exceeded"
    )
    assert error["details"]["limit"] == 4


@pytest.mark.parametrize("role", [OWNER, ADMIN])
def test_a_signed_in_owner_or_admin_can_add(tenant, owner, admin, role):
    manager = owner if role == OWNER else admin
    UserFactory(username="newbie")

    response = signed_in(manager).post(URL, {"email": "newbie@example.com"}, format="json")

    assert response.status_code == 201, response.content
    assert members_of(tenant)["newbie"] == MEMBER


def test_a_signed_in_plain_member_cannot_write(tenant, owner, member):
    UserFactory(username="newbie")
    client = signed_in(member)

    assert_error(
        client.post(URL, {"email": "newbie@example.com"}, format="json"), 403, "permission_denied"
    )
    assert_error(
        client.patch(detail_url(owner), {"role": MEMBER}, format="json"), 403, "permission_denied"
    )
    assert_error(client.delete(detail_url(owner)), 403, "permission_denied")
    assert members_of(tenant) == {"olivia": OWNER, "mia": MEMBER}


def test_anonymous_callers_cannot_add(tenant):
    UserFactory(username="newbie")
    client = APIClient()

    response = client.post(
        URL, {"email": "newbie@example.com"}, HTTP_X_TENANT=tenant.slug, format="json"
    )

    assert_error(response, 401, "not_authenticated")
    assert members_of(tenant) == {}


# --- The owner role -----------------------------------------------------------------------------


def test_only_an_owner_may_grant_the_owner_role_when_adding(tenant, owner, admin, writer):
    UserFactory(username="newbie")
    payload = {"email": "newbie@example.com", "role": OWNER}

    assert_error(signed_in(admin).post(URL, payload, format="json"), 403, "permission_denied")
    assert_error(writer.post(URL, payload, format="json"), 403, "permission_denied")
    assert "newbie" not in members_of(tenant)

    response = signed_in(owner).post(URL, payload, format="json")
    assert response.status_code == 201, response.content
    assert members_of(tenant)["newbie"] == OWNER


def test_only_an_owner_may_promote_to_owner(tenant, owner, admin, member, writer):
    assert_error(
        signed_in(admin).patch(detail_url(member), {"role": OWNER}, format="json"),
        403,
        "permission_denied",
    )
    assert_error(
        writer.patch(detail_url(member), {"role": OWNER}, format="json"), 403, "permission_denied"
    )
    assert members_of(tenant)["mia"] == MEMBER

    response = signed_in(owner).patch(detail_url(member), {"role": OWNER}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["role"] == OWNER
    assert members_of(tenant)["mia"] == OWNER


def test_only_an_owner_may_demote_or_remove_an_owner(tenant, owner, admin, writer):
    second = MembershipFactory(tenant=tenant, role=OWNER, user__username="oscar")

    for client in (signed_in(admin), writer):
        assert_error(
            client.patch(detail_url(second), {"role": MEMBER}, format="json"),
            403,
            "permission_denied",
        )
        assert_error(client.delete(detail_url(second)), 403, "permission_denied")
    assert members_of(tenant)["oscar"] == OWNER

    response = signed_in(owner).patch(detail_url(second), {"role": ADMIN}, format="json")
    assert response.status_code == 200, response.content
    assert members_of(tenant)["oscar"] == ADMIN


def test_admins_and_write_keys_change_and_remove_non_owners(tenant, owner, admin, member, writer):
    response = signed_in(admin).patch(detail_url(member), {"role": ADMIN}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["role"] == ADMIN
    assert members_of(tenant)["mia"] == ADMIN

    response = writer.patch(detail_url(member), {"role": MEMBER}, format="json")
    assert response.status_code == 200, response.content
    assert members_of(tenant)["mia"] == MEMBER

    response = writer.delete(detail_url(member))
    assert response.status_code == 204
    assert response.content == b""
    assert "mia" not in members_of(tenant)


def test_changing_to_an_unknown_role_is_invalid(member, writer):
    error = assert_error(
        writer.patch(detail_url(member), {"role": "god"}, format="json"), 400, "invalid"
    )
    assert "role" in error["details"]


def test_an_owner_removes_another_owner(tenant, owner):
    second = MembershipFactory(tenant=tenant, role=OWNER, user__username="oscar")

    response = signed_in(owner).delete(detail_url(second))

    assert response.status_code == 204
    assert members_of(tenant) == {"olivia": OWNER}


def test_the_last_owner_cannot_be_demoted(tenant, owner, member):
    response = signed_in(owner).patch(detail_url(owner), {"role": ADMIN}, format="json")

    assert_error(response, 409, "last_owner")
    assert members_of(tenant)["olivia"] == OWNER


def test_the_last_owner_cannot_be_removed(tenant, owner, member):
    response = signed_in(owner).delete(detail_url(owner))

    assert_error(response, 409, "last_owner")
    assert members_of(tenant)["olivia"] == OWNER


def test_an_owner_may_step_down_while_another_owner_remains(tenant, owner):
    MembershipFactory(tenant=tenant, role=OWNER, user__username="oscar")

    response = signed_in(owner).patch(detail_url(owner), {"role": MEMBER}, format="json")

    assert response.status_code == 200, response.content
    assert members_of(tenant) == {"olivia": MEMBER, "oscar": OWNER}
