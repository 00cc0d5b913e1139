"""The breakers page in admin, the degradation API, ``requires_dependencies`` and the system check."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.http import JsonResponse
from django.test import RequestFactory
from rest_framework.response import Response
from rest_framework.views import APIView

from degradation.breakers import (
    CLOSED,
    OPEN,
    REFERENCED_NAMES,
    breaker,
    requires_dependencies,
    reset_registry,
)
from degradation.checks import check_breaker_names
from degradation.models import BreakerEvent
from tests.degradation.breaker_helpers import configure_breakers
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

CIRCUITS = "/api/degradation/circuits"
HEALTH = "/api/degradation/health"


@pytest.fixture(autouse=True)
def _shared_breakers(settings):
    configure_breakers(settings, redis_url=django_settings.REDIS_URL)
    yield
    reset_registry()


@pytest.fixture
def staff():
    return UserFactory(username="ops", is_staff=True, is_superuser=True)


def test_admin_breakers_page_lists_live_state_and_actions_are_recorded_with_the_user(client, staff):
    client.force_login(staff)
    page = client.get("/admin/degradation/breakerevent/")
    assert page.status_code == 200
    body = page.content.decode()
    for name in ("redis", "storage", "email", "broker", "replica", "webhooks"):
        assert f"breaker-{name}" in body
    assert "Force open" in body

    answer = client.post("/admin/degradation/breakerevent/breakers/storage/open/")
    assert answer.status_code == 302
    assert breaker("storage").snapshot().state == OPEN
    event = BreakerEvent.objects.get()
    assert (event.breaker, event.from_state, event.to_state, event.actor) == (
        "storage",
        CLOSED,
        OPEN,
        staff,
    )

    client.post("/admin/degradation/breakerevent/breakers/storage/reset/")
    assert breaker("storage").snapshot().state == CLOSED
    assert BreakerEvent.objects.filter(to_state=CLOSED, actor=staff).count() == 1
    page = client.get("/admin/degradation/breakerevent/").content.decode()
    assert "ops" in page  # the history names the user


def test_admin_actions_need_staff(client):
    user = UserFactory(username="plain")
    client.force_login(user)
    answer = client.post("/admin/degradation/breakerevent/breakers/storage/open/")
    assert answer.status_code == 302 and "/login/" in answer["Location"]
    assert breaker("storage").snapshot().state == CLOSED
    assert not BreakerEvent.objects.exists()


def test_circuits_api_lists_and_forces_with_the_user(api_client, staff):
    api_client.force_authenticate(staff)
    listed = api_client.get(CIRCUITS)
    assert listed.status_code == 200
    circuits = {c["name"]: c for c in listed.json()["circuits"]}
    assert set(circuits) == {"redis", "storage", "email", "broker", "replica", "webhooks"}
    assert circuits["email"]["state"] == CLOSED
    assert (
        circuits["email"]["failure_threshold"]
        == django_settings.CIRCUIT_BREAKERS["email"]["failures"]
    )
    assert (
        circuits["storage"]["shared_state"] is True and circuits["redis"]["shared_state"] is False
    )

    opened = api_client.post(CIRCUITS, {"name": "email", "action": "open"}, format="json")
    assert opened.status_code == 200, opened.content
    assert opened.json()["state"] == OPEN and opened.json()["forced"] is True
    event = BreakerEvent.objects.get()
    assert (event.breaker, event.to_state, event.actor) == ("email", OPEN, staff)

    health = api_client.get(HEALTH).json()
    assert health["status"] == "degraded" and health["open"] == ["email"]
    assert "circuits" in health  # staff see the details

    closed = api_client.post(CIRCUITS, {"name": "email", "action": "close"}, format="json")
    assert closed.json()["state"] == CLOSED
    assert BreakerEvent.objects.filter(actor=staff).count() == 2


def test_circuits_api_refuses_non_staff_anonymous_and_bad_input(api_client, staff):
    anonymous = api_client.post(CIRCUITS, {"name": "email", "action": "open"}, format="json")
    assert anonymous.status_code in (401, 403)
    assert anonymous.json()["error"]["code"] in ("not_authenticated", "permission_denied")

    api_client.force_authenticate(UserFactory(username="member"))
    refused = api_client.post(CIRCUITS, {"name": "email", "action": "open"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert api_client.get(CIRCUITS).status_code == 403
    assert breaker("email").snapshot().state == CLOSED
    assert not BreakerEvent.objects.exists()

    api_client.force_authenticate(staff)
    unknown = api_client.post(CIRCUITS, {"name": "nope", "action": "open"}, format="json")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["details"]["name"] == "nope"
    bad = api_client.post(CIRCUITS, {"name": "email", "action": "explode"}, format="json")
    assert bad.status_code == 400
    assert "action" in bad.json()["error"]["details"]


def test_public_health_has_no_details(api_client):
    assert api_client.get(HEALTH).json() == {"status": "ok", "open": []}
    breaker("replica").force("open")
    assert api_client.get(HEALTH).json() == {"status": "degraded", "open": ["replica"]}


calls: list[str] = []


@requires_dependencies("storage")
def plain_view(request):
    calls.append("plain")
    return JsonResponse({"ok": True})


class UploadView(APIView):
    permission_classes: list = []

    @requires_dependencies("storage", "broker")
    def post(self, request):
        calls.append("drf")
        return Response({"ok": True})


def test_requires_dependencies_answers_503_with_retry_after_without_calling_the_view(settings):
    configure_breakers(
        settings,
        redis_url=django_settings.REDIS_URL,
        storage={"failures": 1, "reset_seconds": 30},
        broker={"failures": 1, "reset_seconds": 90},
    )
    calls.clear()
    factory = RequestFactory()
    assert plain_view(factory.get("/api/x")).status_code == 200
    assert UploadView.as_view()(factory.post("/api/y")).status_code == 200
    assert calls == ["plain", "drf"]

    def down():
        raise ConnectionError("down")

    for name in ("storage", "broker"):
        with pytest.raises(ConnectionError):
            breaker(name).call(down)

    plain = plain_view(factory.get("/api/x"))
    drf = UploadView.as_view()(factory.post("/api/y"))
    assert calls == ["plain", "drf"]  # neither view ran
    assert plain.status_code == drf.status_code == 503
    assert 25 <= int(plain["Retry-After"]) <= 30
    assert 85 <= int(drf["Retry-After"]) <= 90  # the longest wait of the open breakers
    error = __import__("json").loads(drf.content)["error"]
    assert error["code"] == "dependency_unavailable"
    assert error["details"] == {"breakers": ["broker", "storage"]}

    breaker("storage").force("reset")
    breaker("broker").force("reset")
    assert plain_view(factory.get("/api/x")).status_code == 200
    assert calls == ["plain", "drf", "plain"]


def test_circuit_open_from_a_drf_view_is_a_503_in_the_error_shape(settings):
    class ReportView(APIView):
        permission_classes: list = []

        def get(self, request):
            return Response(breaker("webhooks").call(lambda: "sent"))

    breaker("webhooks").force("open")
    answer = ReportView.as_view()(RequestFactory().get("/api/z"))
    answer.render()
    assert answer.status_code == 503
    assert answer["Retry-After"] == str(int(breaker("webhooks").reset_seconds))
    body = __import__("json").loads(answer.content)
    assert body["error"]["code"] == "dependency_unavailable"
    assert body["error"]["details"]["breaker"] == "webhooks"


def test_system_check_reports_unknown_names(settings):
    assert check_breaker_names() == []
    settings.CIRCUIT_BREAKERS = {**settings.CIRCUIT_BREAKERS, "nope": {"failures": 1}}
    errors = check_breaker_names()
    assert [e.id for e in errors] == ["degradation.E001"]
    assert "'nope'" in errors[0].msg
    with pytest.raises(SystemCheckError, match=r"degradation\.E001"):
        call_command("check")

    settings.CIRCUIT_BREAKERS = {k: v for k, v in settings.CIRCUIT_BREAKERS.items() if k != "nope"}
    try:

        @requires_dependencies("storage", "typo")
        def view(request):
            return JsonResponse({})

        errors = check_breaker_names()
        assert [e.id for e in errors] == ["degradation.E001"] and "'typo'" in errors[0].msg
    finally:
        REFERENCED_NAMES.discard("typo")
    assert check_breaker_names() == []
