"""Cached resolution of API keys, tenants, plans and memberships for the request path.

A warm keyed request finds its key, tenant, plan and the tenant's cache generation in ONE read of
the global cache (``MGET``), with no SQL query, and usually with no round trip at all: the read
goes through this process's mirror of the global cache (``tenants.mirror``), which every change
below announces over Redis pub/sub. The cache holds model instances under global keys
(``tenants:res:...``) with ``TENANT_RESOLUTION_CACHE_SECONDS`` of life; every save or delete of a
key, tenant, plan or membership drops the affected entries after its transaction commits
(``tenants/signals.py``, through ``global_mirror.delete_many``), so revoking a key, suspending a tenant or changing its plan takes effect
on the next request in every process that shares the cache. The tenant and its plan are cached
apart, so changing a plan's limits drops one entry, not one per tenant.

One read needs the tenant and plan ids before the key entry is read: each process remembers, as
hints, which tenant a key prefix (or a slug) belongs to and which plan a tenant is on. A hint only
says which entries to fetch with the key's: what is used is always what the entries say, and a
hint that turned out wrong (a plan changed, a slug was reused) costs one more read, never a wrong
answer. A prefix belongs to its tenant for life (keys never move), so a cold process pays up to
three reads per key once (the key, then its tenant and generation, then the plan).

The key and plan objects a request gets are this process's mirror copies, shared with its other
requests, and the tenant is a shallow copy of one (its plan is attached per request), so
``request.tenant`` (with its plan) and ``request.api_key`` are read-only: code that changes a row
loads it from the database (as ``TenantView.patch`` does).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from tenants.bookkeeping import bookkeeping_writes
from tenants.cache import generation_key, global_cache, seed_generation
from tenants.keys import key_matches, parse_key
from tenants.mirror import global_mirror
from tenants.models import ApiKey, Membership, Plan, Tenant

_NS = "tenants:res:v2"
_MISSING = "missing"
#: Past this many entries a process's hints are dropped (and relearnt, one read each).
_HINTS_MAX = 100_000


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


def _touched_key(api_key_id: int) -> str:
    return f"{_NS}:touched:{api_key_id}"


def _ttl() -> int:
    return settings.TENANT_RESOLUTION_CACHE_SECONDS


class _Hints:
    """Which tenant a prefix or slug names and which plan a tenant is on, as last seen here."""

    def __init__(self) -> None:
        self.tenant_of: dict[str, int] = {}
        self.plan_of: dict[int, int] = {}

    def remember(self, anchor: str, tenant: Tenant) -> None:
        if len(self.tenant_of) >= _HINTS_MAX or len(self.plan_of) >= _HINTS_MAX:
            self.tenant_of, self.plan_of = {}, {}
        self.tenant_of[anchor] = tenant.pk
        self.plan_of[tenant.pk] = tenant.plan_id

    def keys_for(self, anchor: str) -> list[str]:
        """The tenant's entries to read with ``anchor``'s: tenant, generation and plan."""
        tenant_id = self.tenant_of.get(anchor)
        if tenant_id is None:
            return []
        keys = [tenant_cache_key(tenant_id), generation_key(tenant_id)]
        if (plan_id := self.plan_of.get(tenant_id)) is not None:
            keys.append(plan_cache_key(plan_id))
        return keys


_hints = _Hints()


@dataclass(frozen=True)
class ResolvedTenant:
    """A tenant with its plan attached, and its cache generation as read with it."""

    tenant: Tenant
    cache_generation: int


@dataclass(frozen=True)
class KeyResolution:
    api_key: ApiKey | None
    error: str | None  # None, "invalid", "revoked" or "expired"
    resolved: ResolvedTenant | None = None  # set when the key is valid and its tenant exists


def _read(keys: list[str], found: dict) -> dict:
    """``found`` plus the entries of ``keys`` not already asked for (one read, if any)."""
    wanted = [key for key in keys if key not in found]
    if wanted:
        found = {**found, **{key: None for key in wanted}, **global_mirror.get_many(wanted)}
    return found


def _cached_or_load(found: dict, key: str, load):
    value = found.get(key)
    if value is None:
        value = load()
        if value is not None:
            global_cache().set(key, value, _ttl())
    return value


def _tenant(tenant_id: int, found: dict) -> ResolvedTenant | None:
    """The tenant, its plan and generation, from ``found`` and at most one more read."""
    found = _read([tenant_cache_key(tenant_id), generation_key(tenant_id)], found)
    tenant = _cached_or_load(
        found, tenant_cache_key(tenant_id), lambda: Tenant.objects.filter(pk=tenant_id).first()
    )
    if tenant is None:
        return None
    tenant = copy.copy(tenant)  # the request's own: its plan is assigned below
    found = _read([plan_cache_key(tenant.plan_id)], found)
    tenant.plan = _cached_or_load(
        found, plan_cache_key(tenant.plan_id), lambda: Plan.objects.get(pk=tenant.plan_id)
    )
    generation = found.get(generation_key(tenant_id))
    return ResolvedTenant(
        tenant, generation if generation is not None else seed_generation(tenant_id)
    )


def _anchored_read(anchor_key: str) -> dict:
    """The anchor's entry and, when this process has seen it before, its tenant's: one read."""
    return _read([anchor_key, *_hints.keys_for(anchor_key)], {})


def resolve_api_key(raw: str) -> KeyResolution:
    """Find the key for a raw bearer token. Unknown and malformed keys are both ``invalid``."""
    parsed = parse_key(raw)
    if parsed is None:
        return KeyResolution(None, "invalid")
    key_entry = api_key_cache_key(parsed.prefix)
    found = _anchored_read(key_entry)
    candidates = _cached_or_load(
        found, key_entry, lambda: list(ApiKey.all_tenants.filter(prefix=parsed.prefix))
    )
    api_key = next((k for k in candidates if key_matches(parsed.raw, k.secret_hash)), None)
    if api_key is None:
        return KeyResolution(None, "invalid")
    if api_key.is_revoked:
        return KeyResolution(api_key, "revoked")
    if api_key.is_expired():
        return KeyResolution(api_key, "expired")
    resolved = _tenant(api_key.tenant_id, found)
    if resolved is None:  # deleted since the key was cached
        return KeyResolution(None, "invalid")
    _hints.remember(key_entry, resolved.tenant)
    return KeyResolution(api_key, None, resolved)


def resolve_slug(slug: str) -> ResolvedTenant | None:
    """The tenant named by a subdomain or ``X-Tenant``, or ``None`` when no tenant has it."""
    slug_entry = tenant_slug_cache_key(slug)
    found = _anchored_read(slug_entry)
    tenant_id = _cached_or_load(
        found,
        slug_entry,
        lambda: Tenant.objects.filter(slug=slug).values_list("pk", flat=True).first() or _MISSING,
    )
    if tenant_id == _MISSING:
        return None
    resolved = _tenant(tenant_id, found)
    if resolved is not None:
        _hints.remember(slug_entry, resolved.tenant)
    return resolved


def get_membership_role(tenant_id: int, user_id: int) -> str | None:
    """The user's role in the tenant, or ``None`` when not a member."""
    member_key = membership_cache_key(tenant_id, user_id)
    role = _cached_or_load(
        {member_key: global_mirror.get_many([member_key]).get(member_key)},
        member_key,
        lambda: (
            Membership.all_tenants.filter(tenant_id=tenant_id, user_id=user_id)
            .values_list("role", flat=True)
            .first()
            or _MISSING
        ),
    )
    return None if role == _MISSING else role


class _TouchMemo:
    """When this process may next record a key's use (monotonic clock), per key id."""

    def __init__(self) -> None:
        self.next_at: dict[int, float] = {}

    def due(self, api_key_id: int, interval: float) -> bool:
        now = time.monotonic()
        if self.next_at.get(api_key_id, 0.0) > now:
            return False
        if len(self.next_at) >= _HINTS_MAX:
            self.next_at = {}
        self.next_at[api_key_id] = now + interval
        return True


_touches = _TouchMemo()


def clear_process_memory() -> None:
    """Forget this process's hints and touch times, as a process that starts now would have none
    (tests use it to play a second process)."""
    _hints.tenant_of, _hints.plan_of, _touches.next_at = {}, {}, {}


def touch_api_key(api_key: ApiKey) -> None:
    """Record the key's use, writing ``last_used_at`` at most once per interval across processes.

    Each process asks the shared cache at most once per interval and key (so a warm request costs
    no round trip for it); ``add`` is atomic, so among the processes only the first one in an
    interval writes. It is a bookkeeping write (``tenants.bookkeeping``), and runs before the
    request's read-your-writes scope opens anyway: it never pins the tenant's reads.
    """
    interval = settings.API_KEY_LAST_USED_INTERVAL_SECONDS
    if not _touches.due(api_key.pk, interval):
        return
    if global_cache().add(_touched_key(api_key.pk), 1, interval):
        with bookkeeping_writes():
            ApiKey.all_tenants.filter(pk=api_key.pk).update(last_used_at=timezone.now())
