"""The ``api_calls_per_month`` quota: one atomic counter per tenant and month, in the counter store.

Every tenant request that passes its rate limit is counted here (``LimitsMiddleware``), so the
count cannot live in the database: one ``UPDATE`` per API call would put every read on the primary
and pin the tenant's reads there (``config.db_router``). It lives beside the rate-limit counters
(``RATELIMIT_USE_CACHE``) and keeps the invariants of ``tenants.limits.quotas``:

* Never past the limit: the call is counted first (one atomic ``INCR``); a call that takes the
  counter past the limit takes its increment back and is refused with 403 ``quota_exceeded``, so
  concurrent calls can never be accepted beyond the limit.
* The database row stays the durable record. A missing counter (first call of the month, or a
  counter store that lost its data) starts from the ``TenantUsage`` row with ``add``, which never
  overwrites a live count. The row is brought up to the counter (``GREATEST``, never down) every
  ``API_CALLS_FLUSH_EVERY`` calls and at each 80%/100% crossing, after the response and outside
  the read-your-writes scope. Losing the counter store loses fewer than ``API_CALLS_FLUSH_EVERY``
  calls per tenant: calls not charged, never calls charged twice.
* Same periods (UTC months), thresholds, signal and error as every other quota.
* Counter store down: ``RATELIMIT_FAIL_OPEN`` decides, as for the rate limits.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import caches
from django.utils import timezone

from tenants.limits import quotas, ratelimits, state
from tenants.limits.registry import API_CALLS_PER_MONTH
from tenants.models import Tenant, TenantUsage

RESOURCE = API_CALLS_PER_MONTH
#: Kept after the month ends, so a late flush still finds the month's count.
_KEY_GRACE_SECONDS = 3 * 24 * 3600


@dataclass(frozen=True)
class ApiCallCount:
    """One counted call: the month's count after it, and what to do after the response."""

    tenant: Tenant
    period: str
    used: int
    limit: int | None
    crossed: tuple[int, ...]

    @property
    def needs_flush(self) -> bool:
        return bool(self.crossed) or self.used % settings.API_CALLS_FLUSH_EVERY == 0


def _counter_key(tenant_id: int, period: str) -> str:
    return f"api-calls:{tenant_id}:{period}"


def _seconds_left_in_month(now: datetime) -> int:
    moment = now.astimezone(UTC)
    days = calendar.monthrange(moment.year, moment.month)[1]
    end = moment.replace(day=days, hour=23, minute=59, second=59, microsecond=0)
    return int((end - moment).total_seconds()) + 1


def _increment(tenant: Tenant, period: str, now: datetime) -> int:
    counters = caches[settings.RATELIMIT_USE_CACHE]
    key = _counter_key(tenant.pk, period)
    try:
        return counters.incr(key)
    except ValueError:  # no counter yet: start from the durable record
        durable = quotas.quota_usage(tenant, RESOURCE, now=now)
        counters.add(key, durable, timeout=_seconds_left_in_month(now) + _KEY_GRACE_SECONDS)
        return counters.incr(key)


def count_api_call(tenant: Tenant, *, now: datetime | None = None) -> ApiCallCount | None:
    """Count one call of ``tenant`` this month, or raise ``QuotaExceeded`` (403) past the limit.

    ``None`` when the counter store is down and ``RATELIMIT_FAIL_OPEN`` lets the call through.
    """
    moment = now or timezone.now()
    period = quotas.period_key(RESOURCE, moment)
    limit = tenant.limits().get(RESOURCE)
    used = ratelimits.guarded(lambda: _increment(tenant, period, moment))
    if used is None:
        return None
    if limit is not None and used > limit:
        key = _counter_key(tenant.pk, period)
        ratelimits.guarded(lambda: caches[settings.RATELIMIT_USE_CACHE].decr(key))
        raise quotas.exceeded_error(tenant, RESOURCE, limit, used - 1, 1)
    crossed = tuple(quotas.thresholds_crossed(used - 1, used, limit)) if limit is not None else ()
    state.note_usage(RESOURCE, used, limit)
    return ApiCallCount(tenant, period, used, limit, crossed)


def settle(count: ApiCallCount) -> None:
    """After the response: bring the durable row up to the count and announce crossings."""
    if not count.needs_flush:
        return
    quotas.quota_raise_to(count.tenant, RESOURCE, count.used, period=count.period)
    for percent in count.crossed:
        quotas.quota_threshold_crossed.send(
            sender=TenantUsage,
            tenant=count.tenant,
            resource=RESOURCE,
            percent=percent,
            used=count.used,
            limit=count.limit,
        )


def api_calls_used(tenant: Tenant, *, now: datetime | None = None) -> int:
    """This month's calls: the live counter when the store answers, else the durable row."""
    moment = now or timezone.now()
    period = quotas.period_key(RESOURCE, moment)
    live = ratelimits.read_or_none(
        lambda: caches[settings.RATELIMIT_USE_CACHE].get(_counter_key(tenant.pk, period))
    )
    durable = quotas.quota_usage(tenant, RESOURCE, now=moment)
    return max(live or 0, durable)
