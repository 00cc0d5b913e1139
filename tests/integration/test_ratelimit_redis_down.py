"""Rate limits with the Redis process stopped: ``RATELIMIT_FAIL_OPEN`` decides, and never a 500.

A throwaway redis-server holds the cache and the rate-limit counters; the test stops the process
(SIGTERM, not a patch) and checks both settings: fail open lets requests through unlimited (no
RateLimit headers, counted and logged once), fail closed answers 503 ``rate_limit_unavailable``
with ``Retry-After``. The failed-key counter follows the same rule.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack

import pytest
from django.test import override_settings

from scripts.services import redis_server
from tenants.limits import ratelimits
from tests.assertions import assert_error
from tests.factories import TenantFactory, issue_key, key_client, plan

pytestmark = [pytest.mark.redis, pytest.mark.django_db]

URL = "/api/v1/tenant/"


def _caches_on(url: str) -> dict:
    redis = {
        "BACKEND": "degradation.cache.ResilientRedisCache",
        "LOCATION": url,
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
    }
    return {
        "default": {**redis, "KEY_PREFIX": "ils", "KEY_FUNCTION": "tenants.cache.make_key"},
        "global": {**redis, "KEY_PREFIX": "ils-g"},
        "flags": {**redis, "KEY_PREFIX": "ils-flags"},
        "ratelimit": {
            **redis,
            "KEY_PREFIX": "ils-rl",
            "OPTIONS": {**redis["OPTIONS"], "FALLBACK": False, "REMEMBER_ADDED": True},
        },
    }


@pytest.fixture
def stopped_redis():
    """Yields a function that stops the Redis all caches and counters use, once."""
    with ExitStack() as server:
        url = server.enter_context(redis_server())
        with override_settings(CACHES=_caches_on(url)):
            yield server.close


@pytest.fixture
def api():
    tenant = TenantFactory(plan=plan("free"))
    _, secret = issue_key(tenant)
    return key_client(secret)


def test_fail_open_lets_requests_through_unlimited_and_logs_the_outage_once(
    settings, stopped_redis, api, caplog
):
    settings.RATELIMIT_FAIL_OPEN = True
    before = api.get(URL)
    assert before.status_code == 200
    assert before["RateLimit-Limit"] == "60"
    counted = ratelimits.outage_counters()

    stopped_redis()
    with caplog.at_level(logging.WARNING, logger="tenants.limits.ratelimits"):
        answers = [api.get(URL) for _ in range(5)]
        wrong_key = key_client("ils_000000000000_not-a-real-key").get(URL)

    assert [a.status_code for a in answers] == [200] * 5, answers[0].content
    assert all("RateLimit-Limit" not in a for a in answers)
    assert_error(wrong_key, 401, "invalid_api_key")
    after = ratelimits.outage_counters()
    assert after["failed_open"] > counted["failed_open"]
    assert after["failed_closed"] == counted["failed_closed"]
    assert after["outages"] == counted["outages"] + 1
    outage_lines = [r for r in caplog.records if r.name == "tenants.limits.ratelimits"]
    assert len(outage_lines) == 1
    assert "let through unlimited" in outage_lines[0].getMessage()


def test_fail_closed_answers_503_with_retry_after_never_500(settings, stopped_redis, api):
    settings.RATELIMIT_FAIL_OPEN = False
    assert api.get(URL).status_code == 200
    counted = ratelimits.outage_counters()

    stopped_redis()
    answers = [api.get(URL) for _ in range(3)]
    wrong_key = key_client("ils_000000000000_not-a-real-key").get(URL)
    usage = api.get("/api/v1/usage/")

    for answer in [*answers, wrong_key, usage]:
        assert_error(answer, 503, "rate_limit_unavailable")
        assert answer["Retry-After"] == "5"
    after = ratelimits.outage_counters()
    assert after["failed_closed"] >= counted["failed_closed"] + 5
    assert after["failed_open"] == counted["failed_open"]


def test_usage_answers_with_redis_stopped_when_failing_open(settings, stopped_redis, api):
    settings.RATELIMIT_FAIL_OPEN = True
    assert api.get(URL).status_code == 200

    stopped_redis()
    response = api.get("/api/v1/usage/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["quotas"]["max_api_keys"] == {
        "label": "Active API keys",
        "unit": "keys",
        "limit": 2,
        "used": 1,
        "percent": 50,
        "resets_at": None,
    }
    # The budget cannot be read: it shows the full limit rather than failing the request.
    assert body["rate_limit"]["tenant"]["reads"]["limit"] == 60
