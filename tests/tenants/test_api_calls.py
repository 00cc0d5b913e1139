"""The monthly API-call quota (``tenants/limits/api_calls.py``), its warning header and ``/api/v1/usage/``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as settings_module
from django.core.cache import caches
from django.test import AsyncClient

from config.db_router import PIN_KEY_PREFIX
from tenants import limits
from tenants.cache import global_cache
from tenants.exceptions import QuotaExceeded
from tenants.limits import api_calls, quotas
from tenants.models import TenantUsage
from tests.assertions import assert_error
from tests.factories import (
    TenantFactory,
    issue_key,
    key_client,
    plan,
)

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

URL = "/api/v1/tenant/"
MONTH = limits.API_CALLS_PER_MONTH


def _tenant_client(**overrides):
    tenant = TenantFactory(plan=plan("free"), limit_overrides=overrides)
    _, secret = issue_key(tenant)
    return tenant, key_client(secret)


def _durable(tenant) -> int:
    return quotas.quota_usage(tenant, MONTH)


def test_calls_stop_exactly_at_the_monthly_limit_with_the_quota_error(settings):
    settings.API_CALLS_FLUSH_EVERY = 1000
    tenant, client = _tenant_client(api_calls_per_month=3)

    assert [client.get(URL).status_code for _ in range(3)] == [200] * 3
    refused = client.get(URL)

    error = assert_error(refused, 403, "quota_exceeded")
    assert error["details"].pop("resets_at").endswith("-01T00:00:00Z")  # the next month's start
    assert error["details"] == {"resource": MONTH, "limit": 3, "used": 3, "requested": 1}
    assert api_calls.api_calls_used(tenant) == 3  # the refused call took its increment back
    assert client.get("/api/v1/usage/").status_code == 403  # the usage view is an API call too


def test_a_warning_header_from_80_percent_and_one_signal_per_crossing(settings):
    settings.API_CALLS_FLUSH_EVERY = 1000
    tenant, client = _tenant_client(api_calls_per_month=5)
    crossings = []

    def receiver(sender, **kwargs):
        crossings.append((kwargs["resource"], kwargs["percent"], kwargs["used"], kwargs["limit"]))

    quotas.quota_threshold_crossed.connect(receiver)
    try:
        answers = [client.get(URL) for _ in range(5)]
    finally:
        quotas.quota_threshold_crossed.disconnect(receiver)

    assert [a.status_code for a in answers] == [200] * 5
    assert [a.get("Quota-Warning") for a in answers] == [
        None,
        None,
        None,
        f"{MONTH}; used=4; limit=5; percent=80",
        f"{MONTH}; used=5; limit=5; percent=100",
    ]
    assert crossings == [(MONTH, 80, 4, 5), (MONTH, 100, 5, 5)]
    # A crossing is written to the database at once, whatever the flush interval.
    assert _durable(tenant) == 5


def _shared_count(tenant) -> int | None:
    """The month's count in the counter store, as every process sees it."""
    period = quotas.period_key(MONTH)
    return caches[settings_module.RATELIMIT_USE_CACHE].get(f"api-calls:{tenant.pk}:{period}")


def test_the_count_is_written_to_the_database_every_n_calls(settings):
    settings.API_CALLS_FLUSH_EVERY = 3
    settings.API_CALLS_BATCH = 1  # every call added at once: the write-back is what is watched
    tenant, client = _tenant_client(api_calls_per_month=None)

    durable = []
    for _ in range(7):
        assert client.get(URL).status_code == 200
        durable.append(_durable(tenant))

    assert durable == [0, 0, 3, 3, 3, 6, 6]
    assert api_calls.api_calls_used(tenant) == 7


def test_far_from_the_limit_a_process_adds_its_calls_in_batches(settings):
    settings.API_CALLS_BATCH, settings.API_CALLS_BATCH_SECONDS = 5, 3600
    tenant, client = _tenant_client(api_calls_per_month=None)

    shared = []
    for _ in range(11):
        assert client.get(URL).status_code == 200
        shared.append(_shared_count(tenant))

    # One INCRBY per five calls; in between the calls wait in this process, which counts them.
    assert shared == [None, None, None, None, 5, 5, 5, 5, 5, 10, 10]
    assert api_calls.api_calls_used(tenant) == 11
    assert api_calls.flush_held_back() == 1  # what a process adds when it exits
    assert _shared_count(tenant) == 11


def test_a_batch_older_than_its_seconds_is_added_with_the_next_call(settings):
    settings.API_CALLS_BATCH, settings.API_CALLS_BATCH_SECONDS = 100, 0
    tenant, client = _tenant_client(api_calls_per_month=None)

    for expected in (1, 2, 3):
        assert client.get(URL).status_code == 200
        assert _shared_count(tenant) == expected


def test_near_the_limit_every_call_is_counted_at_once_and_none_passes_it(settings):
    settings.API_CALLS_BATCH, settings.API_CALLS_BATCH_SECONDS = 100, 3600
    settings.API_CALLS_EXACT_MARGIN = 5
    tenant, client = _tenant_client(api_calls_per_month=10)

    statuses, shared = [], []
    for _ in range(12):
        statuses.append(client.get(URL).status_code)
        shared.append(_shared_count(tenant))

    assert statuses == [200] * 10 + [403, 403]
    # The first call learns the count; calls 2-5 are held back (5+ calls from the limit); from
    # the 6th on, within the margin, each is counted at once, the held-back ones with it.
    assert shared == [1, 1, 1, 1, 1, 6, 7, 8, 9, 10, 10, 10]
    assert api_calls.api_calls_used(tenant) == 10


def test_a_count_seen_longer_ago_than_the_batch_seconds_is_not_trusted(settings):
    settings.API_CALLS_BATCH, settings.API_CALLS_BATCH_SECONDS = 100, 0
    settings.API_CALLS_EXACT_MARGIN = 5
    tenant, client = _tenant_client(api_calls_per_month=20)
    assert client.get(URL).status_code == 200
    period = quotas.period_key(MONTH)
    caches[settings_module.RATELIMIT_USE_CACHE].set(f"api-calls:{tenant.pk}:{period}", 18)

    statuses = [client.get(URL).status_code for _ in range(4)]

    assert statuses == [200, 200, 403, 403]  # other processes' calls count at once
    assert _shared_count(tenant) == 20


def test_a_lost_counter_starts_again_from_the_database_row(settings):
    settings.API_CALLS_FLUSH_EVERY = 2
    tenant, client = _tenant_client(api_calls_per_month=5)
    for _ in range(4):
        client.get(URL)
    assert _durable(tenant) == 4

    caches["ratelimit"].clear()  # e.g. a Redis restart with nothing on disk

    assert client.get(URL).status_code == 200
    assert_error(client.get(URL), 403, "quota_exceeded")
    assert api_calls.api_calls_used(tenant) == 5


def test_writing_the_count_does_not_pin_the_tenants_reads_to_the_primary(settings):
    settings.API_CALLS_FLUSH_EVERY = 1
    # Replicas "configured" (none is ever healthy here): writes in a request now pin its tenant.
    settings.READ_REPLICA_ALIASES = ["replica-never-healthy"]
    tenant, client = _tenant_client()

    assert client.get(URL).status_code == 200

    assert _durable(tenant) == 1
    assert global_cache().get(f"{PIN_KEY_PREFIX}:tenant:{tenant.pk}") is None


def test_a_new_month_is_a_new_count():
    tenant, _ = _tenant_client(api_calls_per_month=1)
    november = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
    december = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)

    assert api_calls.count_api_call(tenant, now=november).used == 1
    with pytest.raises(QuotaExceeded):
        api_calls.count_api_call(tenant, now=november)
    assert api_calls.count_api_call(tenant, now=december).used == 1


def test_usage_lists_every_quota_with_limit_used_and_reset(settings, ratelimit_clock):
    settings.API_CALLS_FLUSH_EVERY = 1000
    tenant, client = _tenant_client(storage_bytes=1000, jobs_per_day=10)
    TenantUsage.all_tenants.create(
        tenant=tenant, resource=limits.STORAGE_BYTES, period="", used=850
    )
    client.get(URL)

    response = client.get("/api/v1/usage/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body["quotas"]) == {
        "max_members",
        "max_api_keys",
        "storage_bytes",
        "max_file_bytes",
        "jobs_per_day",
        "api_calls_per_month",
    }
    assert body["quotas"]["storage_bytes"] == {
        "label": "Stored bytes",
        "unit": "bytes",
        "limit": 1000,
        "used": 850,
        "percent": 85,
        "resets_at": None,
    }
    assert body["quotas"]["api_calls_per_month"]["used"] == 2  # this call included
    assert body["quotas"]["api_calls_per_month"]["resets_at"].endswith("-01T00:00:00Z")
    assert body["quotas"]["jobs_per_day"]["resets_at"].endswith("T00:00:00Z")
    assert body["quotas"]["max_file_bytes"]["used"] is None
    reads = body["rate_limit"]["tenant"]["reads"]
    assert (reads["limit"], reads["remaining"]) == (60, 58)  # two reads in this window
    assert response["RateLimit-Remaining"] == "58"
    assert body["rate_limit"]["tenant"]["writes"] == {
        "limit": 15,
        "remaining": 15,
        "reset": reads["reset"],
    }
    assert "api_key" not in body["rate_limit"]


def test_quota_reservations_in_a_request_add_their_warning(settings):
    """A quota checked by a view (here API keys, counted under the tenant's row lock) warns too."""
    tenant, client = _tenant_client(max_api_keys=5)
    for number in range(2):
        issue_key(tenant, name=f"key {number}")

    response = client.post("/api/v1/api-keys/", {"name": "fourth"}, format="json")

    assert response.status_code == 201, response.content
    assert response["Quota-Warning"] == "max_api_keys; used=4; limit=5; percent=80"


def test_under_asgi_the_headers_and_the_write_back_work_too(settings):
    settings.API_CALLS_FLUSH_EVERY = 1
    tenant = TenantFactory(plan=plan("free"), limit_overrides={"api_calls_per_month": 5})
    _, secret = issue_key(tenant)

    async def four_calls():
        headers = {"Authorization": f"Bearer {secret}"}
        return [await AsyncClient().get(URL, headers=headers) for _ in range(4)]

    answers = async_to_sync(four_calls)()

    assert [a.status_code for a in answers] == [200] * 4
    assert [a["RateLimit-Remaining"] for a in answers] == ["59", "58", "57", "56"]
    assert answers[-1]["Quota-Warning"] == f"{MONTH}; used=4; limit=5; percent=80"
    assert _durable(tenant) == 4
