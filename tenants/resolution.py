"""Cached resolution of API keys, tenants, plans and memberships for the request path.

A warm request finds its key, tenant and plan in the cache, with no SQL query. The cache holds
model instances under global keys (``tenants:res:...``) with ``TENANT_RESOLUTION_CACHE_SECONDS`` of
life; every save or delete of a key, tenant, plan or membership drops the affected entries after its
transaction commits (``tenants/signals.py``), so revoking a key, suspending a tenant or changing its
plan takes effect on the next request in every process that shares the cache. The tenant and its
plan are cached apart, so changing a plan's limits drops one entry, not one per tenant.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from tenants.keys import key_matches, parse_key
from tenants.models import ApiKey, Membership, Plan, Tenant

_NS = "tenants:res:v1"
_MISSING = "missing"


def api_key_cache_key(prefix: str) -> str:
    return f"{_NS}:key:{prefix}"


def tenant_cache_key(tenant_id: int) -> str:
    return f"{_NS}:tenant:{tenant_id}"


def tenant_slug_cache_key(slug: str) -> str:
    return f"{_NS}:slug:{slug}"


def plan_cache_key(plan_id: int) -> str:
    return f"{_NS}:plan:{plan_id}"


def membership_cache_key(tenant_id: int, user_id: int) -> str:
    return f"{_NS}:member:{tenant_id}:{user_id}"


def _ttl() -> int:
    return settings.TENANT_RESOLUTION_CACHE_SECONDS


@dataclass(frozen=True)
class KeyResolution:
    api_key: ApiKey | None
    error: str | None  # None, "invalid", "revoked" or "expired"


def resolve_api_key(raw: str) -> KeyResolution:
    """Find the key for a raw bearer token. Unknown and malformed keys are both ``invalid``."""
    parsed = parse_key(raw)
    if parsed is None:
        return KeyResolution(None, "invalid")
    candidates = cache.get(api_key_cache_key(parsed.prefix))
    if candidates is None:
        candidates = list(ApiKey.all_tenants.filter(prefix=parsed.prefix))
        cache.set(api_key_cache_key(parsed.prefix), candidates, _ttl())
    api_key = next((k for k in candidates if key_matches(parsed.raw, k.secret_hash)), None)
    if api_key is None:
        return KeyResolution(None, "invalid")
    if api_key.is_revoked:
        return KeyResolution(api_key, "revoked")
    if api_key.is_expired():
        return KeyResolution(api_key, "expired")
    return KeyResolution(api_key, None)


def get_tenant(tenant_id: int) -> Tenant | None:
    """The tenant with its plan attached, from the cache when warm (one round trip, no SQL)."""
    tenant_key = tenant_cache_key(tenant_id)
    tenant = cache.get(tenant_key)
    if tenant is None:
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is None:
            return None
        cache.set(tenant_key, tenant, _ttl())
    tenant.plan = _get_plan(tenant.plan_id)
    return tenant


def get_tenant_by_slug(slug: str) -> Tenant | None:
    slug_key = tenant_slug_cache_key(slug)
    tenant_id = cache.get(slug_key)
    if tenant_id is None:
        tenant_id = (
            Tenant.objects.filter(slug=slug).values_list("pk", flat=True).first() or _MISSING
        )
        cache.set(slug_key, tenant_id, _ttl())
    return None if tenant_id == _MISSING else get_tenant(tenant_id)


def _get_plan(plan_id: int) -> Plan:
    plan_key = plan_cache_key(plan_id)
    plan = cache.get(plan_key)
    if plan is None:
        plan = Plan.objects.get(pk=plan_id)
        cache.set(plan_key, plan, _ttl())
    return plan


def get_membership_role(tenant_id: int, user_id: int) -> str | None:
    """The user's role in the tenant, or ``None`` when not a member."""
    member_key = membership_cache_key(tenant_id, user_id)
    role = cache.get(member_key)
    if role is None:
        role = (
            Membership.all_tenants.filter(tenant_id=tenant_id, user_id=user_id)
            .values_list("role", flat=True)
            .first()
        ) or _MISSING
        cache.set(member_key, role, _ttl())
    return None if role == _MISSING else role


def touch_api_key(api_key: ApiKey) -> None:
    """Record the key's use, writing ``last_used_at`` at most once per interval across processes.

    ``cache.add`` is atomic, so among concurrent requests only the first one in an interval writes.
    """
    interval = settings.API_KEY_LAST_USED_INTERVAL_SECONDS
    if cache.add(f"{_NS}:touched:{api_key.pk}", 1, interval):
        ApiKey.all_tenants.filter(pk=api_key.pk).update(last_used_at=timezone.now())
