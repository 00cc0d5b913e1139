"""Reads of the tenants app."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from tenants import api_calls, quotas
from tenants.context import tenant_scope
from tenants.models import ApiKey, Membership, Tenant


def tenant_usage(*, tenant: Tenant) -> dict[str, int]:
    """What the tenant uses of the limits this app counts (members, active API keys)."""
    with tenant_scope(tenant):
        return {
            "members": Membership.objects.count(),
            "api_keys": ApiKey.objects.filter(revoked_at__isnull=True).count(),
        }


@dataclass(frozen=True)
class QuotaLine:
    """One quota of a tenant: its limit (``None``: unlimited), what is used, when it resets."""

    resource: str
    limit: int | None
    used: int | None  # None for max_file_bytes: a per-file limit, nothing is counted
    resets_at: datetime | None

    @property
    def percent(self) -> int | None:
        if self.limit is None or self.used is None:
            return None
        return 100 if self.limit == 0 else self.used * 100 // self.limit


def _next_period_start(resource: str, moment: datetime) -> datetime | None:
    length = quotas.COUNTERS.get(resource)
    if length is None:
        return None
    start = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if length == "day":
        return start + timedelta(days=1)
    return (start.replace(day=1) + timedelta(days=32)).replace(day=1)


def quota_report(tenant: Tenant, *, now: datetime | None = None) -> list[QuotaLine]:
    """Every quota of the tenant against its limit (plan plus overrides), live where counted live."""
    moment = now or timezone.now()
    limits = tenant.limits()
    counted = tenant_usage(tenant=tenant)
    used = {
        "max_members": counted["members"],
        "max_api_keys": counted["api_keys"],
        quotas.STORAGE_BYTES: quotas.quota_usage(tenant, quotas.STORAGE_BYTES, now=moment),
        quotas.MAX_FILE_BYTES: None,
        quotas.JOBS_PER_DAY: quotas.quota_usage(tenant, quotas.JOBS_PER_DAY, now=moment),
        quotas.API_CALLS_PER_MONTH: api_calls.api_calls_used(tenant, now=moment),
    }
    return [
        QuotaLine(resource, limits.get(resource), value, _next_period_start(resource, moment))
        for resource, value in used.items()
    ]
