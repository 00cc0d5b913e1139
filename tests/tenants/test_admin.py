"""Django Admin of the tenants app: pages, search and filters, actions seen by the API, key issuing."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tenants.keys import hash_key
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


KEY_PATTERN = re.compile(r"ils_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
MODELS = ("plan", "tenant", "membership", "apikey")


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    return client


def _url(model: str, view: str = "changelist", *args) -> str:
    return reverse(f"admin:tenants_{model}_{view}", args=args)


def _action(client: Client, model: str, action: str, *objects) -> None:
    response = client.post(
        _url(model), {"action": action, "_selected_action": [obj.pk for obj in objects]}
    )
    assert response.status_code == 302, response.content


def _listed(response) -> list:
    return list(response.context["cl"].result_list)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("view", ["changelist", "add"])
def test_staff_opens_every_changelist_and_add_page(staff_client, model, view):
    tenant = TenantFactory()
    MembershipFactory(tenant=tenant)
    issue_key(tenant)

    response = staff_client.get(_url(model, view))

    assert response.status_code == 200
    assert "ILS platform admin" in response.text


def test_non_staff_user_is_sent_to_the_login_page(client):
    client.force_login(UserFactory(is_staff=False))
    for model in MODELS:
        response = client.get(_url(model))
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))


def test_tenant_search_and_filters(staff_client):
    acme = TenantFactory(slug="acme", name="Acme Corp", plan=plan("pro"))
    globex = TenantFactory(slug="globex", name="Globex", plan=plan("free"))
    initech = TenantFactory(slug="initech", name="Initech Acme", plan=plan("free"))
    initech.status = Tenant.Status.SUSPENDED
    initech.save()

    assert _listed(staff_client.get(_url("tenant"), {"q": "acme"})) == [acme, initech]
    assert _listed(staff_client.get(_url("tenant"), {"plan__id__exact": plan("free").pk})) == [
        globex,
        initech,
    ]
    assert _listed(staff_client.get(_url("tenant"), {"status__exact": "suspended"})) == [initech]


def test_tenant_list_shows_member_and_active_key_counts(staff_client):
    tenant = TenantFactory(slug="counted")
    MembershipFactory.create_batch(2, tenant=tenant)
    issue_key(tenant)
    revoked, _ = issue_key(tenant, name="old")
    revoked.revoked_at = revoked.created_at
    revoked.save()

    (row,) = _listed(staff_client.get(_url("tenant"), {"q": "counted"}))

    assert (row.members_count, row.active_api_keys_count) == (2, 1)


def test_tenant_changelist_queries_do_not_grow_with_tenants(staff_client):
    def queries_for_list_of(count: int) -> int:
        for tenant in TenantFactory.create_batch(count - Tenant.objects.count()):
            MembershipFactory(tenant=tenant)
            issue_key(tenant)
        with CaptureQueriesContext(connection) as queries:
            response = staff_client.get(_url("tenant"))
        assert len(_listed(response)) == count
        return len(queries)

    assert queries_for_list_of(3) == queries_for_list_of(20)


@pytest.mark.parametrize("model", ["membership", "apikey"])
def test_tenant_owned_changelists_query_a_bounded_number_of_times(staff_client, model):
    def queries_for(count: int) -> int:
        for _ in range(count):
            tenant = TenantFactory()
            MembershipFactory(tenant=tenant)
            issue_key(tenant)
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(_url(model)).status_code == 200
        return len(queries)

    assert queries_for(2) == queries_for(15)


def test_suspend_and_reactivate_actions_are_seen_by_the_api_at_once(
    staff_client, django_capture_on_commit_callbacks
):
    tenant = TenantFactory()
    _, secret = issue_key(tenant)
    api = key_client(secret)
    assert api.get("/api/v1/tenant/").status_code == 200  # the resolution is cached now

    with django_capture_on_commit_callbacks(execute=True):
        _action(staff_client, "tenant", "suspend_tenants", tenant)
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.SUSPENDED
    response = api.get("/api/v1/tenant/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"

    with django_capture_on_commit_callbacks(execute=True):
        _action(staff_client, "tenant", "reactivate_tenants", tenant)
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    assert api.get("/api/v1/tenant/").status_code == 200


def test_tenant_slug_is_read_only_after_creation(staff_client):
    tenant = TenantFactory(slug="fixed", name="Old")
    response = staff_client.post(
        _url("tenant", "change", tenant.pk),
        {
            "slug": "moved",
            "name": "New",
            "plan": tenant.plan_id,
            "status": "active",
            "limit_overrides": "{}",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert (tenant.slug, tenant.name) == ("fixed", "New")


def test_tenant_add_page_creates_a_tenant(staff_client):
    response = staff_client.post(
        _url("tenant", "add"),
        {"slug": "newco", "name": "NewCo", "plan": plan("starter").pk, "status": "active"},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Tenant.objects.get(slug="newco").limit_overrides == {}


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ('{"bogus_limit": 5}', "Unknown limits: bogus_limit."),
        ('{"max_members": -1}', "max_members must be a non-negative integer or null."),
        ("[1, 2]", "Limit overrides must be an object."),
        (
            '{"jobs_per_day": 1000000000000001}',
            "jobs_per_day must be at most 1000000000000000 (10**15), not 1000000000000001; "
            "use null for unlimited.",
        ),
    ],
)
def test_limit_overrides_are_validated(staff_client, overrides, error):
    tenant = TenantFactory()
    data = {"name": tenant.name, "plan": tenant.plan_id, "status": "active"}

    response = staff_client.post(
        _url("tenant", "change", tenant.pk), {**data, "limit_overrides": overrides}
    )
    assert response.status_code == 200
    assert error in response.context["adminform"].form.errors["limit_overrides"]

    response = staff_client.post(
        _url("tenant", "change", tenant.pk), {**data, "limit_overrides": '{"max_members": 500}'}
    )
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert tenant.limits()["max_members"] == 500


def test_plan_limits_are_editable_in_the_list(staff_client):
    pro = plan("pro")
    fields = ("requests_per_minute", "max_members", "max_api_keys", "storage_bytes")
    fields += ("max_file_bytes", "jobs_per_day", "api_calls_per_month")
    row = {f"form-0-{name}": getattr(pro, name) or "" for name in fields}
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": pro.pk,
        **row,
        "form-0-max_members": "77",
        "form-0-api_calls_per_month": "",
        "_save": "Save",
    }

    response = staff_client.post(f"{_url('plan')}?q=pro", data)

    assert response.status_code == 302
    pro.refresh_from_db()
    assert (pro.max_members, pro.api_calls_per_month) == (77, None)


def test_membership_search_and_role_filter(staff_client):
    owner = MembershipFactory(
        tenant=TenantFactory(slug="alpha"),
        user=UserFactory(email="ann@alpha.test"),
        role=Membership.Role.OWNER,
    )
    member = MembershipFactory(
        tenant=TenantFactory(slug="beta"), user=UserFactory(email="bob@b.test")
    )

    assert _listed(staff_client.get(_url("membership"), {"q": "alpha"})) == [owner]
    assert _listed(staff_client.get(_url("membership"), {"q": "bob@b"})) == [member]
    assert _listed(staff_client.get(_url("membership"), {"role__exact": "owner"})) == [owner]


def test_membership_is_added_in_the_chosen_tenant(staff_client):
    tenant = TenantFactory()
    user = UserFactory()

    response = staff_client.post(
        _url("membership", "add"), {"tenant": tenant.pk, "user": user.pk, "role": "admin"}
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    membership = Membership.all_tenants.get(user=user)
    assert (membership.tenant_id, membership.role) == (tenant.pk, "admin")


def test_membership_add_rejects_a_duplicate_and_a_full_tenant(staff_client):
    tenant = TenantFactory(plan=plan("free"))  # max_members 3
    first = MembershipFactory(tenant=tenant)
    data = {"tenant": tenant.pk, "user": first.user.pk, "role": "member"}

    response = staff_client.post(_url("membership", "add"), data)
    assert response.status_code == 200
    assert "already exists" in str(response.context["adminform"].form.errors)

    MembershipFactory.create_batch(2, tenant=tenant)
    response = staff_client.post(_url("membership", "add"), {**data, "user": UserFactory().pk})
    assert response.status_code == 200
    assert "allows 3 (max_members)" in str(response.context["adminform"].form.errors)
    assert Membership.all_tenants.filter(tenant=tenant).count() == 3


def test_membership_change_keeps_the_tenant_and_its_last_owner(staff_client):
    tenant, other = TenantFactory(), TenantFactory()
    owner = MembershipFactory(tenant=tenant, role=Membership.Role.OWNER)
    url = _url("membership", "change", owner.pk)

    response = staff_client.post(url, {"tenant": other.pk, "user": owner.user_id, "role": "owner"})
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.tenant_id == tenant.pk  # the tenant is read-only after creation

    response = staff_client.post(url, {"user": owner.user_id, "role": "member"})
    assert response.status_code == 200
    assert "at least one owner" in str(response.context["adminform"].form.errors)

    MembershipFactory(tenant=tenant, role=Membership.Role.OWNER)
    assert staff_client.post(url, {"user": owner.user_id, "role": "member"}).status_code == 302
    owner.refresh_from_db()
    assert owner.role == Membership.Role.MEMBER


def test_the_last_owner_cannot_be_deleted_in_admin(staff_client):
    owner = MembershipFactory(role=Membership.Role.OWNER)

    response = staff_client.post(_url("membership", "delete", owner.pk), {"post": "yes"})

    assert response.status_code == 200
    assert "A tenant must keep at least one owner." in response.text
    assert Membership.all_tenants.filter(pk=owner.pk).exists()


def test_deleting_every_owner_at_once_in_admin_is_refused_and_others_go_through_the_service(
    staff_client, django_capture_on_commit_callbacks
):
    tenant = TenantFactory()
    owners = [MembershipFactory(tenant=tenant, role=Membership.Role.OWNER) for _ in range(2)]
    member = MembershipFactory(tenant=tenant, role=Membership.Role.MEMBER)
    changelist = _url("membership", "changelist")

    both = {"action": "delete_selected", "_selected_action": [o.pk for o in owners], "post": "yes"}
    refused = staff_client.post(changelist, both)
    # Each removal alone would leave an owner; together they would not: tried in order, rolled back.
    assert refused.status_code == 200
    assert "A tenant must keep at least one owner." in refused.text
    assert Membership.all_tenants.filter(tenant=tenant).count() == 3

    data = {"action": "delete_selected", "_selected_action": [owners[0].pk, member.pk]}
    with django_capture_on_commit_callbacks(execute=True):
        done = staff_client.post(changelist, {**data, "post": "yes"})
    assert done.status_code == 302
    remaining = Membership.all_tenants.filter(tenant=tenant).values_list("pk", flat=True)
    assert list(remaining) == [owners[1].pk]


def test_tenant_picker_autocompletes_by_slug(staff_client):
    TenantFactory(slug="picked")
    TenantFactory(slug="other")
    response = staff_client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "tenants",
            "model_name": "membership",
            "field_name": "tenant",
            "term": "pick",
        },
    )
    assert response.status_code == 200
    assert [row["text"] for row in response.json()["results"]] == ["picked"]


def test_api_key_filters(staff_client):
    tenant = TenantFactory(plan=plan("pro"))
    live, _ = issue_key(tenant, name="live")
    revoked, _ = issue_key(tenant, name="revoked")
    expired, _ = issue_key(tenant, name="expired")
    ApiKey.all_tenants.filter(pk=revoked.pk).update(revoked_at=revoked.created_at)
    ApiKey.all_tenants.filter(pk=expired.pk).update(expires_at=expired.created_at)

    assert _listed(staff_client.get(_url("apikey"), {"revoked": "yes"})) == [revoked]
    assert _listed(staff_client.get(_url("apikey"), {"revoked": "no"})) == [live, expired]
    assert _listed(staff_client.get(_url("apikey"), {"expired": "yes"})) == [expired]
    assert _listed(staff_client.get(_url("apikey"), {"expired": "no"})) == [live, revoked]
    assert _listed(staff_client.get(_url("apikey"), {"q": tenant.slug})) == [
        live,
        revoked,
        expired,
    ]


def test_revoke_action_makes_the_key_answer_401(staff_client, django_capture_on_commit_callbacks):
    api_key, secret = issue_key(TenantFactory())
    api = key_client(secret)
    assert api.get("/api/v1/tenant/").status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        _action(staff_client, "apikey", "revoke_keys", api_key)

    api_key.refresh_from_db()
    assert api_key.is_revoked
    response = api.get("/api/v1/tenant/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


def test_admin_on_a_tenant_subdomain_still_acts_on_other_tenants(staff_client):
    TenantFactory(slug="here")
    api_key, _ = issue_key(TenantFactory())

    response = staff_client.post(
        _url("apikey"),
        {"action": "revoke_keys", "_selected_action": [api_key.pk]},
        HTTP_HOST="here.localhost",
    )

    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.is_revoked


def test_api_key_change_page_never_shows_the_hash_and_edits_nothing(staff_client):
    api_key, secret = issue_key(TenantFactory(), name="ci")
    url = _url("apikey", "change", api_key.pk)

    response = staff_client.get(url)
    assert response.status_code == 200
    assert api_key.prefix in response.text
    assert api_key.secret_hash not in response.text
    assert secret not in response.text
    assert not response.context["adminform"].form.fields  # everything is read-only

    staff_client.post(url, {"name": "renamed", "scopes": ["read"]})
    api_key.refresh_from_db()
    assert (api_key.name, api_key.scopes) == ("ci", ["read", "write"])


def test_adding_a_key_in_admin_shows_its_secret_once(staff_client):
    tenant = TenantFactory()

    response = staff_client.post(
        _url("apikey", "add"),
        {"tenant": tenant.pk, "name": "from admin", "scopes": ["read"], "requests_per_minute": 7},
        follow=True,
    )

    assert response.status_code == 200
    notes = [str(message) for message in response.context["messages"]]
    secrets = [key for note in notes for key in KEY_PATTERN.findall(note)]
    assert len(secrets) == 1, notes
    assert any("Copy it now; it will not be shown again" in note for note in notes)
    api_key = ApiKey.all_tenants.get(tenant=tenant)
    assert api_key.secret_hash == hash_key(secrets[0])
    assert (
        api_key.name,
        api_key.scopes,
        api_key.created_by.username,
        api_key.requests_per_minute,
    ) == ("from admin", ["read"], "staff", 7)
    assert key_client(secrets[0]).get("/api/v1/tenant/").json()["slug"] == tenant.slug
    assert secrets[0] not in staff_client.get(_url("apikey")).text
    assert secrets[0] not in staff_client.get(_url("apikey", "change", api_key.pk)).text


def test_adding_a_key_in_admin_respects_the_key_quota(staff_client):
    tenant = TenantFactory(plan=plan("free"))  # max_api_keys 2
    issue_key(tenant)
    issue_key(tenant)

    response = staff_client.post(
        _url("apikey", "add"), {"tenant": tenant.pk, "name": "third", "scopes": ["read"]}
    )

    assert response.status_code == 200
    assert "allows 2 (max_api_keys)" in str(response.context["adminform"].form.errors)
    assert ApiKey.all_tenants.filter(tenant=tenant).count() == 2


def test_plan_code_is_read_only_after_creation(staff_client):
    response = staff_client.get(_url("plan", "change", Plan.objects.get(code="pro").pk))
    assert "code" not in response.context["adminform"].form.fields


def test_deleting_a_tenant_in_admin_removes_its_rows(staff_client):
    tenant = TenantFactory()
    MembershipFactory(tenant=tenant, role=Membership.Role.OWNER)
    issue_key(tenant)

    confirm = staff_client.get(_url("tenant", "delete", tenant.pk))
    assert confirm.status_code == 200
    response = staff_client.post(_url("tenant", "delete", tenant.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    assert not Membership.all_tenants.filter(tenant_id=tenant.pk).exists()
    assert not ApiKey.all_tenants.filter(tenant_id=tenant.pk).exists()
