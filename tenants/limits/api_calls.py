"""The ``api_calls_per_month`` quota: one atomic counter per tenant and month, in the counter store.

Every tenant request that passes its rate limit is counted here (``LimitsMiddleware``), so the
count cannot live in the database: one ``UPDATE`` per API call would put every read on the primary
and pin the tenant's reads there (``config.db_router``). It lives beside the rate-limit counters
(``RATELIMIT_USE_CACHE``) and keeps the invariants of ``tenants.limits.quotas``:

* Never past the limit: within ``API_CALLS_EXACT_MARGIN`` calls of the limit (and for a process's
  first call of a tenant in a month, before it knows the count) every call is counted at once, one
  atomic ``INCRBY``; a call that takes the counter past the limit takes its increment back and is
  refused with 403 ``quota_exceeded``, so concurrent calls can never be accepted beyond the limit.
* Far from the limit (or with no limit), a process gathers up to ``API_CALLS_BATCH`` calls (or
  ``API_CALLS_BATCH_SECONDS`` of them) and adds them in one ``INCRBY``: most calls cost no round
  trip. "Far" is judged from the count the process saw at most ``API_CALLS_BATCH_SECONDS`` ago
  (an older one sends the next call at once), so the limit holds exactly while, in that time, the
  other processes add fewer than ``API_CALLS_EXACT_MARGIN`` minus what this one holds back
  (``API_CALLS_BATCH``). The per-minute rate limit bounds how fast that can be: with the defaults
  a tenant would need more than about 9,900 calls a second. Held-back calls are added when the
  process exits normally; a process killed hard loses them (calls not charged).
* The database row stays the durable record. A missing counter (first call of the month, or a
  counter store that lost its data) starts from the ``TenantUsage`` row with ``add``, which never
  overwrites a live count. The row is brought up to the counter (``GREATEST``, never down) each
  time the counter passes a multiple of ``API_CALLS_FLUSH_EVERY`` and at each 80%/100% crossing,
  after the response and outside the read-your-writes scope. Losing the counter store loses fewer
  than ``API_CALLS_FLUSH_EVERY`` calls per tenant: calls not charged, never calls charged twice.
* Same periods (UTC months), thresholds, signal and error as every other quota.
* Counter store down: ``RATELIMIT_FAIL_OPEN`` decides, as for the rate limits; the calls of a
  batch that could not be added are not charged.
"""

from __future__ import annotations

import atexit
import calendar
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import caches
from django.utils import timezone

from tenants.bookkeeping import bookkeeping_writes
from tenants.limits import quotas, ratelimits, state
from tenants.limits.registry import API_CALLS_PER_MONTH
from tenants.models import Tenant, TenantUsage

RESOURCE = API_CALLS_PER_MONTH
#: Kept after the month ends, so a late flush still finds the month's count.
_KEY_GRACE_SECONDS = 3 * 24 * 3600


@dataclass(frozen=True)
class ApiCallCount:
    """One counted call: the month's count after it (as far as this process knows), the calls
    this request added to the shared counter (0: held back), and what to do after the response."""

    tenant: Tenant
    period: str
    used: int
    limit: int | None
    added: int
    crossed: tuple[int, ...]

    @property
    def needs_flush(self) -> bool:
        every = settings.API_CALLS_FLUSH_EVERY
        passed_a_multiple = self.added and self.used // every != (self.used - self.added) // every
        return bool(self.crossed) or bool(passed_a_multiple)


@dataclass
class _Batch:
    """What this process holds back of one tenant's month, and the shared count it last saw."""

    pending: int = 0
    known: int | None = None
    known_at: float = 0.0
    since: float = 0.0


class _Batches:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: dict[tuple[int, str], _Batch] = {}

    def take(self, tenant_id: int, period: str, limit: int | None) -> tuple[int, int]:
        """Hold this call back, or hand it out with the held-back ones to be added now.

        Returns ``(calls to add now, the count this process estimates)``; 0 calls: held back.
        """
        now = time.monotonic()
        with self.lock:
            batch = self.batches.setdefault((tenant_id, period), _Batch())
            estimate = (batch.known or 0) + batch.pending + 1
            # The count seen is trusted for API_CALLS_BATCH_SECONDS: other processes move it on.
            recent = (
                batch.known is not None and now - batch.known_at < settings.API_CALLS_BATCH_SECONDS
            )
            far = limit is None or (recent and limit - estimate >= settings.API_CALLS_EXACT_MARGIN)
            if far:
                batch.pending += 1
                if batch.pending == 1:
                    batch.since = now
                fresh = now - batch.since < settings.API_CALLS_BATCH_SECONDS
                if batch.pending < settings.API_CALLS_BATCH and fresh:
                    return 0, estimate
            calls, batch.pending = batch.pending if far else batch.pending + 1, 0
            return calls, estimate

    def saw(self, tenant_id: int, period: str, count: int) -> None:
        with self.lock:
            batch = self.batches.setdefault((tenant_id, period), _Batch())
            batch.known, batch.known_at = count, time.monotonic()
            if len(self.batches) > 100_000:  # tenants and months long gone: keep only what waits
                self.batches = {k: b for k, b in self.batches.items() if b.pending}

    def pending(self, tenant_id: int, period: str) -> int:
        with self.lock:
            batch = self.batches.get((tenant_id, period))
            return batch.pending if batch else 0

    def drain(self) -> list[tuple[int, str, int]]:
        with self.lock:
            held = [(t, p, b.pending) for (t, p), b in self.batches.items() if b.pending]
            for batch in self.batches.values():
                batch.pending = 0
            return held

    def clear(self) -> None:
        with self.lock:
            self.batches = {}


_batches = _Batches()


def _counter_key(tenant_id: int, period: str) -> str:
    return f"api-calls:{tenant_id}:{period}"


def _seconds_left_in_month(now: datetime) -> int:
    moment = now.astimezone(UTC)
    days = calendar.monthrange(moment.year, moment.month)[1]
    end = moment.replace(day=days, hour=23, minute=59, second=59, microsecond=0)
    return int((end - moment).total_seconds()) + 1


def _add(tenant_id: int, period: str, calls: int, now: datetime) -> int:
    counters = caches[settings.RATELIMIT_USE_CACHE]
    key = _counter_key(tenant_id, period)
    try:
        return counters.incr(key, calls)
    except ValueError:  # no counter yet: start from the durable record
        durable = quotas.counter_used(tenant_id, RESOURCE, period)
        counters.add(key, durable, timeout=_seconds_left_in_month(now) + _KEY_GRACE_SECONDS)
        return counters.incr(key, calls)


def count_api_call(tenant: Tenant, *, now: datetime | None = None) -> ApiCallCount | None:
    """Count one call of ``tenant`` this month, or raise ``QuotaExceeded`` (403) past the limit.

    ``None`` when the counter store is down and ``RATELIMIT_FAIL_OPEN`` lets the call through.
    """
    moment = now or timezone.now()
    period = quotas.period_key(RESOURCE, moment)
    limit = tenant.limits().get(RESOURCE)
    calls, estimate = _batches.take(tenant.pk, period, limit)
    if not calls:
        state.note_usage(RESOURCE, estimate, limit)
        return ApiCallCount(tenant, period, estimate, limit, 0, ())
    used = ratelimits.guarded(lambda: _add(tenant.pk, period, calls, moment))
    if used is None:
        return None
    if limit is not None and used > limit:
        key = _counter_key(tenant.pk, period)
        ratelimits.guarded(lambda: caches[settings.RATELIMIT_USE_CACHE].decr(key))
        _batches.saw(tenant.pk, period, used - 1)
        raise quotas.exceeded_error(tenant, RESOURCE, limit, used - 1, 1)
    _batches.saw(tenant.pk, period, used)
    crossed = (
        tuple(quotas.thresholds_crossed(used - calls, used, limit)) if limit is not None else ()
    )
    state.note_usage(RESOURCE, used, limit)
    return ApiCallCount(tenant, period, used, limit, calls, crossed)


def settle(count: ApiCallCount) -> None:
    """After the response: bring the durable row up to the count and announce crossings."""
    if not count.needs_flush:
        return
    with bookkeeping_writes():  # never pins the tenant's reads, wherever it is called
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
    """This month's calls: the live counter (plus what this process holds back) when the store
    answers, else the durable row."""
    moment = now or timezone.now()
    period = quotas.period_key(RESOURCE, moment)
    live = ratelimits.read_or_none(
        lambda: caches[settings.RATELIMIT_USE_CACHE].get(_counter_key(tenant.pk, period))
    )
    durable = quotas.quota_usage(tenant, RESOURCE, now=moment)
    return max(live or 0, durable) + _batches.pending(tenant.pk, period)


def flush_held_back(*, now: datetime | None = None) -> int:
    """Add every call this process holds back to the shared counters; returns how many.

    Runs when the process exits; a call that cannot be added (the store is down) is not charged.
    """
    moment, added = now or timezone.now(), 0
    for tenant_id, period, calls in _batches.drain():
        with suppress(*ratelimits.COUNTER_DOWN):
            _batches.saw(tenant_id, period, _add(tenant_id, period, calls, moment))
            added += calls
    return added


def forget_held_back() -> None:
    """Drop what this process holds back and knows, unsent (tests play a new process with it)."""
    _batches.clear()


atexit.register(flush_held_back)
