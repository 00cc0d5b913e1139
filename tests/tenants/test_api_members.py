"""``/api/v1/members/``: who may list, change and remove members, and the rules they keep.

Members are added by invitation: tests/tenants/test_api_invitations.py.
"""

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

    assert reader.get(URL).status_code == 200
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


def test_members_are_not_added_here_but_invited(writer):
    """POST is not offered: adding by email would tell a caller which emails have accounts."""
    UserFactory(username="newbie")

    response = writer.post(URL, {"email": "newbie@example.com"}, format="json")

    assert_error(response, 405, "method_not_allowed")
    assert "POST" not in response["Allow"]


# --- The owner role -----------------------------------------------------------------------------


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


def test_patch_with_nothing_to_change_changes_nothing(tenant, owner, writer):
    """PATCH is partial: ``{}`` is no change (and needs no owner, even on an owner's row)."""
    response = writer.patch(detail_url(owner), {}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["role"] == OWNER
    assert members_of(tenant) == {"olivia": OWNER}
