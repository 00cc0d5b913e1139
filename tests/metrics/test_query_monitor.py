"""The query monitor on real PostgreSQL through the production middleware: fingerprints, N+1s
(flagged on a deliberate N+1 view, not on its fixed version), slow queries with their plan, the
flush into ``QueryFingerprint``, and jobs as units."""

from __future__ import annotations

import logging

import pytest
from django.db import connection
from django.test import Client

import tests.queues.kinds  # noqa: F401  (registers the test kinds)
from metrics.models import QueryFingerprint
from metrics.queries.fingerprint import fingerprint, shape
from metrics.queries.monitor import monitored, store
from queues import services
from tenants.context import tenant_scope
from tests.factories import MembershipFactory, TenantFactory

probe_urls = pytest.mark.urls("tests.metrics.urls_queries")


@pytest.fixture
def every_request(settings):
    settings.QUERY_MONITOR_SAMPLE_RATE = 1.0
    settings.QUERY_MONITOR_N_PLUS_ONE = 5
    store.take()  # what earlier tests left in this process
    yield
    store.take()


def test_a_shape_has_no_literals_and_one_id_whatever_the_list_lengths():
    one = 'SELECT "t"."id" FROM "t" WHERE "t"."id" IN (%s, %s) AND "t"."x" = \'a\' LIMIT 21'
    two = 'SELECT "t"."id" FROM "t" WHERE "t"."id" IN (%s, %s, %s)  AND "t"."x" = \'b\' LIMIT 5'
    assert shape(one) == 'SELECT "t"."id" FROM "t" WHERE "t"."id" IN (...) AND "t"."x" = ? LIMIT ?'
    assert fingerprint(one)[0] == fingerprint(two)[0]
    assert shape('INSERT INTO "t" ("a") VALUES (%s), (%s), (%s)') == (
        'INSERT INTO "t" ("a") VALUES (?), ...'
    )
    assert shape('SELECT "t1"."c2" FROM "t1"') == 'SELECT "t1"."c2" FROM "t1"'  # names keep digits
    assert fingerprint('SELECT 1 FROM "a"')[0] != fingerprint('SELECT 1 FROM "b"')[0]


@probe_urls
@pytest.mark.django_db
def test_the_n_plus_one_view_is_flagged_with_our_line_and_its_fix_is_not(every_request, caplog):
    tenant = TenantFactory()
    for _ in range(8):
        MembershipFactory(tenant=tenant)
    caplog.set_level(logging.WARNING, logger="metrics.queries.monitor")

    assert Client().get("/fixed/").status_code == 200
    assert not [r for r in caplog.records if r.getMessage() == "N+1 query"]
    assert Client().get("/n-plus-one/").status_code == 200

    flagged = [r for r in caplog.records if r.getMessage() == "N+1 query"]
    assert len(flagged) == 1
    assert flagged[0].route == "probe-n-plus-one" and flagged[0].count == 8
    assert flagged[0].at.startswith("tests/metrics/urls_queries.py:")
    assert flagged[0].at.endswith("in <listcomp>") or flagged[0].at.endswith("in n_plus_one")
    assert '"auth_user"' in flagged[0].sql

    assert store.flush() >= 2
    user_query = QueryFingerprint.objects.get(n_plus_one_runs=1)
    assert user_query.n_plus_one_max == 8
    assert user_query.routes == {"probe-n-plus-one": 8}
    assert user_query.n_plus_one_at == flagged[0].at
    joined = QueryFingerprint.objects.filter(sql__contains="INNER JOIN").get()
    assert joined.n_plus_one_runs == 0 and joined.routes == {"probe-fixed": 1}


@probe_urls
@pytest.mark.django_db
def test_a_slow_query_is_logged_and_its_plan_kept_without_its_parameters(settings, caplog):
    settings.QUERY_MONITOR_SAMPLE_RATE = 0.0  # slow queries are caught outside the sample too
    settings.SLOW_QUERY_MS = 50
    store.take()
    caplog.set_level(logging.WARNING, logger="metrics.queries.monitor")

    assert Client().get("/slow/").status_code == 200
    assert store.flush() == 1

    row = QueryFingerprint.objects.get()
    assert row.sql == "SELECT pg_sleep(?), ? AS secret"
    assert row.slow_calls == 1 and row.max_ms >= 50
    assert row.plan is not None and row.plan_at is not None
    assert "alice@example.com" not in str(row.plan) and row.sample_params is None
    messages = [r.getMessage() for r in caplog.records]
    assert "slow query" in messages and "slow query plan" in messages
    assert "alice@example.com" not in " ".join(str(r.__dict__) for r in caplog.records)


@pytest.mark.django_db
def test_flushes_from_two_processes_add_up_and_tenants_are_kept(every_request):
    tenant = TenantFactory()
    for _ in range(2):  # two flushes stand for two processes writing the same row
        with (
            monitored("job:test.kind", sampled=True),
            tenant_scope(tenant),
            connection.cursor() as cursor,
        ):
            cursor.execute("SELECT %s::int + 1", [41])
        store.flush()
    row = QueryFingerprint.objects.get(sql="SELECT ?::int + ?")
    assert row.calls == 2
    assert row.routes == {"job:test.kind": 2}
    assert list(row.top_tenants) == [str(tenant.pk)]


@pytest.mark.django_db
def test_outside_the_sample_nothing_but_slow_queries_is_counted(settings):
    settings.QUERY_MONITOR_SAMPLE_RATE = 0.0
    store.take()
    with monitored("x"), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert store.flush() == 0
    assert not QueryFingerprint.objects.exists()


@pytest.mark.django_db
def test_the_ops_api_is_for_staff_and_lists_the_costliest_and_the_slow(
    api_client, admin_client, settings
):
    QueryFingerprint.objects.create(fingerprint="a" * 16, sql="SELECT ?", calls=10, total_ms=500,
                                    max_ms=300, slow_calls=1, plan={"Plan": {}})  # fmt: skip
    QueryFingerprint.objects.create(fingerprint="b" * 16, sql="SELECT ?, ?", calls=100,
                                    total_ms=900, max_ms=20)  # fmt: skip
    settings.SLOW_QUERY_MS = 200

    assert api_client.get("/api/query-optimizer/metrics").status_code in (401, 403)
    every = admin_client.get("/api/query-optimizer/metrics").json()
    assert [f["fingerprint"] for f in every["fingerprints"]] == ["b" * 16, "a" * 16]
    assert every["fingerprints"][0]["mean_ms"] == 9.0 and "plan" not in every["fingerprints"][0]
    slow = admin_client.get("/api/query-optimizer/metrics?slowOnly=true&plans=true").json()
    assert [f["fingerprint"] for f in slow["fingerprints"]] == ["a" * 16]
    assert slow["fingerprints"][0]["plan"] == {"Plan": {}}
    for bad in ("?limit=0", "?limit=201", "?limit=%D9%A1", "?slowOnly=yes"):
        answer = admin_client.get(f"/api/query-optimizer/metrics{bad}")
        assert answer.status_code == 400, bad
        assert answer.json()["error"]["code"] == "invalid"


@pytest.mark.django_db
def test_health_says_ok_to_anyone_and_details_to_staff(api_client, admin_client, settings):
    assert api_client.get("/api/query-optimizer/health").json() == {"status": "ok"}
    staff = admin_client.get("/api/query-optimizer/health").json()
    assert staff["monitor_enabled"] is True and set(staff["extensions"]) == {
        "pg_stat_statements", "hypopg"
    }  # fmt: skip
    settings.QUERY_MONITOR_ENABLED = False
    assert api_client.get("/api/query-optimizer/health").json() == {"status": "degraded"}


@pytest.mark.django_db
def test_a_job_is_a_unit_labelled_with_its_kind(every_request, django_capture_on_commit_callbacks):
    tenant = TenantFactory()
    with django_capture_on_commit_callbacks(execute=True):  # embedded mode: runs after commit
        services.job_enqueue(tenant=tenant, kind="tests.side_effect", payload={})
    store.flush()
    routes = {label for row in QueryFingerprint.objects.all() for label in row.routes}
    assert "job:tests.side_effect" in routes
    insert = QueryFingerprint.objects.get(sql__startswith='INSERT INTO "tenants_invitation"')
    assert insert.routes == {"job:tests.side_effect": 1}
    assert list(insert.top_tenants) == [str(tenant.pk)]


@pytest.mark.django_db
def test_the_admin_lists_the_costliest_first_and_shows_a_plan(admin_client, client):
    QueryFingerprint.objects.create(fingerprint="c" * 16, sql="SELECT cheap", total_ms=1, calls=1)
    costly = QueryFingerprint.objects.create(
        fingerprint="d" * 16, sql="SELECT costly", total_ms=900, calls=3,
        plan={"Plan": {"Node Type": "Seq Scan"}},
    )  # fmt: skip
    page = admin_client.get("/admin/metrics/queryfingerprint/").content.decode()
    assert page.index("SELECT costly") < page.index("SELECT cheap")
    detail = admin_client.get(f"/admin/metrics/queryfingerprint/{costly.pk}/change/")
    assert detail.status_code == 200 and "Seq Scan" in detail.content.decode()
    assert admin_client.get("/admin/metrics/queryfingerprint/add/").status_code == 403
    assert client.get("/admin/metrics/queryfingerprint/").status_code == 302  # not signed in
