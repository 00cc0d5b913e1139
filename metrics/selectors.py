"""Reads of the per-tenant usage rows: the busiest tenants and one tenant's hours.

Both read ``TenantUsageHour`` across tenants or of one, for staff (the ops API, the admin, the
Prometheus export); the tenant API reads its own rows through the scoped manager instead."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import F, Sum
from django.utils import timezone

from metrics.models import USAGE_FIELDS, TenantUsageHour

#: What the busiest tenants can be ordered by.
ORDERINGS = {
    "requests": F("requests"),
    "errors": F("errors_4xx") + F("errors_5xx"),
    "bytes_out": F("bytes_out"),
    "latency": F("latency_ms_total"),
}


@dataclass
class TenantFigures:
    tenant_id: int
    slug: str
    figures: TenantUsageHour  # the sums, unsaved: its properties and latency_percentile() work


def this_hour() -> datetime:
    return timezone.now().replace(minute=0, second=0, microsecond=0)


def busiest_tenants(*, since: datetime, limit: int, by: str = "requests") -> list[TenantFigures]:
    """The ``limit`` tenants with the most ``by`` since ``since`` (one GROUP BY)."""
    rows = (
        TenantUsageHour.all_tenants.filter(hour__gte=since)
        .values("tenant_id", "tenant__slug")
        .annotate(**{f"sum_{name}": Sum(name) for name in USAGE_FIELDS}, rank=Sum(ORDERINGS[by]))
        .order_by("-rank", "tenant_id")[:limit]
    )
    return [
        TenantFigures(
            row["tenant_id"],
            row["tenant__slug"],
            TenantUsageHour(**{name: row[f"sum_{name}"] for name in USAGE_FIELDS}),
        )
        for row in rows
    ]


def totals_since(since: datetime) -> TenantUsageHour:
    """Every tenant's figures since ``since``, summed (unsaved)."""
    sums = TenantUsageHour.all_tenants.filter(hour__gte=since).aggregate(
        **{name: Sum(name) for name in USAGE_FIELDS}
    )
    return TenantUsageHour(**{name: value or 0 for name, value in sums.items()})


def tenant_hours(tenant_id: int, *, hours: int) -> list[TenantUsageHour]:
    """The tenant's last ``hours`` hours, oldest first, an empty row for an hour without any."""
    end = this_hour()
    start = end - timedelta(hours=hours - 1)
    found = {
        row.hour: row
        for row in TenantUsageHour.all_tenants.filter(tenant_id=tenant_id, hour__gte=start)
    }
    return [
        found.get(start + timedelta(hours=i), TenantUsageHour(hour=start + timedelta(hours=i)))
        for i in range(hours)
    ]
