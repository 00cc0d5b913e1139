"""Feature flags targeted by tenant, plan and percentage; helpers, API and admin, in one process."""

from __future__ import annotations

import logging
import re
import uuid

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.cache import caches
from django.http import HttpResponse
from django.test import RequestFactory
from rest_framework.response import Response
from rest_framework.views import APIView
from waffle import flag_is_active
from waffle.utils import keyfmt

from degradation.flags import FlagRequired, flag_is_active_for_tenant, flag_required
from degradation.models import Flag, tenant_bucket
from tenants.context import tenant_scope
from tenants.models import Tenant
from tests.degradation.flag_helpers import make_flag
from tests.factories import MembershipFactory, TenantFactory, UserFactory, issue_key, key_client
from tests.factories import plan as get_plan

pytestmark = pytest.mark.django_db

FLAGS_URL = "/api/v1/flags/"


def _name(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pro_tenant() -> Tenant:
    return TenantFactory(plan=get_plan("pro"))


@pytest.fixture
def free_tenant() -> Tenant:
    return TenantFactory(plan=get_plan("free"))


# --- Targeting --------------------------------------------------------------------------------


def test_a_tenant_targeted_flag_is_on_for_that_tenant_only(pro_tenant, free_tenant):
    name = _name("tenant")
    make_flag(name, tenants=[pro_tenant])
    assert flag_is_active_for_tenant(name, pro_tenant) is True
    assert flag_is_active_for_tenant(name, free_tenant) is False
    other_pro = TenantFactory(plan=get_plan("pro"))
    assert flag_is_active_for_tenant(name, other_pro) is False


def test_a_plan_targeted_flag_is_on_for_every_tenant_of_the_plan(pro_tenant, free_tenant):
    name = _name("plan")
    make_flag(name, plans=[get_plan("pro")])
    other_pro = TenantFactory(plan=get_plan("pro"))
    assert flag_is_active_for_tenant(name, pro_tenant) is True
    assert flag_is_active_for_tenant(name, other_pro) is True
    assert flag_is_active_for_tenant(name, free_tenant) is False


def test_the_current_scope_is_the_default_tenant(pro_tenant, free_tenant):
    name = _name("scope")
    make_flag(name, tenants=[pro_tenant])
    with tenant_scope(pro_tenant):
        assert flag_is_active_for_tenant(name) is True
    with tenant_scope(free_tenant):
        assert flag_is_active_for_tenant(name) is False
    assert flag_is_active_for_tenant(name) is False  # no scope, no tenant: off


def test_everyone_yes_turns_it_on_and_everyone_no_forces_it_off(pro_tenant, free_tenant):
    on, off = _name("on"), _name("off")
    make_flag(on, everyone=True)
    make_flag(off, everyone=False, tenants=[pro_tenant], plans=[get_plan("pro")], percent=99.9)
    assert flag_is_active_for_tenant(on, free_tenant) is True
    assert flag_is_active_for_tenant(off, pro_tenant) is False


def test_a_percentage_of_30_covers_about_30_percent_of_tenants():
    """Deterministic: the bucket is SHA-256 of (flag name, tenant id), not a random draw."""
    plan = get_plan("pro")
    make_flag("rollout-thirty", percent=30)
    tenants = [Tenant(pk=tenant_id, plan=plan) for tenant_id in range(1, 1001)]
    on = [t.pk for t in tenants if flag_is_active_for_tenant("rollout-thirty", t)]
    assert 250 <= len(on) <= 350, len(on)
    assert on == [t.pk for t in tenants if flag_is_active_for_tenant("rollout-thirty", t)]
    assert on == [t.pk for t in tenants if tenant_bucket("rollout-thirty", t.pk) < 300]


def test_raising_the_percentage_keeps_the_tenants_already_in():
    plan = get_plan("pro")
    flag = make_flag("rollout-grow", percent=10)
    tenants = [Tenant(pk=tenant_id, plan=plan) for tenant_id in range(1, 501)]
    before = {t.pk for t in tenants if flag_is_active_for_tenant("rollout-grow", t)}
    flag.percent = 40
    flag.save()
    caches["flags"].clear()  # the save's flush waits for a commit this test never makes
    after = {t.pk for t in tenants if flag_is_active_for_tenant("rollout-grow", t)}
    assert before and before < after
    assert 150 <= len(after) <= 250


def test_the_percentage_depends_on_the_flag_name_too():
    ids = range(1, 1001)
    first = {i for i in ids if tenant_bucket("flag-one", i) < 300}
    second = {i for i in ids if tenant_bucket("flag-two", i) < 300}
    assert first != second


def test_an_unknown_flag_is_off_and_logged_once(pro_tenant, caplog):
    name = _name("missing")
    with caplog.at_level(logging.WARNING, logger="degradation.models"):
        for _ in range(5):
            assert flag_is_active_for_tenant(name, pro_tenant) is False
        request = RequestFactory().get("/")
        request.user, request.tenant = AnonymousUser(), pro_tenant
        assert flag_is_active(request, name) is False
    lines = [r for r in caplog.records if name in r.getMessage()]
    assert len(lines) == 1
    assert not Flag.objects.filter(name=name).exists()  # WAFFLE_CREATE_MISSING_FLAGS is off


def test_waffle_user_targeting_still_works_for_requests(pro_tenant):
    name = _name("user")
    user = UserFactory()
    flag = make_flag(name)
    flag.users.add(user)
    request = RequestFactory().get("/")
    request.tenant = TenantFactory()
    request.user = user
    assert flag_is_active(request, name) is True
    request.user = AnonymousUser()
    assert flag_is_active(request, name) is False
    request.tenant = pro_tenant
    flag.tenants.add(pro_tenant)
    caches["flags"].clear()
    assert flag_is_active(request, name) is True  # waffle's request API sees the tenant rules


# --- Cache invalidation in this process --------------------------------------------------------


def test_adding_a_tenant_flushes_the_cached_targets_on_commit(
    pro_tenant, django_capture_on_commit_callbacks
):
    name = _name("flush")
    flag = make_flag(name)
    assert flag_is_active_for_tenant(name, pro_tenant) is False  # warms the cache
    assert caches["flags"].get(keyfmt(Flag.FLAG_TENANTS_CACHE_KEY, name)) is not None
    with django_capture_on_commit_callbacks(execute=True):
        flag.tenants.add(pro_tenant)
    assert caches["flags"].get(keyfmt(Flag.FLAG_TENANTS_CACHE_KEY, name)) is None
    assert flag_is_active_for_tenant(name, pro_tenant) is True


def test_flags_use_global_keys_of_their_own_cache(pro_tenant):
    """Read inside a scope, written outside: the same key either way, in the `flags` alias."""
    name = _name("global")
    make_flag(name)
    with tenant_scope(pro_tenant):
        flag_is_active_for_tenant(name)
    cached = caches["flags"].get(keyfmt(Flag.FLAG_TENANTS_CACHE_KEY, name))
    assert cached is not None  # readable outside the scope: the key is not tenant-scoped
    assert caches["flags"].key_func is not caches["default"].key_func


# --- Decorator and permission -----------------------------------------------------------------


def _request(tenant, user=None):
    request = RequestFactory().get("/feature")
    request.tenant, request.user = tenant, user or AnonymousUser()
    return request


@pytest.mark.parametrize("status", [404, 403])
def test_the_decorator_answers_404_or_403_while_off_and_runs_the_view_while_on(
    status, pro_tenant, free_tenant
):
    name = _name("deco")
    make_flag(name, tenants=[pro_tenant])

    @flag_required(name, status=status)
    def view(request):
        return HttpResponse("feature")

    class DrfView(APIView):
        authentication_classes: list = []
        permission_classes: list = []

        @flag_required(name, status=status)
        def get(self, request):
            return Response({"feature": True})

    assert view(_request(pro_tenant)).content == b"feature"
    assert DrfView.as_view()(_request(pro_tenant)).status_code == 200
    if status == 404:
        from django.http import Http404

        with pytest.raises(Http404):
            view(_request(free_tenant))
    else:
        from django.core.exceptions import PermissionDenied

        with pytest.raises(PermissionDenied):
            view(_request(free_tenant))
    answer = DrfView.as_view()(_request(free_tenant))
    assert answer.status_code == status
    assert answer.data["error"]["code"] == ("not_found" if status == 404 else "permission_denied")


@pytest.mark.parametrize("status", [404, 403])
def test_the_permission_answers_404_or_403_while_off(status, pro_tenant, free_tenant):
    name = _name("perm")
    make_flag(name, plans=[get_plan("pro")])

    class FeatureView(APIView):
        authentication_classes: list = []
        permission_classes = [FlagRequired(name, status=status)]

        def get(self, request):
            return Response({"feature": True})

    assert FeatureView.as_view()(_request(pro_tenant)).status_code == 200
    refused = FeatureView.as_view()(_request(free_tenant))
    assert refused.status_code == status


def test_a_bad_status_is_refused_at_import():
    with pytest.raises(ValueError):
        flag_required("x", status=500)
    with pytest.raises(ValueError):
        FlagRequired("x", status=200)


# --- /api/v1/flags/ ---------------------------------------------------------------------------


def _client_for(tenant):
    MembershipFactory(tenant=tenant)
    _, secret = issue_key(tenant)
    return key_client(secret)


def _names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["name"] for item in response.json()["results"]]


def test_the_flags_list_shows_each_tenant_its_own_flags(pro_tenant, free_tenant):
    for_a, for_b, for_all = _name("only-a"), _name("plan-free"), _name("all")
    make_flag(for_a, tenants=[pro_tenant], note="secret note naming a customer")
    make_flag(for_b, plans=[get_plan("free")])
    make_flag(for_all, everyone=True)
    make_flag(_name("off-for-all"), everyone=False, tenants=[pro_tenant])
    make_flag(_name("nobody"))

    a_response = _client_for(pro_tenant).get(FLAGS_URL)
    b_response = _client_for(free_tenant).get(FLAGS_URL)
    assert sorted(_names(a_response)) == sorted([for_a, for_all])
    assert sorted(_names(b_response)) == sorted([for_b, for_all])
    for item in a_response.json()["results"]:
        assert set(item) == {"name"}  # never targets, percentages or staff notes
    assert pro_tenant.slug not in b_response.content.decode()
    assert "secret note" not in a_response.content.decode()


def test_the_flags_list_is_paginated_by_cursor(pro_tenant):
    names = [_name(f"page{i}") for i in range(5)]
    for name in names:
        make_flag(name, tenants=[pro_tenant])
    client = _client_for(pro_tenant)
    first = client.get(FLAGS_URL, {"limit": 2}).json()
    assert len(first["results"]) == 2 and first["next"]
    seen = [item["name"] for item in first["results"]]
    url = first["next"]
    while url:
        page = client.get(url).json()
        seen += [item["name"] for item in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(names)


def test_the_flags_list_needs_a_tenant_caller(pro_tenant):
    from rest_framework.test import APIClient

    assert APIClient().get(FLAGS_URL).status_code in (401, 403)


# --- Admin ------------------------------------------------------------------------------------


def test_the_flag_admin_uses_autocomplete_for_tenants_and_plans(client, pro_tenant):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    flag = make_flag(_name("admin"))
    page = client.get(f"/admin/degradation/flag/{flag.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    for field in ("tenants", "plans"):
        select = re.search(rf'<select name="{field}"[^>]*>', html)
        assert select and 'class="admin-autocomplete"' in select.group(0), field
    search = client.get(
        "/admin/autocomplete/",
        {
            "term": pro_tenant.slug,
            "app_label": "degradation",
            "model_name": "flag",
            "field_name": "tenants",
        },
    )
    assert search.status_code == 200
    assert [r["text"] for r in search.json()["results"]] == [pro_tenant.slug]
    for model in ("switch", "sample"):
        assert client.get(f"/admin/waffle/{model}/").status_code == 200
