"""Reads of the tenants app."""

from __future__ import annotations

from tenants.context import tenant_scope
from tenants.models import ApiKey, Membership, Tenant


def tenant_usage(*, tenant: Tenant) -> dict[str, int]:
    """What the tenant uses of the limits this app counts (members, active API keys)."""
    with tenant_scope(tenant):
        return {
            "members": Membership.objects.count(),
            "api_keys": ApiKey.objects.filter(revoked_at__isnull=True).count(),
        }
