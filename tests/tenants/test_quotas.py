"""Quotas: reservation, release on failure, periods, reconciliation, thresholds, error answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.api import api_exception_handler
from tenants.exceptions import FileTooLarge, QuotaExceeded
from tenants.limits import API_CALLS_PER_MONTH, JOBS_PER_DAY, MAX_FILE_BYTES, STORAGE_BYTES
from tenants.limits.quotas import (
    next_period_start,
    period_key,
    quota_reconcile,
    quota_release,
    quota_reserve,
    quota_reset_periods,
    quota_threshold_crossed,
    quota_usage,
)
from tenants.models import TenantUsage
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 28, 23, 30, tzinfo=UTC)
LIMITS = {
    "jobs_per_day": 10,
    "api_calls_per_month": 1000,
    "storage_bytes": 1000,
    "max_file_bytes": 100,
}


@pytest.fixture
def tenant():
    return TenantFactory(limit_overrides=LIMITS)


def reserve(tenant, resource, amount, now=NOW):
    with quota_reserve(tenant, resource, amount, now=now) as reservation:
        return reservation


def usage(tenant, resource, now=NOW):
    return quota_usage(tenant, resource, now=now)


def test_reservations_count_up_to_the_limit_and_no_further(tenant):
    reserve(tenant, JOBS_PER_DAY, 4)
    reserve(tenant, JOBS_PER_DAY, 6)
    assert usage(tenant, JOBS_PER_DAY) == 10

    with pytest.raises(QuotaExceeded) as raised:
        reserve(tenant, JOBS_PER_DAY, 1)

    assert usage(tenant, JOBS_PER_DAY) == 10
    error = raised.value
    assert not isinstance(error, FileTooLarge)
    assert error.status_code == 403
    resets_at = error.details.pop("resets_at")
    assert error.details == {"resource": "jobs_per_day", "limit": 10, "used": 10, "requested": 1}
    assert resets_at == next_period_start("day", timezone.now()).isoformat().replace("+00:00", "Z")


def test_a_reservation_larger_than_what_is_left_takes_nothing(tenant):
    reserve(tenant, STORAGE_BYTES, 900)

    with pytest.raises(QuotaExceeded) as raised:
        reserve(tenant, STORAGE_BYTES, 101)

    assert raised.value.details == {
        "resource": "storage_bytes",
        "limit": 1000,
        "used": 900,
        "requested": 101,
    }
    assert usage(tenant, STORAGE_BYTES) == 900
    reserve(tenant, STORAGE_BYTES, 100)
    assert usage(tenant, STORAGE_BYTES) == 1000


def test_quota_exceeded_renders_in_the_error_shape(tenant):
    reserve(tenant, JOBS_PER_DAY, 10)
    with pytest.raises(QuotaExceeded) as raised:
        reserve(tenant, JOBS_PER_DAY, 2)

    response = api_exception_handler(raised.value, {})

    assert response.status_code == 403
    assert response.data["error"]["code"] == "quota_exceeded"
    assert response.data["error"]["details"] == {
        "resource": "jobs_per_day",
        "limit": 10,
        "used": 10,
        "requested": 2,
        "resets_at": next_period_start("day", timezone.now()).isoformat().replace("+00:00", "Z"),
    }


def test_a_failing_block_releases_what_it_reserved(tenant):
    reserve(tenant, JOBS_PER_DAY, 3)

    with (
        pytest.raises(RuntimeError, match="injected"),
        quota_reserve(tenant, JOBS_PER_DAY, 5, now=NOW),
    ):
        assert usage(tenant, JOBS_PER_DAY) == 8
        raise RuntimeError("injected")

    assert usage(tenant, JOBS_PER_DAY) == 3


def test_a_block_that_breaks_its_transaction_is_undone_by_the_rollback(tenant):
    taken = TenantFactory()

    with (
        pytest.raises(IntegrityError),
        transaction.atomic(),
        quota_reserve(tenant, JOBS_PER_DAY, 4, now=NOW),
    ):
        TenantFactory(slug=taken.slug)

    assert usage(tenant, JOBS_PER_DAY) == 0


def test_release_frees_usage_and_never_goes_below_zero(tenant):
    reserve(tenant, STORAGE_BYTES, 700)

    quota_release(tenant, STORAGE_BYTES, 200)
    assert usage(tenant, STORAGE_BYTES) == 500
    quota_release(tenant, STORAGE_BYTES, 10_000)
    assert usage(tenant, STORAGE_BYTES) == 0

    reserve(tenant, STORAGE_BYTES, 1000)
    assert usage(tenant, STORAGE_BYTES) == 1000


def test_counters_are_per_tenant(tenant):
    other = TenantFactory(limit_overrides=LIMITS)
    reserve(tenant, JOBS_PER_DAY, 10)

    reserve(other, JOBS_PER_DAY, 10)

    assert usage(tenant, JOBS_PER_DAY) == usage(other, JOBS_PER_DAY) == 10


def test_periods_are_utc_days_and_months():
    local = datetime(2026, 12, 1, 0, 30, tzinfo=UTC).astimezone(datetime.now().astimezone().tzinfo)
    assert period_key(JOBS_PER_DAY, NOW) == "2026-11-28"
    assert period_key(API_CALLS_PER_MONTH, NOW) == "2026-11"
    assert period_key(STORAGE_BYTES, NOW) == ""
    assert period_key(JOBS_PER_DAY, local) == "2026-12-01"


def test_a_new_day_and_month_start_from_zero(tenant):
    reserve(tenant, JOBS_PER_DAY, 10)
    reserve(tenant, API_CALLS_PER_MONTH, 1000)
    next_month = NOW + timedelta(days=3)

    reserve(tenant, JOBS_PER_DAY, 10, now=next_month)
    reserve(tenant, API_CALLS_PER_MONTH, 1000, now=next_month)

    assert usage(tenant, JOBS_PER_DAY, next_month) == 10
    assert usage(tenant, JOBS_PER_DAY) == 10
    assert usage(tenant, API_CALLS_PER_MONTH, next_month) == 1000


def test_reset_drops_past_periods_and_keeps_current_ones_and_storage(tenant):
    yesterday, last_month = NOW - timedelta(days=1), NOW - timedelta(days=31)
    reserve(tenant, JOBS_PER_DAY, 7, now=yesterday)
    reserve(tenant, API_CALLS_PER_MONTH, 9, now=last_month)
    reserve(tenant, JOBS_PER_DAY, 2)
    reserve(tenant, API_CALLS_PER_MONTH, 3)
    reserve(tenant, STORAGE_BYTES, 500, now=last_month)

    assert quota_reset_periods(now=NOW) == 2

    assert usage(tenant, JOBS_PER_DAY, yesterday) == 0
    assert usage(tenant, API_CALLS_PER_MONTH, last_month) == 0
    assert usage(tenant, JOBS_PER_DAY) == 2
    assert usage(tenant, API_CALLS_PER_MONTH) == 3
    assert usage(tenant, STORAGE_BYTES) == 500
    assert quota_reset_periods(now=NOW) == 0


def test_reconcile_sets_the_counter_and_reports_the_drift(tenant):
    reserve(tenant, STORAGE_BYTES, 600)

    assert quota_reconcile(tenant, STORAGE_BYTES, 450, now=NOW) == 150
    assert usage(tenant, STORAGE_BYTES) == 450
    assert quota_reconcile(tenant, STORAGE_BYTES, 500, now=NOW) == -50
    assert usage(tenant, STORAGE_BYTES) == 500
    assert quota_reconcile(tenant, STORAGE_BYTES, 500, now=NOW) == 0


def test_reconcile_makes_a_missing_counter(tenant):
    assert quota_reconcile(tenant, JOBS_PER_DAY, 4, now=NOW) == -4
    assert usage(tenant, JOBS_PER_DAY) == 4


def test_a_file_above_the_size_limit_is_a_413(tenant):
    with pytest.raises(FileTooLarge) as raised:
        reserve(tenant, MAX_FILE_BYTES, 101)

    error = raised.value
    assert isinstance(error, QuotaExceeded)
    assert error.status_code == 413
    assert error.details == {
        "resource": "max_file_bytes",
        "limit": 100,
        "used": 0,
        "requested": 101,
    }
    assert api_exception_handler(error, {}).data["error"]["code"] == "quota_exceeded"


def test_a_file_within_the_size_limit_passes_and_counts_nothing(tenant):
    reserve(tenant, MAX_FILE_BYTES, 100)
    reserve(tenant, MAX_FILE_BYTES, 100)

    assert not TenantUsage.all_tenants.filter(tenant=tenant).exists()


def test_unlimited_counters_are_not_written_but_storage_is_recorded():
    unlimited = TenantFactory(
        limit_overrides=dict.fromkeys(
            ("jobs_per_day", "api_calls_per_month", "storage_bytes", "max_file_bytes")
        )
    )

    reserve(unlimited, JOBS_PER_DAY, 10**9)
    reserve(unlimited, API_CALLS_PER_MONTH, 10**9)
    reserve(unlimited, MAX_FILE_BYTES, 10**12)
    reserve(unlimited, STORAGE_BYTES, 10**12)
    reserve(unlimited, STORAGE_BYTES, 5)

    rows = TenantUsage.all_tenants.filter(tenant=unlimited)
    assert list(rows.values_list("resource", "used")) == [("storage_bytes", 10**12 + 5)]
    with pytest.raises(RuntimeError), quota_reserve(unlimited, STORAGE_BYTES, 7, now=NOW):
        raise RuntimeError("injected")
    assert usage(unlimited, STORAGE_BYTES) == 10**12 + 5


def test_a_zero_limit_refuses_everything():
    closed = TenantFactory(limit_overrides={"jobs_per_day": 0})

    with pytest.raises(QuotaExceeded) as raised:
        reserve(closed, JOBS_PER_DAY, 1)

    assert raised.value.details["limit"] == 0
    reserve(closed, JOBS_PER_DAY, 0)
    assert usage(closed, JOBS_PER_DAY) == 0


@pytest.mark.parametrize("amount", [-1, 1.5, True, "3"])
def test_bad_amounts_are_refused(tenant, amount):
    with pytest.raises(ValueError):
        reserve(tenant, JOBS_PER_DAY, amount)
    assert usage(tenant, JOBS_PER_DAY) == 0


def test_unknown_resources_are_refused(tenant):
    with pytest.raises(ValueError):
        reserve(tenant, "max_members", 1)


@pytest.fixture
def crossings():
    seen = []

    def receiver(sender, tenant, resource, percent, used, limit, **kwargs):
        seen.append((tenant.pk, resource, percent, used, limit))

    quota_threshold_crossed.connect(receiver)
    yield seen
    quota_threshold_crossed.disconnect(receiver)


def test_thresholds_are_announced_once_per_crossing(
    tenant, crossings, django_capture_on_commit_callbacks
):
    def committed(amount):
        with django_capture_on_commit_callbacks(execute=True):
            reserve(tenant, JOBS_PER_DAY, amount)

    committed(7)
    assert crossings == []
    committed(1)
    committed(1)
    assert crossings == [(tenant.pk, "jobs_per_day", 80, 8, 10)]
    committed(1)
    assert crossings[1:] == [(tenant.pk, "jobs_per_day", 100, 10, 10)]
    with pytest.raises(QuotaExceeded):
        committed(1)
    assert len(crossings) == 2

    quota_release(tenant, JOBS_PER_DAY, 9, now=NOW)
    committed(9)

    assert crossings[2:] == [
        (tenant.pk, "jobs_per_day", 80, 10, 10),
        (tenant.pk, "jobs_per_day", 100, 10, 10),
    ]


def test_thresholds_wait_for_the_commit_and_skip_failed_blocks(
    tenant, crossings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        reserve(tenant, STORAGE_BYTES, 800)
    assert crossings == []
    for callback in callbacks:
        callback()
    assert crossings == [(tenant.pk, "storage_bytes", 80, 800, 1000)]

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        quota_reserve(tenant, STORAGE_BYTES, 200, now=NOW),
    ):
        raise RuntimeError("injected")
    assert len(crossings) == 1
    assert usage(tenant, STORAGE_BYTES) == 800
