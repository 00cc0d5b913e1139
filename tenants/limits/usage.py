"""What a tenant uses of each limit: the usage API's and the admin change page's figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from tenants.context import tenant_scope
from tenants.limits import api_calls, quotas
from tenants.limits.quotas import next_period_start
from tenants.limits.registry import (
    API_CALLS_PER_MONTH,
    COUNTER,
    MAX_API_KEYS,
    MAX_MEMBERS,
    PER_ITEM,
    RESOURCES,
)
from tenants.models import ApiKey, Membership, Tenant


def rows_used(*, tenant: Tenant) -> dict[str, int]:
    """The limits counted from the tenant's rows: members and active API keys."""
    with tenant_scope(tenant):
        return {
            MAX_MEMBERS: Membership.objects.count(),
            MAX_API_KEYS: ApiKey.objects.filter(revoked_at__isnull=True).count(),
        }


@dataclass(frozen=True)
class QuotaLine:
    """One quota of a tenant: its limit (``None``: unlimited), what is used, when it resets."""

    resource: str
    label: str
    unit: str
    limit: int | None
    used: int | None  # None for a per-item limit (a file's size): nothing is counted
    resets_at: datetime | None

    @property
    def percent(self) -> int | None:
        if self.limit is None or self.used is None:
            return None
        return 100 if self.limit == 0 else self.used * 100 // self.limit


def quota_report(tenant: Tenant, *, now: datetime | None = None) -> list[QuotaLine]:
    """Every quota of the tenant (the registry's limits but the rate) against its limit (plan plus
    overrides), live where counted live."""
    moment = now or timezone.now()
    limits = tenant.limits()
    counted_rows = rows_used(tenant=tenant)
    lines = []
    for resource in RESOURCES:
        if resource.kind == PER_ITEM:
            used = None
        elif resource.name == API_CALLS_PER_MONTH:
            used = api_calls.api_calls_used(tenant, now=moment)
        elif resource.kind == COUNTER:
            used = quotas.quota_usage(tenant, resource.name, now=moment)
        elif resource.name in counted_rows:
            used = counted_rows[resource.name]
        else:  # a rate: its budget is reported by ratelimits.current_budget
            continue
        resets = next_period_start(resource.period, moment) if resource.kind == COUNTER else None
        limit = limits.get(resource.name)
        lines.append(QuotaLine(resource.name, resource.label, resource.unit, limit, used, resets))
    return lines
