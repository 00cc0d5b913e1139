"""Per-tenant API rate limits, counted with django-ratelimit's core (docs/RATELIMITS.md).

``tenants.api_limits.TenantRateThrottle`` calls ``check`` for every DRF view; a request without a
tenant, outside ``/api/v1/``, or of a tenant whose ``requests_per_minute`` is unlimited is never
limited.

Groups: ``reads`` (GET, HEAD, OPTIONS) get the tenant's ``requests_per_minute`` (plan, then
``limit_overrides``); ``writes`` (every other method) and ``uploads`` (views that set
``ratelimit_group = "uploads"``) get a fraction of it (``GROUP_DIVISORS``), at least 1 (0 stays 0:
a tenant limited to 0 requests is blocked). Each group has its own counter. An API key with its own
``requests_per_minute`` also has its own counters, checked after the tenant's: a request must fit
both budgets.

Invariant (no reset on a plan change): django-ratelimit puts the rate into its counter key, so
asking it for the tenant's rate would start a new counter at zero whenever the plan or an override
changes. We pass it one constant ``_KEY_RATE`` instead, so the key is made of the group, the
subject (tenant or key id) and the window only, and compare the count with the current limit
ourselves. A refused request takes its increments back, so refused requests use up no budget.

Invariant (no 500 when Redis is down): counters live in the ``RATELIMIT_USE_CACHE`` alias, which
has no local fallback, so an outage raises here instead of counting per process unnoticed.
``RATELIMIT_FAIL_OPEN`` then decides: on, the request goes through unlimited; off, it gets 503
``rate_limit_unavailable``. Either way the outage is logged once and counted (``outage_counters``).

Failed API-key attempts are counted per client address (``auth`` group, the address masked as
django-ratelimit does, behind ``RATELIMIT_IP_META_KEY`` when set): past
``RATELIMIT_AUTH_FAILURES_PER_MINUTE`` every keyed request from that address gets 429 before its
key is even looked up, so a right guess is refused too and guessing learns nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest
from django_ratelimit import ALL
from django_ratelimit import core as ratelimit_core
from django_ratelimit.core import _get_window, _make_cache_key, get_usage
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tenants.exceptions import RateLimitUnavailable, TooManyFailedAttempts

logger = logging.getLogger(__name__)

#: The paths whose views are limited (the tenant API).
LIMITED_PATH_PREFIX = "/api/v1/"
#: Methods counted in the ``reads`` group; every other method is a write.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Each group's budget is ``requests_per_minute // divisor`` (at least 1 unless the limit is 0).
GROUP_DIVISORS = {"reads": 1, "writes": 4, "uploads": 10}
WINDOW_SECONDS = 60
#: The rate handed to django-ratelimit: constant, so it keys the counter by group, subject and
#: window only. Its count (1) is never used as a limit.
_KEY_RATE = (1, WINDOW_SECONDS)
#: What a counter operation raises while the counter store is down.
COUNTER_DOWN = (RedisConnectionError, RedisTimeoutError, TimeoutError)
AUTH_GROUP = "auth"


@dataclass(frozen=True)
class RateLimitState:
    group: str
    limit: int
    remaining: int
    reset: int  # seconds to the end of the window
    limited: bool


def group_for(method: str, declared: str | None = None) -> str:
    """The view's declared group (``ratelimit_group``), else reads or writes by method."""
    if declared is not None:
        if declared not in GROUP_DIVISORS:
            raise ValueError(
                f"Unknown rate-limit group {declared!r}: one of {list(GROUP_DIVISORS)}"
            )
        return declared
    return "reads" if method.upper() in READ_METHODS else "writes"


def group_limit(per_minute: int | None, group: str) -> int | None:
    """The requests per window of ``group`` for a per-minute budget; ``None`` means unlimited."""
    if per_minute is None:
        return None
    if per_minute == 0:
        return 0
    return max(1, per_minute // GROUP_DIVISORS[group])


class _Outage:
    """Counter-store failures seen by this process: logged once per outage, counted always."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down = False
        self.counts = {"failed_open": 0, "failed_closed": 0, "outages": 0}

    def failed(self, error: Exception) -> None:
        fail_open = settings.RATELIMIT_FAIL_OPEN
        with self.lock:
            self.counts["failed_open" if fail_open else "failed_closed"] += 1
            if self.down:
                return
            self.down = True
            self.counts["outages"] += 1
        logger.warning(
            "Rate-limit counters unavailable (%s: %s); requests are %s until they return",
            type(error).__name__,
            error,
            "let through unlimited" if fail_open else "refused with 503",
        )

    def succeeded(self) -> None:
        if self.down:  # read without the lock: the usual path takes none
            with self.lock:
                self.down = False
            logger.warning("Rate-limit counters are back")


_outage = _Outage()


def outage_counters() -> dict[str, int]:
    """How often the counters were unavailable, and what was decided (for metrics)."""
    with _outage.lock:
        return dict(_outage.counts)


def guarded(operation: Callable[[], object]) -> object | None:
    """Run a counter operation; ``None`` when the store is down and fail-open lets the request by.

    Raises ``RateLimitUnavailable`` (503) when the store is down and ``RATELIMIT_FAIL_OPEN`` is off.
    """
    try:
        result = operation()
    except COUNTER_DOWN as error:
        _outage.failed(error)
        if settings.RATELIMIT_FAIL_OPEN:
            return None
        raise RateLimitUnavailable() from error
    _outage.succeeded()
    return result


def read_or_none(operation: Callable[[], object]) -> object | None:
    """A counter read for a report (never a decision): ``None`` while the store is down."""
    try:
        return operation()
    except COUNTER_DOWN:
        return None


def _now() -> int:
    """django-ratelimit's clock (its windows are computed from it)."""
    return int(ratelimit_core.time.time())


def _counters():
    return caches[settings.RATELIMIT_USE_CACHE]


def _refund(group: str, subject: str, window: int) -> None:
    """Take back a refused request's increment (the key django-ratelimit 4.1 made for it)."""
    if _get_window(subject, WINDOW_SECONDS) != window:
        return  # that window is over: its counter no longer matters
    cache_key = _make_cache_key(group, window, _KEY_RATE, subject, ALL)
    with suppress(ValueError):  # expired in between: nothing to take back
        _counters().decr(cache_key)


@dataclass(frozen=True)
class _Counted:
    state: RateLimitState
    subject: str
    window: int


def _count(request: HttpRequest, group: str, subject: str, limit: int) -> _Counted | None:
    """Count the request against ``subject``'s budget; a refusal takes its increment back."""
    window = _get_window(subject, WINDOW_SECONDS)
    usage = get_usage(request, group=group, key=lambda *_: subject, rate=_KEY_RATE, increment=True)
    if usage is None:  # RATELIMIT_ENABLE is off (or, failing open, django-ratelimit lost a count)
        return None
    if usage["limit"] == 0:  # django-ratelimit lost the count and fails closed
        raise RedisConnectionError("The rate-limit counter could not be read.")
    reset, count = max(usage["time_left"], 0), usage["count"]
    if count > limit:
        _refund(group, subject, window)
        return _Counted(RateLimitState(group, limit, 0, max(reset, 1), True), subject, window)
    return _Counted(RateLimitState(group, limit, limit - count, reset, False), subject, window)


def _check_counted(request: HttpRequest, group: str) -> RateLimitState | None:
    """The tenant's budget, then the key's own; the tighter answer wins, a refusal refunds both."""
    tenant_limit = group_limit(request.tenant.limits().get("requests_per_minute"), group)
    api_key = getattr(request, "api_key", None)
    key_limit = group_limit(getattr(api_key, "requests_per_minute", None), group)
    tenant = None
    if tenant_limit is not None:
        tenant = _count(request, group, f"tenant:{request.tenant.pk}", tenant_limit)
        if tenant is None or tenant.state.limited:
            return tenant.state if tenant else None
    key = (
        _count(request, group, f"apikey:{api_key.pk}", key_limit) if key_limit is not None else None
    )
    if key is not None and key.state.limited and tenant is not None:
        _refund(group, tenant.subject, tenant.window)
    if key is None or (tenant is not None and tenant.state.remaining < key.state.remaining):
        return tenant.state if tenant else None
    return key.state


def applies_to(request: HttpRequest) -> bool:
    """Limits and API-call counting apply to tenant requests under ``/api/v1/`` only."""
    return getattr(request, "tenant", None) is not None and request.path.startswith(
        LIMITED_PATH_PREFIX
    )


def check(request: HttpRequest, declared_group: str | None = None) -> RateLimitState | None:
    """Count the request against its tenant's (and key's) group budget; ``None``: not limited."""
    if not applies_to(request):
        return None
    group = group_for(request.method, declared_group)
    return guarded(lambda: _check_counted(request, group))


def _peek(subject: str, limit: int | None, group: str, counts: dict[str, int]) -> dict | None:
    if limit is None:
        return None
    window = _get_window(subject, WINDOW_SECONDS)
    used = counts.get(_make_cache_key(group, window, _KEY_RATE, subject, ALL), 0)
    return {"limit": limit, "remaining": max(limit - used, 0), "reset": max(window - _now(), 0)}


def current_budget(request: HttpRequest) -> dict[str, dict[str, dict | None]]:
    """Per group, what the tenant (and the key, if it has its own limit) has left in this window.

    Read without counting, in one round trip; ``None`` for an unlimited group. While the counter
    store is down the counts read as zero.
    """
    subjects = {"tenant": (f"tenant:{request.tenant.pk}", request.tenant.limits())}
    api_key = getattr(request, "api_key", None)
    if getattr(api_key, "requests_per_minute", None) is not None:
        subjects["api_key"] = (
            f"apikey:{api_key.pk}",
            {"requests_per_minute": api_key.requests_per_minute},
        )
    keys = [
        _make_cache_key(group, _get_window(subject, WINDOW_SECONDS), _KEY_RATE, subject, ALL)
        for subject, _ in subjects.values()
        for group in GROUP_DIVISORS
    ]
    counts = read_or_none(lambda: _counters().get_many(keys)) or {}
    return {
        name: {
            group: _peek(
                subject, group_limit(limits.get("requests_per_minute"), group), group, counts
            )
            for group in GROUP_DIVISORS
        }
        for name, (subject, limits) in subjects.items()
    }


def _auth_rate() -> tuple[int, int]:
    return (max(1, settings.RATELIMIT_AUTH_FAILURES_PER_MINUTE), WINDOW_SECONDS)


def refuse_if_guessing(request: HttpRequest) -> None:
    """Raise ``TooManyFailedAttempts`` (429) when the client's address failed too often.

    One read of the counter ``record_failed_attempt`` increments (the same django-ratelimit key).
    """
    address = ratelimit_core._get_ip(request)
    window = _get_window(address, WINDOW_SECONDS)
    key = _make_cache_key(AUTH_GROUP, window, _auth_rate(), address, ALL)
    failures = guarded(lambda: _counters().get(key, 0))
    if failures is not None and failures >= _auth_rate()[0]:
        raise TooManyFailedAttempts(wait=max(window - _now(), 1))


def record_failed_attempt(request: HttpRequest) -> None:
    """Count one failed API-key attempt against the client's address."""
    guarded(
        lambda: get_usage(request, group=AUTH_GROUP, key="ip", rate=_auth_rate(), increment=True)
    )
