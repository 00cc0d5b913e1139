"""``/api/v1/invitations/``: members join by invitation, and no answer is an email oracle.

The invariants under test are ``tenants.models.Invitation``'s: the create answer is the same
whether or not an account has the email; the token is shown once and stored hashed; only the
signed-in user with that email can accept, within the members quota; every failed acceptance gives
one same answer.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from tenants import services
from tenants.keys import hash_key
from tenants.models import ApiKey, Invitation, Membership, Tenant
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

URL = "/api/v1/invitations/"
ACCEPT = f"{URL}accept/"
OWNER, ADMIN, MEMBER = Membership.Role.OWNER, Membership.Role.ADMIN, Membership.Role.MEMBER
TOKEN_SHAPE = r"^ilsinv_[A-Za-z0-9_-]{43}$"


@pytest.fixture
def tenant() -> Tenant:
    return TenantFactory(slug="acme", plan=plan("pro"))


@pytest.fixture
def writer(tenant) -> APIClient:
    return key_client(issue_key(tenant)[1])


def signed_in(user, tenant: Tenant | None = None) -> APIClient:
    client = APIClient()
    client.force_login(user)
    if tenant is not None:
        client.credentials(HTTP_X_TENANT=tenant.slug)
    return client


def invite(client: APIClient, email: str, role: str | None = None):
    payload = {"email": email, **({"role": role} if role else {})}
    return client.post(URL, payload, format="json")


def members_of(tenant: Tenant) -> dict[str, str]:
    return dict(Membership.all_tenants.filter(tenant=tenant).values_list("user__username", "role"))


# --- Inviting -----------------------------------------------------------------------------------


def test_the_answer_is_the_same_whether_or_not_the_email_has_an_account(writer):
    UserFactory(username="hidden-username", email="known@example.com")

    known = invite(writer, "known@example.com")
    unknown = invite(writer, "nobody@example.com")

    assert known.status_code == unknown.status_code == 201, (known.content, unknown.content)
    varying = {"id", "email", "token", "created_at", "expires_at"}
    strip = lambda body: {k: v for k, v in body.items() if k not in varying}  # noqa: E731
    assert strip(known.json()) == strip(unknown.json())
    assert set(known.json()) == set(unknown.json())
    assert set(known.headers) == set(unknown.headers)
    assert "username" not in known.json() and "hidden-username" not in known.content.decode()


def test_an_invitation_shows_its_token_once_and_stores_only_its_hash(tenant, writer):
    response = invite(writer, "  New.Person@Example.COM ")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["email"] == "new.person@example.com"
    assert body["role"] == MEMBER and body["status"] == "pending"
    assert body["token"].startswith("ilsinv_") and len(body["token"]) == len("ilsinv_") + 43
    assert "no-store" in response["Cache-Control"]
    row = Invitation.all_tenants.get(pk=body["id"])
    assert row.tenant_id == tenant.pk
    assert row.token_hash == hash_key(body["token"])
    assert body["token"] not in str(Invitation.all_tenants.filter(pk=row.pk).values().get())
    assert "token" not in writer.get(f"{URL}{row.pk}/").json()
    assert all("token" not in item for item in writer.get(URL).json()["results"])


def test_the_invitation_expires_after_the_configured_hours(writer, settings):
    settings.INVITATION_EXPIRY_HOURS = 2
    before = timezone.now()

    body = invite(writer, "soon@example.com").json()

    expires = Invitation.all_tenants.get(pk=body["id"]).expires_at
    assert timedelta(hours=2) <= expires - before < timedelta(hours=2, minutes=1)


def test_the_sender_is_recorded_as_the_key_or_the_member(tenant, writer):
    owner = MembershipFactory(tenant=tenant, role=OWNER, user__username="olivia")
    by_key = invite(writer, "a@example.com").json()
    by_member = invite(signed_in(owner.user, tenant), "b@example.com").json()
    staff = UserFactory(username="staffer", is_staff=True)
    by_staff = invite(signed_in(staff, tenant), "c@example.com").json()

    assert (by_key["invited_by_key"], by_key["invited_by_email"]) == (
        ApiKey.all_tenants.get(tenant=tenant).pk,
        None,
    )
    assert (by_member["invited_by_key"], by_member["invited_by_email"]) == (
        None,
        "olivia@example.com",
    )
    assert (by_staff["invited_by_key"], by_staff["invited_by_email"]) == (None, None)
    assert Invitation.all_tenants.get(pk=by_staff["id"]).invited_by == staff


def test_inviting_a_current_member_is_a_conflict(tenant, writer):
    MembershipFactory(tenant=tenant, user__username="mia")

    assert_error(invite(writer, "MIA@example.com"), 409, "already_member")
    assert not Invitation.all_tenants.filter(tenant=tenant).exists()


def test_a_member_of_another_tenant_is_invited_like_anyone(tenant, writer):
    MembershipFactory(tenant=TenantFactory(), user__username="elsewhere")

    assert invite(writer, "elsewhere@example.com").status_code == 201


def test_inviting_again_replaces_the_open_invitation(tenant, writer):
    first = invite(writer, "twice@example.com").json()
    second = invite(writer, "twice@example.com").json()

    statuses = dict(Invitation.all_tenants.filter(tenant=tenant).values_list("id", "status"))
    assert statuses == {first["id"]: "revoked", second["id"]: "pending"}
    user = UserFactory(username="twice")
    client = signed_in(user)
    assert_error(
        client.post(ACCEPT, {"token": first["token"]}, format="json"), 404, "invitation_not_found"
    )
    assert client.post(ACCEPT, {"token": second["token"]}, format="json").status_code == 200


def test_open_invitations_are_capped_and_expired_ones_do_not_count(tenant, writer, settings):
    settings.INVITATIONS_MAX_OPEN = 2
    first = invite(writer, "one@example.com").json()
    invite(writer, "two@example.com")

    error = assert_error(invite(writer, "three@example.com"), 409, "too_many_open_invitations")
    assert error["details"] == {"limit": 2}

    Invitation.all_tenants.filter(pk=first["id"]).update(expires_at=timezone.now())
    assert invite(writer, "three@example.com").status_code == 201


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": ["a@b.co"]}, "email"),
        ({"email": "a@b.co", "role": "god"}, "role"),
    ],
)
def test_invalid_fields_are_invalid(writer, payload, field):
    error = assert_error(writer.post(URL, payload, format="json"), 400, "invalid")
    assert field in error["details"]


def test_who_may_invite(tenant):
    admin = MembershipFactory(tenant=tenant, role=ADMIN)
    member = MembershipFactory(tenant=tenant, role=MEMBER)
    reader = key_client(issue_key(tenant, scopes=[ApiKey.Scope.READ])[1])

    assert invite(signed_in(admin.user, tenant), "a@example.com").status_code == 201
    assert_error(invite(signed_in(member.user, tenant), "b@example.com"), 403, "permission_denied")
    assert_error(invite(reader, "c@example.com"), 403, "permission_denied")
    anonymous = APIClient()
    anonymous.credentials(HTTP_X_TENANT=tenant.slug)
    assert_error(invite(anonymous, "d@example.com"), 401, "not_authenticated")
    assert list(Invitation.all_tenants.values_list("email", flat=True)) == ["a@example.com"]


def test_only_an_owner_may_invite_an_owner(tenant, writer):
    owner = MembershipFactory(tenant=tenant, role=OWNER)
    admin = MembershipFactory(tenant=tenant, role=ADMIN)

    assert_error(
        invite(signed_in(admin.user, tenant), "x@example.com", OWNER), 403, "permission_denied"
    )
    assert_error(invite(writer, "x@example.com", OWNER), 403, "permission_denied")
    response = invite(signed_in(owner.user, tenant), "x@example.com", OWNER)

    assert response.status_code == 201, response.content
    assert response.json()["role"] == OWNER


# --- Listing and revoking -----------------------------------------------------------------------


def test_the_list_is_paginated_filtered_and_the_tenants_own(tenant, writer):
    other = key_client(issue_key(TenantFactory())[1])
    invite(other, "outsider@example.com")
    pending = invite(writer, "pending@example.com").json()
    expired = invite(writer, "expired@example.com").json()
    revoked = invite(writer, "revoked@example.com").json()
    Invitation.all_tenants.filter(pk=expired["id"]).update(expires_at=timezone.now())
    writer.post(f"{URL}{revoked['id']}/revoke/")

    body = writer.get(URL).json()
    assert set(body) == {"results", "next", "previous"}
    assert [row["email"] for row in body["results"]] == [  # newest first
        "revoked@example.com",
        "expired@example.com",
        "pending@example.com",
    ]
    for status, expected in [("pending", pending), ("expired", expired), ("revoked", revoked)]:
        rows = writer.get(URL, {"status": status}).json()["results"]
        assert [(row["id"], row["status"]) for row in rows] == [(expected["id"], status)]
    assert writer.get(URL, {"status": "accepted"}).json()["results"] == []


@pytest.mark.parametrize("status", ["open", "PENDING", "²"])
def test_an_unknown_status_filter_is_invalid(writer, status):
    error = assert_error(writer.get(URL, {"status": status}), 400, "invalid")
    assert "status" in error["details"]


def test_another_tenants_invitation_is_not_found(writer):
    other = TenantFactory()
    foreign = services.invitation_create(tenant=other, email="theirs@example.com").invitation

    assert_error(writer.get(f"{URL}{foreign.pk}/"), 404, "not_found")
    assert_error(writer.post(f"{URL}{foreign.pk}/revoke/"), 404, "not_found")
    assert Invitation.all_tenants.get(pk=foreign.pk).status == "pending"


def test_revoking_closes_the_invitation_once(tenant, writer):
    body = invite(writer, "gone@example.com").json()

    response = writer.post(f"{URL}{body['id']}/revoke/")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "revoked" and response.json()["revoked_at"]
    assert_error(writer.post(f"{URL}{body['id']}/revoke/"), 409, "invitation_not_open")
    user = UserFactory(username="gone")
    assert_error(
        signed_in(user).post(ACCEPT, {"token": body["token"]}, format="json"),
        404,
        "invitation_not_found",
    )
    assert members_of(tenant) == {}


def test_a_read_key_cannot_revoke(tenant, writer):
    body = invite(writer, "kept@example.com").json()
    reader = key_client(issue_key(tenant, scopes=[ApiKey.Scope.READ])[1])

    assert_error(reader.post(f"{URL}{body['id']}/revoke/"), 403, "permission_denied")
    assert Invitation.all_tenants.get(pk=body["id"]).status == "pending"


# --- Accepting ----------------------------------------------------------------------------------


def test_the_invited_user_accepts_and_becomes_a_member_with_the_role(tenant, writer):
    body = invite(writer, "ann@example.com", ADMIN).json()
    ann = UserFactory(username="ann", email="Ann@Example.com")

    response = signed_in(ann).post(ACCEPT, {"token": body["token"]}, format="json")

    assert response.status_code == 200, response.content
    membership = Membership.all_tenants.get(tenant=tenant, user=ann)
    assert response.json() == {
        "tenant": "acme",
        "tenant_name": tenant.name,
        "membership": membership.pk,
        "role": ADMIN,
    }
    invitation = Invitation.all_tenants.get(pk=body["id"])
    assert (invitation.status, invitation.accepted_by) == ("accepted", ann)
    assert writer.get(f"{URL}{body['id']}/").json()["status"] == "accepted"
    # the new member reads the tenant at once (the cached membership entry was dropped)
    assert signed_in(ann, tenant).get("/api/v1/members/").status_code == 200


def _failure(client: APIClient, token: str) -> tuple[int, dict]:
    response = client.post(ACCEPT, {"token": token}, format="json")
    return response.status_code, response.json()


def test_every_failed_acceptance_gives_the_same_answer(tenant, writer):
    """Unknown, revoked, expired, accepted, someone else's, a suspended tenant. (A string that is
    not shaped like a token at all is a 400 with the shape, which says nothing either.)"""
    user = UserFactory(username="bob")
    client = signed_in(user)
    tokens = {}
    for case in ("revoked", "expired", "accepted", "suspended"):
        tokens[case] = invite(writer, "bob@example.com").json()
        if case == "revoked":
            writer.post(f"{URL}{tokens[case]['id']}/revoke/")
        elif case == "expired":
            Invitation.all_tenants.filter(pk=tokens[case]["id"]).update(expires_at=timezone.now())
        elif case == "accepted":
            assert (
                client.post(ACCEPT, {"token": tokens[case]["token"]}, format="json").status_code
                == 200
            )
            Membership.all_tenants.filter(user=user).delete()
    someone_elses = invite(writer, "carol@example.com").json()["token"]
    suspended = TenantFactory(status=Tenant.Status.ACTIVE)
    suspended_token = services.invitation_create(tenant=suspended, email="bob@example.com").token
    suspended.status = Tenant.Status.SUSPENDED
    suspended.save()

    answers = {
        "unknown": _failure(client, "ilsinv_" + "A" * 43),
        "revoked": _failure(client, tokens["revoked"]["token"]),
        "expired": _failure(client, tokens["expired"]["token"]),
        "accepted": _failure(client, tokens["accepted"]["token"]),
        "someone else's": _failure(client, someone_elses),
        "suspended tenant": _failure(client, suspended_token),
    }

    assert len(set(map(str, answers.values()))) == 1, answers
    status, body = answers["unknown"]
    assert status == 404 and body["error"]["code"] == "invitation_not_found"
    assert members_of(tenant) == {} and members_of(suspended) == {}


def test_only_a_signed_in_user_accepts(tenant, writer):
    token = invite(writer, "dan@example.com").json()["token"]
    UserFactory(username="dan")

    assert_error(
        APIClient().post(ACCEPT, {"token": token}, format="json"), 401, "not_authenticated"
    )
    assert_error(writer.post(ACCEPT, {"token": token}, format="json"), 403, "permission_denied")
    assert members_of(tenant) == {}
    assert Invitation.all_tenants.get().status == "pending"


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"token": ""},
        {"token": ["x"]},
        {"token": "not a token"},
        {"token": "ilsinv_" + "x" * 44},
    ],
)
def test_a_malformed_accept_body_is_invalid(payload):
    client = signed_in(UserFactory())

    error = assert_error(client.post(ACCEPT, payload, format="json"), 400, "invalid")
    assert "token" in error["details"]


def test_acceptance_is_held_to_the_members_quota_and_stays_open(writer):
    free = TenantFactory(plan=plan("free"))
    members = [MembershipFactory(tenant=free) for _ in range(3)]
    token = services.invitation_create(tenant=free, email="late@example.com").token
    client = signed_in(UserFactory(username="late"))

    error = assert_error(
        client.post(ACCEPT, {"token": token}, format="json"), 403, "quota_exceeded"
    )
    assert error["details"] == {"resource": "max_members", "limit": 3, "used": 3, "requested": 1}
    assert Invitation.all_tenants.get(tenant=free).status == "pending"

    services.membership_remove(membership=members[0])
    assert client.post(ACCEPT, {"token": token}, format="json").status_code == 200
    assert Membership.all_tenants.filter(tenant=free).count() == 3


def test_accepting_when_already_a_member_is_a_conflict_and_changes_nothing(tenant, writer):
    token = invite(writer, "eve@example.com", ADMIN).json()["token"]
    eve = UserFactory(username="eve")
    services.membership_add(tenant=tenant, user=eve)

    assert_error(
        signed_in(eve).post(ACCEPT, {"token": token}, format="json"), 409, "already_member"
    )
    assert members_of(tenant) == {"eve": MEMBER}
    assert Invitation.all_tenants.get().status == "pending"


def test_a_member_elsewhere_accepts_while_naming_their_own_tenant(tenant, writer):
    home = MembershipFactory(tenant=TenantFactory(), user__username="fay")
    token = invite(writer, "fay@example.com").json()["token"]

    response = signed_in(home.user, home.tenant).post(ACCEPT, {"token": token}, format="json")

    assert response.status_code == 200, response.content
    assert members_of(tenant) == {"fay": MEMBER}


# --- Admin --------------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    return client


def test_admin_lists_invitations_without_their_token_and_cannot_add(staff_client, writer):
    body = invite(writer, "listed@example.com").json()
    Invitation.all_tenants.filter(pk=body["id"]).update(expires_at=timezone.now())

    listing = staff_client.get(
        reverse("admin:tenants_invitation_changelist"), {"status": "expired"}
    )
    page = staff_client.get(reverse("admin:tenants_invitation_change", args=[body["id"]]))

    assert listing.status_code == 200
    assert [row.pk for row in listing.context["cl"].result_list] == [body["id"]]
    assert page.status_code == 200 and b"listed@example.com" in page.content
    token_hash = Invitation.all_tenants.get(pk=body["id"]).token_hash
    for response in (listing, page):
        assert body["token"].encode() not in response.content
        assert token_hash.encode() not in response.content
    assert staff_client.get(reverse("admin:tenants_invitation_add")).status_code == 403


def test_admin_revokes_through_the_service(staff_client, writer):
    open_one = invite(writer, "open@example.com").json()
    accepted = invite(writer, "taken@example.com").json()
    signed_in(UserFactory(username="taken")).post(
        ACCEPT, {"token": accepted["token"]}, format="json"
    )

    response = staff_client.post(
        reverse("admin:tenants_invitation_changelist"),
        {"action": "revoke_invitations", "_selected_action": [open_one["id"], accepted["id"]]},
    )

    assert response.status_code == 302
    statuses = dict(Invitation.all_tenants.values_list("id", "status"))
    assert statuses == {open_one["id"]: "revoked", accepted["id"]: "accepted"}


def test_admin_is_staff_only(client, writer):
    invite(writer, "hidden@example.com")
    client.force_login(UserFactory(is_staff=False))

    response = client.get(reverse("admin:tenants_invitation_changelist"))

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
