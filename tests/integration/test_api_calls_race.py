"""Concurrent requests at the edge of the monthly API-call quota: accepted calls == the limit.

Every thread is its own client with its own database connection, firing through the whole
middleware chain at the same instant, against real PostgreSQL and Redis.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from tenants import limits
from tenants.limits import api_calls, quotas
from tests.factories import TenantFactory, issue_key, key_client, plan

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

THREADS = 12
CALLS_PER_THREAD = 4
LIMIT = 20


def test_concurrent_calls_never_pass_the_monthly_limit(settings):
    settings.API_CALLS_FLUSH_EVERY = 1  # every accepted call also races on the database row
    tenant = TenantFactory(
        plan=plan("free"),
        limit_overrides={"api_calls_per_month": LIMIT, "requests_per_minute": 10_000},
    )
    _, secret = issue_key(tenant)
    barrier = threading.Barrier(THREADS, timeout=30)

    def fire(_: int) -> list[int]:
        client = key_client(secret)
        try:
            barrier.wait()
            return [client.get("/api/v1/tenant/").status_code for _ in range(CALLS_PER_THREAD)]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        statuses = Counter(code for codes in pool.map(fire, range(THREADS)) for code in codes)

    assert statuses == Counter({200: LIMIT, 403: THREADS * CALLS_PER_THREAD - LIMIT})
    assert api_calls.api_calls_used(tenant) == LIMIT
    assert quotas.quota_usage(tenant, limits.API_CALLS_PER_MONTH) == LIMIT
