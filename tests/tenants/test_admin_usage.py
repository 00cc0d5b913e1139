"""Usage against limits in the tenant admin: the "Usage" filter, the "Near limit" column, the
change page's usage bars, and the upper bound on limits (overrides and plans)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tenants import limits
from tenants.limits import quotas
from tenants.models import MAX_LIMIT_VALUE, Plan, Tenant, TenantUsage
from tests.factories import MembershipFactory, TenantFactory, UserFactory, issue_key, plan

pytestmark = pytest.mark.django_db

LIMITS = dict(
    max_members=5,
    max_api_keys=5,
    storage_bytes=1000,
    max_file_bytes=100,
    jobs_per_day=10,
    api_calls_per_month=200,
)


@pytest.fixture
def limited() -> Plan:
    found = plan("limited")
    for name, value in LIMITS.items():
        setattr(found, name, value)
    found.save()
    return found


def _tenant(limited: Plan, slug: str, *, members: int = 0, overrides=None) -> Tenant:
    tenant = TenantFactory(slug=slug, plan=limited, limit_overrides=overrides or {})
    MembershipFactory.create_batch(members, tenant=tenant)
    return tenant


def _count(tenant: Tenant, resource: str, used: int, *, now=None) -> None:
    TenantUsage.all_tenants.create(
        tenant=tenant, resource=resource, period=quotas.period_key(resource, now), used=used
    )


def _url(view: str = "changelist", *args) -> str:
    return reverse(f"admin:tenants_tenant_{view}", args=args)


def _listed(client: Client, **params) -> list[Tenant]:
    response = client.get(_url(), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def _slugs(client: Client, **params) -> set[str]:
    return {tenant.slug for tenant in _listed(client, **params)}


@pytest.fixture
def population(limited):
    """Tenants at known percentages of their limits (plan ``limited``: see ``LIMITS``)."""
    _tenant(limited, "quiet", members=1)  # 20%
    _tenant(limited, "members-80", members=4)  # 4/5
    _tenant(limited, "members-100", members=5)
    keys = _tenant(limited, "keys-80")
    issued = [issue_key(keys, name=f"k{i}")[0] for i in range(5)]
    issued[0].revoked_at = timezone.now()
    issued[0].save()  # 4 active of 5
    keys_low = _tenant(limited, "keys-60-with-revoked")
    issued = [issue_key(keys_low, name=f"k{i}")[0] for i in range(5)]
    for key in issued[:2]:
        key.revoked_at = timezone.now()
        key.save()  # 3 active of 5: revoked keys do not count
    _count(_tenant(limited, "storage-99"), limits.STORAGE_BYTES, 999)
    _count(_tenant(limited, "storage-79"), limits.STORAGE_BYTES, 799)
    _count(_tenant(limited, "jobs-100"), limits.JOBS_PER_DAY, 10)
    _count(_tenant(limited, "calls-over"), limits.API_CALLS_PER_MONTH, 260)  # 130%
    past = _tenant(limited, "calls-last-month")
    _count(
        past,
        limits.API_CALLS_PER_MONTH,
        500,
        now=timezone.now() - timedelta(days=40),
    )
    _count(
        _tenant(limited, "jobs-yesterday"),
        limits.JOBS_PER_DAY,
        10,
        now=timezone.now() - timedelta(days=1),
    )
    _tenant(limited, "raised", members=5, overrides={"max_members": 50})  # 10%
    _tenant(limited, "lowered", members=1, overrides={"max_members": 1})  # 100%
    keys_lowered = _tenant(limited, "keys-lowered", overrides={"max_api_keys": 2})
    issue_key(keys_lowered, name="a")
    issue_key(keys_lowered, name="b")  # 2 of 2 (the plan would allow 5)
    _tenant(limited, "unlimited-override", members=5, overrides={"max_members": None})
    _tenant(limited, "zero-allowed", overrides={"jobs_per_day": 0})  # none allowed: at 100%
    storage_raised = _tenant(limited, "storage-raised", overrides={"storage_bytes": 10**12})
    _count(storage_raised, limits.STORAGE_BYTES, 999)
    _count(
        _tenant(limited, "huge-limit", overrides={"storage_bytes": MAX_LIMIT_VALUE}),
        limits.STORAGE_BYTES,
        MAX_LIMIT_VALUE,
    )


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    return client


AT_100 = {
    "members-100",
    "jobs-100",
    "calls-over",
    "lowered",
    "keys-lowered",
    "zero-allowed",
    "huge-limit",
}
AT_80 = AT_100 | {"members-80", "keys-80", "storage-99"}
EVERYONE = 18


def test_usage_filter_lists_exactly_the_tenants_at_80_and_100_percent(admin_client, population):
    assert len(_listed(admin_client)) == EVERYONE
    assert _slugs(admin_client, usage="80") == AT_80
    assert _slugs(admin_client, usage="100") == AT_100


def test_an_unknown_filter_value_lists_every_tenant(admin_client, population):
    assert len(_listed(admin_client, usage="55")) == EVERYONE


def test_near_limit_column_is_the_highest_percentage(admin_client, population):
    near = {tenant.slug: tenant.near_limit for tenant in _listed(admin_client)}
    assert near["quiet"] == 20
    assert near["members-80"] == 80
    assert near["keys-80"] == 80
    assert near["keys-60-with-revoked"] == 60
    assert near["storage-99"] == 99
    assert near["storage-79"] == 79
    assert near["calls-over"] == 130
    assert near["calls-last-month"] == 0
    assert near["jobs-yesterday"] == 0
    assert near["raised"] == 10
    assert near["storage-raised"] == 0
    assert near["lowered"] == 100
    assert near["keys-lowered"] == 100
    assert near["unlimited-override"] == 0  # members unlimited; keys, counters at 0
    assert near["zero-allowed"] == 100
    assert near["huge-limit"] == 100

    response = admin_client.get(_url(), {"q": "calls-over"})
    assert '<td class="field-near_limit">130%</td>' in response.text


def test_near_limit_is_empty_when_every_counted_quota_is_unlimited(admin_client):
    free_for_all = plan("boundless")  # every limit NULL
    TenantFactory(slug="boundless", plan=free_for_all)
    (row,) = _listed(admin_client, q="boundless")
    assert row.near_limit is None
    assert _slugs(admin_client, usage="80") == set()


def test_changelist_sorts_by_near_limit(admin_client, population):
    column = 7  # slug, name, plan, status, members, keys, near limit (1-based after the checkbox)
    rows = _listed(admin_client, o=f"-{column}")
    assert [t.near_limit for t in rows] == sorted((t.near_limit for t in rows), reverse=True)
    assert rows[0].slug == "calls-over"


def test_filtered_changelist_queries_do_not_grow_with_tenants(admin_client, limited):
    def queries_for(count: int) -> int:
        for i in range(count - Tenant.objects.count()):
            tenant = _tenant(limited, f"t{count}-{i}", members=4)
            issue_key(tenant)
            _count(tenant, limits.JOBS_PER_DAY, 9)
        with CaptureQueriesContext(connection) as queries:
            listed = _listed(admin_client, usage="80")
        assert len(listed) == count
        return len(queries)

    few = queries_for(5)
    assert few == queries_for(25)
    assert few <= 10


def test_filtered_changelist_stays_under_a_query_budget(
    admin_client, limited, django_assert_max_num_queries
):
    for i in range(25):
        _tenant(limited, f"n{i}", members=5)
    with django_assert_max_num_queries(10):
        assert len(_listed(admin_client, usage="100")) == 25


def test_change_page_shows_usage_bars(admin_client, limited):
    tenant = _tenant(limited, "shown", members=4, overrides={"jobs_per_day": None})
    issue_key(tenant)
    _count(tenant, limits.STORAGE_BYTES, 1000)
    _count(tenant, limits.JOBS_PER_DAY, 7)

    response = admin_client.get(_url("change", tenant.pk))

    assert response.status_code == 200
    html = response.text
    assert '<table class="quota-usage">' in html
    assert "<th>Members</th><td>4 / 5</td>" in html
    assert "width:80%" in html and "</span></span> 80%" in html
    assert "<th>Active API keys</th><td>1 / 5</td>" in html
    assert "</span></span> 20%" in html
    assert "<th>Stored bytes</th><td>1,000 (1000\xa0bytes) / 1,000 (1000\xa0bytes)</td>" in html
    assert "</span></span> 100%" in html
    assert "<th>Jobs today</th><td>7 / unlimited</td><td></td>" in html
    assert "<th>Bytes per file</th><td>per file, at most 100 (100\xa0bytes)</td>" in html
    assert "<th>API calls this month</th><td>0 / 200</td>" in html


def test_add_page_has_no_usage(admin_client):
    response = admin_client.get(_url("add"))
    assert response.status_code == 200
    assert "quota-usage" not in response.text


def test_non_staff_user_is_sent_to_login_from_the_tenant_changelist(client, population):
    client.force_login(UserFactory(is_staff=False))
    for params in ({}, {"usage": "80"}):
        response = client.get(_url(), params)
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_members": -1}, "max_members must be a non-negative integer or null."),
        ({"max_members": "5"}, "max_members must be a non-negative integer or null."),
        ({"max_members": 2.0}, "max_members must be a non-negative integer or null."),
        ({"no_such_limit": 1}, "Unknown limits: no_such_limit."),
        ({"storage_bytes": MAX_LIMIT_VALUE + 1}, "storage_bytes must be at most"),
    ],
)
def test_model_validation_rejects_bad_overrides(overrides, message):
    tenant = TenantFactory()
    tenant.limit_overrides = overrides
    with pytest.raises(ValidationError) as error:
        tenant.full_clean()
    (text,) = error.value.message_dict["limit_overrides"]
    assert text.startswith(message)


def test_the_largest_override_and_plan_limit_are_accepted(limited):
    tenant = TenantFactory(plan=limited, limit_overrides={"storage_bytes": MAX_LIMIT_VALUE})
    tenant.full_clean()
    limited.api_calls_per_month = MAX_LIMIT_VALUE
    limited.full_clean()


def test_plan_clean_rejects_limits_above_the_bound(limited):
    limited.storage_bytes = MAX_LIMIT_VALUE + 1
    limited.jobs_per_day = 10**18
    with pytest.raises(ValidationError) as error:
        limited.full_clean()
    assert set(error.value.message_dict) == {"storage_bytes", "jobs_per_day"}
    assert error.value.message_dict["storage_bytes"] == [
        f"storage_bytes must be at most {MAX_LIMIT_VALUE} (10**15); leave it empty for unlimited."
    ]


def test_plan_admin_refuses_a_limit_above_the_bound(admin_client, limited):
    data = {
        "code": limited.code,
        "name": limited.name,
        **{name: value for name, value in LIMITS.items()},
        "requests_per_minute": "",
        "storage_bytes": str(MAX_LIMIT_VALUE * 10),
    }
    response = admin_client.post(reverse("admin:tenants_plan_change", args=[limited.pk]), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["storage_bytes"]
    limited.refresh_from_db()
    assert limited.storage_bytes == 1000


def test_admin_form_shows_a_too_large_override_and_does_not_save(admin_client, limited):
    tenant = TenantFactory(plan=limited, limit_overrides={"max_members": 7})
    data = {"name": "Renamed", "plan": limited.pk, "status": "active"}

    response = admin_client.post(
        _url("change", tenant.pk),
        {**data, "limit_overrides": '{"storage_bytes": 10000000000000001}'},
    )

    assert response.status_code == 200
    (error,) = response.context["adminform"].form.errors["limit_overrides"]
    assert error == (
        f"storage_bytes must be at most {MAX_LIMIT_VALUE} (10**15), not 10000000000000001; "
        "use null for unlimited."
    )
    assert "storage_bytes must be at most" in response.text
    assert "<th>Members</th><td>0 / 7</td>" in response.text  # the saved overrides, not the sent
    tenant.refresh_from_db()
    assert tenant.name != "Renamed"
    assert tenant.limit_overrides == {"max_members": 7}
