"""Flags across processes: the same tenant gets the same answer in every process, and a change
saved in admin is seen by another process within its cache timeout.

These tests commit (``transaction=True``) so a child process, started with the test database's
URL and the same cache Redis, sees the rows; they need PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from django.core.cache import caches
from django.utils import timezone
from waffle.utils import keyfmt

from degradation.flags import flag_is_active_for_tenant
from degradation.models import Flag
from tenants.models import Tenant
from tests.child_process import run_django
from tests.degradation.flag_helpers import make_flag, test_database_url
from tests.factories import TenantFactory, UserFactory
from tests.factories import plan as get_plan

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.redis,
]

_ANSWERS = textwrap.dedent(
    """
    import json, os
    from django.core.cache import caches
    from waffle.utils import keyfmt
    from degradation.flags import flag_is_active_for_tenant
    from degradation.models import Flag
    from tenants.context import tenant_scope
    from tenants.models import Plan, Tenant

    name = os.environ["FLAG_NAME"]
    answers = {}
    for tenant_id, plan_id in json.loads(os.environ["FLAG_TENANTS"]):
        tenant = Tenant(pk=tenant_id, plan_id=plan_id)
        with tenant_scope(tenant):
            answers[str(tenant_id)] = flag_is_active_for_tenant(name)
    cached = caches["flags"].get(keyfmt(Flag.FLAG_TENANTS_CACHE_KEY, name))
    print(json.dumps({"answers": answers, "tenants_cached": cached is not None}))
    """
)


def _child_answers(name: str, tenants: list[tuple[int, int]], **variables: str) -> dict:
    return run_django(
        _ANSWERS,
        drop_prefixes=("DATABASE_", "USE_READ_REPLICAS"),
        DATABASE_URL=test_database_url(),
        FLAG_NAME=name,
        FLAG_TENANTS=json.dumps(tenants),
        LOG_LEVEL="WARNING",
        **variables,
    )


def test_a_percentage_flag_gives_each_tenant_the_same_answer_in_another_process():
    plan = get_plan("pro")
    make_flag("stable-rollout", percent=50)
    tenants = [(tenant_id, plan.pk) for tenant_id in range(1, 201)]
    here = {
        str(tenant_id): flag_is_active_for_tenant("stable-rollout", Tenant(pk=tenant_id, plan=plan))
        for tenant_id, _ in tenants
    }
    assert 0 < sum(here.values()) < len(here)
    # A different hash seed: Python's hash() would give different buckets; SHA-256 does not.
    caches["flags"].clear()
    child = _child_answers("stable-rollout", tenants, PYTHONHASHSEED="12345")
    assert child["answers"] == here
    other = _child_answers("stable-rollout", tenants, PYTHONHASHSEED="999")
    assert other["answers"] == here


def _admin_post_data(flag: Flag, tenant_ids: list[int]) -> dict:
    """The change form of waffle's flag admin as a browser submits it."""
    now = timezone.localtime()
    data = {
        "name": flag.name,
        "everyone": "unknown",
        "percent": "",
        "languages": "",
        "note": flag.note,
        "created_0": now.strftime("%Y-%m-%d"),
        "created_1": now.strftime("%H:%M:%S"),
        "modified_0": now.strftime("%Y-%m-%d"),
        "modified_1": now.strftime("%H:%M:%S"),
        "tenants": [str(pk) for pk in tenant_ids],
        "plans": [],
        "groups": [],
        "users": "",
        "_save": "Save",
    }
    for checkbox in ("testing", "superusers", "staff", "authenticated", "rollout"):
        if getattr(flag, checkbox):
            data[checkbox] = "on"
    return data


def test_a_tenant_added_in_admin_is_seen_by_another_process(client):
    tenant = TenantFactory(plan=get_plan("pro"))
    name = "admin-change-seen"
    flag = make_flag(name)
    pair = [(tenant.pk, tenant.plan_id)]

    assert flag_is_active_for_tenant(name, tenant) is False  # warms the shared cache
    before = _child_answers(name, pair)
    assert before == {"answers": {str(tenant.pk): False}, "tenants_cached": True}

    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = client.post(
        f"/admin/degradation/flag/{flag.pk}/change/", _admin_post_data(flag, [tenant.pk])
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(flag.tenants.values_list("pk", flat=True)) == [tenant.pk]
    assert caches["flags"].get(keyfmt(Flag.FLAG_TENANTS_CACHE_KEY, name)) is None

    # Flushed on commit in the shared cache: the next read of any process sees the change at once,
    # well within the cache timeout (FLAG_CACHE_TIMEOUT) that bounds it without Redis.
    after = _child_answers(name, pair)
    assert after["answers"] == {str(tenant.pk): True}

    # And removing it in admin turns it off again elsewhere.
    response = client.post(f"/admin/degradation/flag/{flag.pk}/change/", _admin_post_data(flag, []))
    assert response.status_code == 302
    assert _child_answers(name, pair)["answers"] == {str(tenant.pk): False}
