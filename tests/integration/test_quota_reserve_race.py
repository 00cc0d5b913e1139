"""``quota_reserve`` holds under concurrency on PostgreSQL: a counter stops exactly at its limit.

Each thread has its own connection and transaction, as concurrent requests or workers would; only
the conditional ``UPDATE ... WHERE used <= limit - n`` keeps the count honest. The counter row
does not exist before the race, so concurrent first uses (``ON CONFLICT DO NOTHING``) race too.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from tenants.exceptions import QuotaExceeded
from tenants.limits import JOBS_PER_DAY, STORAGE_BYTES
from tenants.limits.quotas import quota_release, quota_reserve, quota_usage
from tenants.models import TenantUsage
from tests.factories import TenantFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 16
LIMIT = 10


class Injected(Exception):
    """The failure a test injects after the reservation, inside the block."""


def _race(action: Callable[[int], object]) -> Counter:
    """Run ``action(i)`` in every thread at the same instant; count outcomes by kind."""
    barrier = threading.Barrier(THREADS, timeout=30)

    def attempt(i: int) -> str:
        try:
            barrier.wait()
            action(i)
            return "reserved"
        except QuotaExceeded:
            return "quota_exceeded"
        except Injected:
            return "injected"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return Counter(pool.map(attempt, range(THREADS)))


@pytest.fixture
def tenant():
    return TenantFactory(limit_overrides={"jobs_per_day": LIMIT, "storage_bytes": 1000})


def test_concurrent_reservations_stop_exactly_at_the_limit(tenant):
    def reserve_one(i: int) -> None:
        with quota_reserve(tenant, JOBS_PER_DAY, 1):
            pass

    outcomes = _race(reserve_one)

    assert outcomes == Counter(reserved=LIMIT, quota_exceeded=THREADS - LIMIT)
    assert quota_usage(tenant, JOBS_PER_DAY) == LIMIT
    assert TenantUsage.all_tenants.filter(tenant=tenant).count() == 1

    quota_release(tenant, JOBS_PER_DAY, 1)
    with pytest.raises(Injected), quota_reserve(tenant, JOBS_PER_DAY, 1):
        assert quota_usage(tenant, JOBS_PER_DAY) == LIMIT
        raise Injected
    assert quota_usage(tenant, JOBS_PER_DAY) == LIMIT - 1


def test_concurrent_reservations_inside_transactions_stop_at_the_limit(tenant):
    def reserve_in_transaction(i: int) -> None:
        with transaction.atomic(), quota_reserve(tenant, STORAGE_BYTES, 150):
            TenantFactory(slug=f"racer-{i}")

    outcomes = _race(reserve_in_transaction)

    assert outcomes == Counter(reserved=6, quota_exceeded=THREADS - 6)
    assert quota_usage(tenant, STORAGE_BYTES) == 900


def test_failures_injected_after_reservation_leave_usage_unchanged(tenant):
    for _ in range(LIMIT - 3):
        with quota_reserve(tenant, JOBS_PER_DAY, 1):
            pass

    def reserve_then_fail(i: int) -> None:
        with quota_reserve(tenant, JOBS_PER_DAY, 1):
            raise Injected

    outcomes = _race(reserve_then_fail)

    assert outcomes["injected"] >= 3
    assert outcomes["injected"] + outcomes["quota_exceeded"] == THREADS
    assert quota_usage(tenant, JOBS_PER_DAY) == LIMIT - 3
