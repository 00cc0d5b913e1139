"""Per-tenant usage metrics: counted per process on real requests and jobs, added to hourly rows
(flushes add up), rolled up into days, pruned, served to the tenant itself, exported as a
bounded top list; a failed flush drops and counts, and the request is unaffected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY

import tests.queues.kinds  # noqa: F401  (registers the test kinds)
from metrics import usage
from metrics.collectors import SharedStateCollector
from metrics.models import TenantUsageDay, TenantUsageHour
from queues import services
from tenants.cache import tenant_cache
from tenants.context import tenant_scope
from tests.factories import TenantFactory, issue_key, key_client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_table():
    usage.table.take()
    yield
    usage.table.take()


def _hour_row(tenant) -> TenantUsageHour:
    return TenantUsageHour.all_tenants.get(tenant=tenant)


def test_a_tenants_requests_are_counted_and_flushes_add_up():
    tenant, other = TenantFactory(), TenantFactory()
    client = key_client(issue_key(tenant)[1])
    for _ in range(3):
        assert client.get("/api/v1/tenant/").status_code == 200
    assert client.get("/api/v1/jobs/999999/").status_code == 404
    assert usage.table.flush() == 1
    assert client.get("/api/v1/tenant/").status_code == 200
    assert usage.table.flush() == 1

    row = _hour_row(tenant)
    assert (row.requests, row.errors_4xx, row.errors_5xx, row.rejected) == (5, 1, 0, 0)
    assert row.bytes_out > 0 and row.latency_ms_total > 0
    assert sum(getattr(row, name) for name in usage.LATENCY_FIELDS) == 5
    assert row.hour == timezone.now().replace(minute=0, second=0, microsecond=0)
    assert not TenantUsageHour.all_tenants.filter(tenant=other).exists()
    assert Client().get("/health/live").status_code == 200  # no tenant: nothing counted
    assert usage.table.flush() == 0


def test_a_job_counts_in_its_tenants_usage(django_capture_on_commit_callbacks):
    tenant = TenantFactory()
    with django_capture_on_commit_callbacks(execute=True):
        services.job_enqueue(tenant=tenant, kind="tests.scope", payload={})
    usage.table.flush()
    assert _hour_row(tenant).jobs == 1


def test_a_flush_that_fails_drops_its_rows_counts_them_and_requests_still_answer():
    tenant = TenantFactory()
    client = key_client(issue_key(tenant)[1])
    assert client.get("/api/v1/tenant/").status_code == 200
    before = REGISTRY.get_sample_value("ils_tenant_usage_dropped_total") or 0.0
    table = TenantUsageHour._meta.db_table
    with connection.cursor() as cursor:  # the table is gone for the flush: a real write failure
        cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_away"')
    try:
        assert usage.table.flush() == 0
        assert client.get("/api/v1/tenant/").status_code == 200
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{table}_away" RENAME TO "{table}"')
    assert REGISTRY.get_sample_value("ils_tenant_usage_dropped_total") == before + 1
    assert usage.table.flush() == 1  # the second request's count, after the failure
    assert _hour_row(tenant).requests == 1


def test_latency_percentiles_interpolate_within_their_bucket():
    row = TenantUsageHour(latency_le_10ms=50, latency_le_25ms=40, latency_le_50ms=10)
    assert row.latency_percentile(0.5) == 10.0
    assert row.latency_percentile(0.7) == pytest.approx(17.5)
    assert row.latency_percentile(0.95) == pytest.approx(37.5)
    assert TenantUsageHour().latency_percentile(0.5) is None
    assert TenantUsageHour(latency_over_2500ms=3).latency_percentile(0.99) == 2500.0


def test_finished_days_roll_up_once_and_old_rows_are_pruned(settings):
    tenant = TenantFactory()
    day = datetime(2026, 11, 20, tzinfo=UTC)
    for hour, requests in ((1, 10), (13, 5)):
        TenantUsageHour.all_tenants.create(
            tenant=tenant, hour=day + timedelta(hours=hour), requests=requests, jobs=1
        )
    now = day + timedelta(days=1, hours=2)
    written = usage.roll_up_days(now=now)
    assert written == 1
    rolled = TenantUsageDay.all_tenants.get(tenant=tenant)
    assert (rolled.day, rolled.requests, rolled.jobs) == (day.date(), 15, 2)
    assert usage.roll_up_days(now=now) == 0  # once

    settings.TENANT_METRICS_HOURLY_DAYS = 3
    settings.TENANT_METRICS_DAILY_DAYS = 30
    assert usage.prune(now=day + timedelta(days=5)) == (2, 0)
    assert usage.prune(now=day + timedelta(days=40)) == (0, 1)


def test_the_api_gives_a_tenant_its_own_figures_only():
    tenant, other = TenantFactory(), TenantFactory()
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    TenantUsageHour.all_tenants.create(tenant=tenant, hour=hour, requests=4,
                                       latency_ms_total=40.0, latency_le_10ms=4)  # fmt: skip
    TenantUsageHour.all_tenants.create(tenant=other, hour=hour, requests=77_777)
    TenantUsageDay.all_tenants.create(tenant=tenant, day=hour.date(), requests=9)
    client = key_client(issue_key(tenant)[1])

    hourly = client.get("/api/v1/usage/metrics").json()["results"]
    assert [(r["requests"], r["latency_mean_ms"], r["latency_p95_ms"]) for r in hourly] == [
        (4, 10.0, 9.5)
    ]
    daily = client.get("/api/v1/usage/metrics?granularity=day").json()["results"]
    assert [r["requests"] for r in daily] == [9]
    assert client.get("/api/v1/usage/metrics?granularity=week").status_code == 400
    theirs = key_client(issue_key(other)[1]).get("/api/v1/usage/metrics").json()["results"]
    assert [r["requests"] for r in theirs] == [77_777]
    assert Client().get("/api/v1/usage/metrics").status_code == 401


def test_prometheus_gets_the_busiest_tenants_and_the_rest_as_other(settings):
    settings.TENANT_METRICS_TOP_N = 3
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    tenants = [TenantFactory() for _ in range(6)]
    for number, tenant in enumerate(tenants, start=1):
        TenantUsageHour.all_tenants.create(tenant=tenant, hour=hour, requests=number * 10,
                                           errors_5xx=number)  # fmt: skip
    families = {family.name: family for family in SharedStateCollector().collect()}
    requests = {
        s.labels["tenant"]: s.value for s in families["ils_tenant_requests_this_hour"].samples
    }
    assert requests == {
        tenants[5].slug: 60,
        tenants[4].slug: 50,
        tenants[3].slug: 40,
        "other": 10 + 20 + 30,
    }
    errors = {s.labels["tenant"]: s.value for s in families["ils_tenant_errors_this_hour"].samples}
    assert errors["other"] == 1 + 2 + 3 and len(errors) == 4


def test_the_busiest_tenants_for_staff_only_ordered_as_asked(api_client, admin_client):
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    calm, busy, failing = TenantFactory(), TenantFactory(), TenantFactory()
    for tenant, requests, errors in ((calm, 5, 0), (busy, 500, 1), (failing, 50, 40)):
        TenantUsageHour.all_tenants.create(tenant=tenant, hour=hour, requests=requests,
                                           errors_5xx=errors, latency_le_100ms=requests)  # fmt: skip
    TenantUsageHour.all_tenants.create(tenant=calm, hour=hour - timedelta(days=3), requests=10**6)

    assert api_client.get("/api/ops/tenants/top").status_code in (401, 403)
    assert key_client(issue_key(calm)[1]).get("/api/ops/tenants/top").status_code == 403
    top = admin_client.get("/api/ops/tenants/top").json()
    assert [t["slug"] for t in top["tenants"]] == [busy.slug, failing.slug, calm.slug]
    assert top["tenants"][0]["requests"] == 500 and top["tenants"][0]["latency_p95_ms"] == 97.5
    by_errors = admin_client.get("/api/ops/tenants/top?by=errors&limit=1").json()["tenants"]
    assert [t["slug"] for t in by_errors] == [failing.slug]
    week = admin_client.get("/api/ops/tenants/top?hours=168").json()["tenants"]
    assert week[0]["slug"] == calm.slug  # its old hour counts over a week
    for bad in ("?hours=0", "?hours=169", "?limit=101", "?by=tenant", "?hours=%D9%A1"):
        assert admin_client.get(f"/api/ops/tenants/top{bad}").status_code == 400, bad


def test_the_admin_shows_the_busiest_tenants_and_a_tenants_charts(admin_client, client):
    tenant = TenantFactory()
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    TenantUsageHour.all_tenants.create(tenant=tenant, hour=hour, requests=42, errors_5xx=2,
                                       latency_le_50ms=42, jobs=3)  # fmt: skip
    busiest = admin_client.get("/admin/metrics/tenantusagehour/busiest/").content.decode()
    assert (
        tenant.slug in busiest and f"/admin/metrics/tenantusagehour/tenant/{tenant.pk}/" in busiest
    )
    page = admin_client.get(f"/admin/metrics/tenantusagehour/tenant/{tenant.pk}/").content.decode()
    assert "42 requests, 2 errors, 3 jobs" in page
    assert page.count("<rect") == 48 * 3  # 48 hours: requests and errors, and p95
    assert "<script" not in page.split('id="content-main"')[1]
    assert admin_client.get("/admin/metrics/tenantusagehour/tenant/999999/").status_code == 404
    assert client.get(f"/admin/metrics/tenantusagehour/tenant/{tenant.pk}/").status_code == 302
    assert admin_client.get("/admin/metrics/tenantusagehour/").status_code == 200


def _lookups(result: str) -> float:
    return REGISTRY.get_sample_value("ils_tenant_cache_lookups_total", {"result": result}) or 0.0


def test_the_tenant_caches_hits_and_misses_are_added_per_flush():
    tenant = TenantFactory()
    usage.table.flush()  # what earlier tests looked up is counted before this one starts
    before = _lookups("hit"), _lookups("miss")
    with tenant_scope(tenant):
        tenant_cache.get_or_set("probe", lambda: 1)  # a miss
        tenant_cache.get_or_set("probe", lambda: 2)  # a hit
        tenant_cache.get_or_set("probe", lambda: 3)  # a hit
    usage.table.flush()
    row = _hour_row(tenant)
    assert (row.cache_hits, row.cache_misses) == (2, 1)
    assert row.cache_hit_rate == pytest.approx(2 / 3)
    usage.table.flush()  # nothing grew: nothing added twice
    assert _hour_row(tenant).cache_hits == 2
    # and to Prometheus, summed over the tenants (no tenant label)
    assert (_lookups("hit") - before[0], _lookups("miss") - before[1]) == (2, 1)
    figures = key_client(issue_key(tenant)[1]).get("/api/v1/usage/metrics").json()["results"][0]
    assert figures["cache_hits"] == 2 and figures["cache_hit_rate"] == pytest.approx(2 / 3)


def test_a_tenant_deleted_before_the_flush_does_not_cost_the_others_their_rows():
    kept, gone = TenantFactory(), TenantFactory()
    usage.record_job(kept.pk)
    usage.record_job(gone.pk)
    gone.delete()
    assert usage.table.flush() == 1
    assert _hour_row(kept).jobs == 1
