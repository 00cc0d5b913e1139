"""``/metrics`` access and content, and the request metrics by plan and error code (one process)."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client import REGISTRY

from tests.factories import TenantFactory, issue_key, key_client

pytestmark = pytest.mark.django_db


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_loopback_may_scrape_and_gets_the_platform_metrics():
    answer = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain")
    body = answer.content.decode()
    assert 'ils_breaker_state{breaker="storage"} 0.0' in body
    assert 'ils_scrape_collector_errors{source="queues"} 0.0' in body
    assert "ils_queue_workers_alive" in body


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 403, "metrics_forbidden"),
        ({"HTTP_AUTHORIZATION": "Bearer not-the-token"}, 401, "invalid_metrics_token"),
        ({"HTTP_AUTHORIZATION": "Bearer "}, 403, "metrics_forbidden"),
    ],
)
def test_outside_the_networks_without_the_token_nothing_is_served(settings, headers, status, code):
    settings.METRICS_TOKEN = "s3cret-token-for-metrics"
    answer = Client(REMOTE_ADDR="203.0.113.9").get("/metrics", **headers)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    assert b"ils_" not in answer.content


def test_the_token_opens_it_from_anywhere_and_no_token_is_configured_by_default(settings):
    outside = Client(REMOTE_ADDR="203.0.113.9")
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 401
    settings.METRICS_TOKEN = "s3cret-token-for-metrics"
    answer = outside.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token-for-metrics")
    assert answer.status_code == 200 and b"ils_breaker_state" in answer.content


def test_an_allowed_network_and_only_get(settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.1.0.0/16"]
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="10.2.0.1").get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403  # not listed now
    assert Client(REMOTE_ADDR="10.1.2.3").post("/metrics").status_code == 405


def test_a_scrape_is_not_counted_as_a_request():
    before = _value("ils_http_requests_total", plan="none", route="unresolved", method="GET",
                    status_class="2xx")  # fmt: skip
    Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    after = _value("ils_http_requests_total", plan="none", route="unresolved", method="GET",
                   status_class="2xx")  # fmt: skip
    assert after == before


def test_requests_are_counted_by_plan_route_and_status_class_and_errors_by_code():
    tenant = TenantFactory()
    client = key_client(issue_key(tenant)[1])
    plan = tenant.plan.code
    labels = {"plan": plan, "route": "tenant", "method": "GET", "status_class": "2xx"}
    before = _value("ils_http_requests_total", **labels)
    latency_before = _value("ils_http_request_duration_seconds_count", plan=plan)
    assert client.get("/api/v1/tenant/").status_code == 200
    assert client.get("/api/v1/tenant/").status_code == 200
    assert _value("ils_http_requests_total", **labels) == before + 2
    assert _value("ils_http_request_duration_seconds_count", plan=plan) == latency_before + 2

    invalid_before = _value("ils_api_errors_total", code="invalid_cursor", plan=plan)
    assert client.get("/api/v1/files/?cursor=forged!").status_code == 400
    assert _value("ils_api_errors_total", code="invalid_cursor", plan=plan) == invalid_before + 1

    anonymous_before = _value("ils_api_errors_total", code="invalid_api_key", plan="none")
    assert key_client("ils_not_a_key").get("/api/v1/tenant/").status_code == 401
    assert _value("ils_api_errors_total", code="invalid_api_key", plan="none") == (
        anonymous_before + 1
    )


def test_a_bad_allowed_network_fails_the_system_check(settings):
    from metrics.checks import check_metrics_networks

    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "not-a-network"]
    errors = check_metrics_networks()
    assert [error.id for error in errors] == ["metrics.E001"]
    assert "not-a-network" in errors[0].msg


def test_behind_a_proxy_a_forwarded_list_cannot_pass_for_an_allowed_address(settings):
    settings.RATELIMIT_IP_META_KEY = "HTTP_X_FORWARDED_FOR"
    outside = Client(REMOTE_ADDR="127.0.0.1")  # the proxy itself is local
    spoofed = outside.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1, 203.0.113.9")
    assert spoofed.status_code == 403
    assert outside.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert outside.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 200
    settings.RATELIMIT_IP_META_KEY = "tests.metrics.test_exporter.real_ip"  # a dotted path
    assert outside.get("/metrics", HTTP_X_REAL_IP="127.0.0.1").status_code == 200
    assert outside.get("/metrics", HTTP_X_REAL_IP="203.0.113.9").status_code == 403


def real_ip(request) -> str:
    return request.META.get("HTTP_X_REAL_IP", "")
