"""``/api/v1/jobs/``: create a job of a public kind, list, get, cancel; idempotency; errors.

In embedded mode a job runs right after its commit; these tests' transaction never commits (but
in the one marked ``transaction=True``), so their jobs stay queued unless given a ``run_at``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from queues.models import Job
from tenants.models import ApiKey
from tests.assertions import assert_error
from tests.factories import TenantFactory, issue_key, key_client, plan

pytestmark = pytest.mark.django_db

URL = "/api/v1/jobs/"
LATER = (timezone.now() + timedelta(days=1)).isoformat()


@pytest.fixture
def tenant():
    return TenantFactory(plan=plan("pro"))


@pytest.fixture
def writer(tenant):
    return key_client(issue_key(tenant)[1])


def create(client, body: dict, key: str | None = None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(URL, body, format="json", **headers)


@pytest.mark.django_db(transaction=True)
def test_a_job_is_accepted_runs_and_reads_back(tenant, writer):
    """Committed for real: the job has run (in-process) by the time the answer is made."""
    response = create(writer, {"kind": "diagnostics.echo", "payload": {"message": "hi"}})

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["kind"], body["status"], body["result"]) == (
        "diagnostics.echo",
        "succeeded",
        {"message": "hi"},
    )
    assert body["waiting_for_broker"] is False
    assert Job.all_tenants.get(pk=body["id"]).tenant_id == tenant.pk
    assert writer.get(f"{URL}{body['id']}/").json() == body


def test_a_job_with_run_at_waits_and_can_be_cancelled(writer):
    body = create(writer, {"kind": "diagnostics.echo", "run_at": LATER}).json()

    assert body["status"] == "scheduled"
    response = writer.post(f"{URL}{body['id']}/cancel/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert_error(writer.post(f"{URL}{body['id']}/cancel/"), 409, "job_not_cancellable")


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "invalid", "kind"),
        ({"kind": "no.such.kind"}, "unknown_job_kind", "kind"),
        ({"kind": "diagnostics.sleep"}, "invalid", "payload"),
        ({"kind": "diagnostics.sleep", "payload": {"seconds": 601}}, "invalid", "payload"),
        ({"kind": "diagnostics.fail", "payload": {"times": "²"}}, "invalid", "payload"),
        ({"kind": "diagnostics.echo", "payload": ["not", "an", "object"]}, "invalid", "payload"),
        ({"kind": "diagnostics.echo", "run_at": "tomorrow"}, "invalid", "run_at"),
    ],
)
def test_bad_jobs_are_refused_with_field_details_and_nothing_written(writer, body, code, field):
    error = assert_error(create(writer, body), 400, code)

    assert field in error["details"]
    assert not Job.all_tenants.exists()


def test_a_kind_not_public_is_unknown_here(writer):
    assert_error(create(writer, {"kind": "tests.hidden"}), 400, "unknown_job_kind")
    assert "tests.hidden" not in [row["name"] for row in writer.get(f"{URL}kinds/").json()]


def test_the_kinds_are_listed(writer):
    names = [row["name"] for row in writer.get(f"{URL}kinds/").json()]

    assert {"diagnostics.echo", "diagnostics.fail", "diagnostics.sleep"} <= set(names)


def test_the_same_idempotency_key_gets_the_same_job(tenant, writer):
    body = {"kind": "diagnostics.echo", "payload": {"message": 1}}
    first = create(writer, body, key="order-42")
    again = create(writer, body, key="order-42")
    other = create(writer, {**body, "payload": {"message": 2}}, key="order-42")

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert_error(other, 409, "idempotency_conflict")
    assert Job.all_tenants.filter(tenant=tenant).count() == 1


@pytest.mark.parametrize("key", ["", "with space", "é", "x" * 201, "unique:report:1"])
def test_a_malformed_idempotency_key_is_invalid(writer, key):
    error = assert_error(create(writer, {"kind": "diagnostics.echo"}, key=key), 400, "invalid")

    assert "Idempotency-Key" in error["details"]
    assert not Job.all_tenants.exists()


def test_over_the_daily_quota_is_403_with_the_reset_time():
    tenant = TenantFactory(plan=plan("free"), limit_overrides={"jobs_per_day": 1})
    client = key_client(issue_key(tenant)[1])
    assert create(client, {"kind": "diagnostics.echo"}).status_code == 202

    error = assert_error(create(client, {"kind": "diagnostics.echo"}), 403, "quota_exceeded")

    assert error["details"]["resource"] == "jobs_per_day" and error["details"]["resets_at"]
    assert Job.all_tenants.filter(tenant=tenant).count() == 1


def test_the_list_is_the_tenants_own_paginated_and_filtered(tenant, writer):
    other = key_client(issue_key(TenantFactory())[1])
    create(other, {"kind": "diagnostics.echo"})
    done = create(writer, {"kind": "diagnostics.echo"}).json()
    waiting = create(writer, {"kind": "diagnostics.fail", "payload": {"times": 0}, "run_at": LATER})
    waiting = waiting.json()

    body = writer.get(URL).json()
    assert set(body) == {"results", "next", "previous"}
    assert [row["id"] for row in body["results"]] == [waiting["id"], done["id"]]
    assert [r["id"] for r in writer.get(URL, {"status": "scheduled"}).json()["results"]] == [
        waiting["id"]
    ]
    assert [r["id"] for r in writer.get(URL, {"kind": "diagnostics.echo"}).json()["results"]] == [
        done["id"]
    ]
    assert_error(writer.get(URL, {"status": "lost"}), 400, "invalid")


def test_another_tenants_job_is_not_found(writer):
    other = key_client(issue_key(TenantFactory())[1])
    theirs = create(other, {"kind": "diagnostics.echo", "run_at": LATER}).json()

    assert_error(writer.get(f"{URL}{theirs['id']}/"), 404, "not_found")
    assert_error(writer.post(f"{URL}{theirs['id']}/cancel/"), 404, "not_found")
    assert Job.all_tenants.get(pk=theirs["id"]).status == "scheduled"


def test_a_read_key_lists_but_cannot_create_or_cancel(tenant, writer):
    waiting = create(writer, {"kind": "diagnostics.echo", "run_at": LATER}).json()
    reader = key_client(issue_key(tenant, scopes=[ApiKey.Scope.READ])[1])

    assert reader.get(URL).status_code == 200
    assert_error(create(reader, {"kind": "diagnostics.echo"}), 403, "permission_denied")
    assert_error(reader.post(f"{URL}{waiting['id']}/cancel/"), 403, "permission_denied")
    assert Job.all_tenants.count() == 1
