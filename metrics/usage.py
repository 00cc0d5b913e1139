"""Per-tenant usage metrics without Prometheus labels: counted per process, added to hourly rows.

On the request path (``MetricsMiddleware``) and when a job runs (``queues`` signals) the counts go
into this process's table, keyed by tenant and hour: a dict update under a lock, no query, no
round trip. The tenant cache's hits and misses are the counters ``tenants.cache`` keeps per
process (``cache_counters``): each flush adds what they grew by since the one before (to the
tenants' rows, and summed to ``ils_tenant_cache_lookups_total``). Every
``TENANT_METRICS_FLUSH_SECONDS`` a thread of the process adds its table to
``TenantUsageHour`` in one statement (``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``:
processes flushing at once add up, none overwrites another). Beat rolls finished days up into
``TenantUsageDay`` and deletes rows past their retention (``metrics.tasks``).

Invariants: a count is added once (a flush takes the table and resets it under the lock); a flush
that fails (the database down) drops what it took, logs it and counts it in
``ils_tenant_usage_dropped_total``, and requests are unaffected. What a process held when it was
killed is lost (at most one flush interval of its counts): these are operating figures, not
billing; the API-call quota has its own exact counter (``tenants.limits``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from metrics import instruments
from metrics.flusher import Flusher
from metrics.models import (
    LATENCY_BOUNDS_MS,
    LATENCY_FIELDS,
    USAGE_FIELDS,
    TenantUsageDay,
    TenantUsageHour,
)
from tenants.cache import cache_counters
from tenants.models import Tenant

logger = logging.getLogger(__name__)


def _latency_field(ms: float) -> str:
    for bound, name in zip(LATENCY_BOUNDS_MS, LATENCY_FIELDS, strict=False):
        if ms <= bound:
            return name
    return LATENCY_FIELDS[-1]


class UsageTable:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[int, int], Counter] = {}
        self._cache_seen: dict[int, dict[str, int]] = {}
        self.flusher = Flusher("tenant-usage", self.flush, "TENANT_METRICS_FLUSH_SECONDS")

    def add(self, tenant_id: int, **amounts: float) -> None:
        hour = int(time.time() // 3600)
        with self._lock:
            row = self._rows.get((tenant_id, hour))
            if row is None:
                row = self._rows[(tenant_id, hour)] = Counter()
            row.update(amounts)
        self.flusher.ensure_running()

    def take(self) -> dict[tuple[int, int], Counter]:
        """This process's rows, and the tenant cache's growth since the last take, emptied."""
        counters = cache_counters()
        hour = int(time.time() // 3600)
        lookups = Counter()
        with self._lock:
            for tenant_id, counts in counters.items():
                seen = self._cache_seen.get(tenant_id, {})
                grown = Counter(
                    {
                        f"cache_{outcome}": counts[outcome] - seen.get(outcome, 0)
                        for outcome in ("hits", "misses")
                    }
                )
                if any(grown.values()):
                    self._rows.setdefault((tenant_id, hour), Counter()).update(grown)
                    lookups.update(grown)
            self._cache_seen = counters
            rows, self._rows = self._rows, {}
        instruments.cache_lookups.labels("hit").inc(lookups["cache_hits"])
        instruments.cache_lookups.labels("miss").inc(lookups["cache_misses"])
        return rows

    def flush(self) -> int:
        """Add this process's counts to ``TenantUsageHour``; returns the rows written."""
        rows = self.take()
        if not rows:
            return 0
        try:
            written = self._write(rows)
        except Exception as error:
            instruments.usage_dropped.inc(len(rows))
            logger.warning("Per-tenant usage of %s rows dropped: %r", len(rows), error)
            return 0
        return written

    def _write(self, rows: dict[tuple[int, int], Counter]) -> int:
        # a tenant deleted since its requests would fail the whole statement: its rows go
        ids = {tenant_id for tenant_id, _ in rows}
        alive = set(Tenant.objects.filter(pk__in=ids).values_list("pk", flat=True))
        values = [
            [tenant_id, datetime.fromtimestamp(hour * 3600, tz=UTC)]
            + [counts.get(name, 0) for name in USAGE_FIELDS]
            for (tenant_id, hour), counts in sorted(rows.items())
            if tenant_id in alive
        ]
        if not values:
            return 0
        table = TenantUsageHour._meta.db_table
        columns = ["tenant_id", "hour", *USAGE_FIELDS]
        placeholders = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(values))
        updates = ", ".join(f'"{name}" = cur."{name}" + excluded."{name}"' for name in USAGE_FIELDS)
        quoted = ", ".join(f'"{name}"' for name in columns)
        # Names from the model's own fields, values as parameters: nothing from outside.
        sql = (
            f'INSERT INTO "{table}" AS cur ({quoted}) VALUES {placeholders} '  # noqa: S608
            f'ON CONFLICT ("tenant_id", "hour") DO UPDATE SET {updates}'
        )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [value for row in values for value in row])
        return len(values)


table = UsageTable()


def record_request(
    tenant_id: int, *, status: int, ms: float, bytes_in: int, bytes_out: int
) -> None:
    table.add(
        tenant_id,
        requests=1,
        errors_4xx=int(400 <= status < 500),
        errors_5xx=int(status >= 500),
        rejected=int(status == 429),
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        latency_ms_total=ms,
        **{_latency_field(ms): 1},
    )


def record_job(tenant_id: int) -> None:
    table.add(tenant_id, jobs=1)


#: A day is rolled up once it ended this long ago (every process has flushed its last hour).
ROLL_UP_AFTER = timedelta(hours=1)


def roll_up_days(*, now: datetime | None = None) -> int:
    """Sum each finished UTC day's hourly rows into ``TenantUsageDay``, once per day (the days
    after the last one rolled up, at most a week back); returns the day rows written."""
    now = now or timezone.now()
    last = TenantUsageDay.all_tenants.order_by("-day").values_list("day", flat=True).first()
    week_ago = (now.astimezone(UTC) - timedelta(days=7)).date()
    day = max(last + timedelta(days=1), week_ago) if last else week_ago
    written = 0
    while (start := datetime(day.year, day.month, day.day, tzinfo=UTC)) + timedelta(
        days=1
    ) + ROLL_UP_AFTER <= now:
        sums = list(
            TenantUsageHour.all_tenants.filter(hour__gte=start, hour__lt=start + timedelta(days=1))
            .values("tenant_id")
            .annotate(**{name: Sum(name) for name in USAGE_FIELDS})
        )
        TenantUsageDay.all_tenants.bulk_create(
            [TenantUsageDay(day=day, **row) for row in sums], ignore_conflicts=True
        )
        written += len(sums)
        day += timedelta(days=1)
    return written


def prune(*, now: datetime | None = None) -> tuple[int, int]:
    """Delete hourly rows past ``TENANT_METRICS_HOURLY_DAYS`` and daily ones past
    ``TENANT_METRICS_DAILY_DAYS``; returns how many of each went."""
    now = now or timezone.now()
    hours = TenantUsageHour.all_tenants.filter(
        hour__lt=now - timedelta(days=settings.TENANT_METRICS_HOURLY_DAYS)
    ).delete()[0]
    days = TenantUsageDay.all_tenants.filter(
        day__lt=(now - timedelta(days=settings.TENANT_METRICS_DAILY_DAYS)).date()
    ).delete()[0]
    return hours, days
