"""Reads of the tenants app."""

from __future__ import annotations

from tenants.limits.registry import MAX_API_KEYS, MAX_MEMBERS
from tenants.limits.usage import rows_used
from tenants.models import Tenant


def tenant_usage(*, tenant: Tenant) -> dict[str, int]:
    """What the tenant answer shows of its usage: members and active API keys."""
    rows = rows_used(tenant=tenant)
    return {"members": rows[MAX_MEMBERS], "api_keys": rows[MAX_API_KEYS]}
