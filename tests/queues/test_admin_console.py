"""The queue console in Django Admin and the ops API on the seed's paths (``/api/queues/...``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import current_app
from django.contrib.admin.models import DELETION, LogEntry
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from queues import services
from queues.models import Job, Worker
from queues.selectors import queue_stats
from scripts.services import free_port
from tenants import admin as tenants_admin
from tests.factories import TenantFactory, UserFactory, issue_key, key_client

pytestmark = pytest.mark.django_db

LATER = timezone.now() + timedelta(days=1)
CHANGELIST = "admin:queues_job_changelist"


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(UserFactory(username="ops", is_staff=True, is_superuser=True))
    return client


def _job(tenant, status: str = "scheduled", kind: str = "diagnostics.echo", **fields) -> Job:
    payload = fields.pop("payload", {})
    job = services.job_enqueue(tenant=tenant, kind=kind, payload=payload, run_at=LATER).job
    Job.all_tenants.filter(pk=job.pk).update(status=status, **fields)
    return Job.all_tenants.get(pk=job.pk)


def test_the_console_shows_each_queues_figures(staff_client):
    tenant, now = TenantFactory(), timezone.now()
    _job(tenant, "queued", run_at=now - timedelta(seconds=90))
    _job(tenant, "running")
    _job(tenant, "succeeded", finished_at=now - timedelta(minutes=10))
    _job(tenant, "dead", finished_at=now - timedelta(minutes=3))
    _job(tenant, "succeeded", finished_at=now - timedelta(hours=2))  # before the last hour
    Worker.objects.create(name="w1@host", queues="default", last_seen=now)
    Worker.objects.create(name="w0@gone", last_seen=now - timedelta(minutes=5))

    response = staff_client.get(reverse("admin:queues_job_console"))

    assert response.status_code == 200
    default = next(queue for queue, _ in response.context["rows"] if queue.name == "default")
    assert (default.queued, default.running, default.scheduled) == (1, 1, 0)
    assert (default.succeeded_last_hour, default.failed_last_hour) == (1, 1)
    assert default.failure_rate == 0.5
    assert 85 <= default.oldest_waiting_seconds <= 120
    stats = response.context["stats"]
    assert [(w.name, w.alive) for w in stats.workers] == [("w0@gone", False), ("w1@host", True)]
    assert stats.health == "ok"  # embedded mode: no broker, jobs run in-process
    assert b"<svg" in response.content and b"failed or dead" in response.content


def test_the_changelist_counts_a_bounded_number_of_rows(staff_client, monkeypatch):
    monkeypatch.setattr(tenants_admin, "COUNT_CAP", 5)
    tenant = TenantFactory()
    for _ in range(8):
        _job(tenant)

    response = staff_client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    assert response.context["cl"].result_count == 6  # the cap, plus one: "more than 5"
    assert response.context["cl"].show_full_result_count is False


def test_the_changelist_queries_do_not_grow_with_the_rows(staff_client):
    def queries_for(count: int) -> int:
        for _ in range(count):
            _job(TenantFactory())
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(reverse(CHANGELIST)).status_code == 200
        return len(queries)

    assert queries_for(2) == queries_for(12)


def test_filters_find_a_tenants_dead_letters(staff_client):
    acme, other = TenantFactory(slug="acme"), TenantFactory()
    dead = _job(acme, "dead")
    _job(acme, "succeeded")
    _job(other, "dead")

    response = staff_client.get(reverse(CHANGELIST), {"q": "acme", "status__exact": "dead"})

    assert [job.pk for job in response.context["cl"].result_list] == [dead.pk]


def test_actions_go_through_the_services_and_are_logged(staff_client):
    tenant = TenantFactory()
    dead, waiting, done = _job(tenant, "dead"), _job(tenant, "scheduled"), _job(tenant, "succeeded")
    url = reverse(CHANGELIST)

    for action in ("retry_jobs", "cancel_jobs"):
        response = staff_client.post(
            url, {"action": action, "_selected_action": [dead.pk, waiting.pk, done.pk]}
        )
        assert response.status_code == 302

    statuses = dict(Job.all_tenants.values_list("pk", "status"))
    assert statuses == {dead.pk: "cancelled", waiting.pk: "cancelled", done.pk: "succeeded"}
    logged = LogEntry.objects.filter(user__username="ops").values_list("object_id", flat=True)
    assert sorted(map(int, logged)) == sorted([dead.pk, dead.pk, waiting.pk])


def test_discard_deletes_only_dead_letters_and_logs_each(staff_client):
    tenant = TenantFactory()
    dead, failed, waiting = _job(tenant, "dead"), _job(tenant, "failed"), _job(tenant, "queued")

    staff_client.post(
        reverse(CHANGELIST),
        {"action": "discard_jobs", "_selected_action": [dead.pk, failed.pk, waiting.pk]},
    )

    assert list(Job.all_tenants.values_list("pk", flat=True)) == [waiting.pk]
    assert LogEntry.objects.filter(action_flag=DELETION).count() == 2


def test_saving_a_dead_job_with_an_edited_payload_retries_it(staff_client):
    job = _job(TenantFactory(), "dead", kind="diagnostics.fail", payload={"times": 9})
    url = reverse("admin:queues_job_change", args=[job.pk])

    response = staff_client.post(url, {"payload": '{"times": 0}'})

    assert response.status_code == 302
    job.refresh_from_db()
    assert (job.status, job.payload, job.attempts) == ("queued", {"times": 0}, 0)


def test_a_running_jobs_payload_is_read_only(staff_client):
    job = _job(TenantFactory(), "running")

    page = staff_client.get(reverse("admin:queues_job_change", args=[job.pk]))

    assert "payload" not in page.context["adminform"].form.fields


def test_the_console_is_staff_only(client):
    client.force_login(UserFactory(is_staff=False))

    response = client.get(reverse("admin:queues_job_console"))

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# --- /api/queues/ -------------------------------------------------------------------------------


def test_stats_are_for_staff_only():
    staff, member = APIClient(), APIClient()
    staff.force_login(UserFactory(is_staff=True))
    member.force_login(UserFactory())

    assert staff.get("/api/queues/stats").status_code == 200
    assert member.get("/api/queues/stats").status_code == 403
    assert APIClient().get("/api/queues/stats").status_code in (401, 403)
    assert key_client(issue_key(TenantFactory())[1]).get("/api/queues/stats").status_code == 403


def test_health_says_ok_to_anyone_and_the_figures_to_staff():
    staff = APIClient()
    staff.force_login(UserFactory(is_staff=True))

    assert APIClient().get("/api/queues/health").json() == {"status": "ok"}
    body = staff.get("/api/queues/health").json()
    assert body["status"] == "ok" and {q["name"] for q in body["queues"]} >= {"default", "email"}


def test_health_is_degraded_when_the_broker_is_down(settings):
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.CELERY_BROKER_URL = closed
    previous, current_app.conf.broker_url = current_app.conf.broker_url, closed
    try:
        stats = queue_stats()
    finally:
        current_app.conf.broker_url = previous

    assert (stats.broker_up, stats.health) == (False, "degraded")
    assert all(queue.broker_depth is None for queue in stats.queues)


def test_a_bad_payload_edit_is_a_form_error_and_changes_nothing(staff_client):
    job = _job(TenantFactory(), "dead", kind="diagnostics.fail", payload={"times": 9})

    response = staff_client.post(
        reverse("admin:queues_job_change", args=[job.pk]), {"payload": '{"times": "many"}'}
    )

    assert response.status_code == 200  # the form again, with its error
    assert "Not a payload of diagnostics.fail" in str(response.context["adminform"].form.errors)
    job.refresh_from_db()
    assert (job.status, job.payload) == ("dead", {"times": 9})
