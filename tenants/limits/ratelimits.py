"""Per-tenant API rate limits, counted by django-ratelimit (docs/RATELIMITS.md).

``tenants.limits.middleware.LimitsMiddleware`` calls ``check`` before every view under
``/api/v1/`` of a request with a tenant; a tenant whose ``requests_per_minute`` is unlimited (and
whose key has no limit of its own) is never limited.

Groups: ``reads`` (GET, HEAD, OPTIONS) get the tenant's ``requests_per_minute`` (plan, then
``limit_overrides``); ``writes`` (every other method) and ``uploads`` (views that set
``ratelimit_group = "uploads"``) get a fraction of it (``GROUP_DIVISORS``), at least 1 (0 stays 0:
a tenant limited to 0 requests is blocked). Each group has its own counter. An API key with its own
``requests_per_minute`` also has its own counters: a request must fit both budgets.

Counting goes through django-ratelimit's public ``get_usage`` only (a key callable and a rate
tuple), which costs one round trip per budget on the counters' alias (``add`` then ``incr``; the
alias remembers the windows it has seen, ``REMEMBER_ADDED`` in ``degradation.cache``).

Invariant (no reset on a plan change): django-ratelimit puts the rate into its counter key, so
asking it for the tenant's rate would start a new counter at zero whenever the plan or an override
changes. We pass it one constant ``_KEY_RATE`` instead, so the key is made of the group, the
subject (tenant or key id) and the window only, and compare the count with the current limit
ourselves.

Invariant (refused requests use up no budget): django-ratelimit has no public way to take an
increment back, so a refusal is counted in a second counter of the same window (group
``<group>:refunded``, same subject and period, so django-ratelimit puts it in the same window), and
what a budget has used is ``count - refunded``. A request that fits costs the one increment; only a
count past the limit reads the refunds (and a refusal adds one). So raising a limit mid-window lets
through exactly what the new limit allows. The key's own budget is counted before the tenant's, so
a key that refuses never touches the tenant's shared budget, and a tenant that refuses refunds the
key.

Invariant (no 500 when Redis is down): counters live in the ``RATELIMIT_USE_CACHE`` alias, which
has no local fallback, so an outage raises here instead of counting per process unnoticed.
``RATELIMIT_FAIL_OPEN`` then decides: on, the request goes through unlimited; off, it gets 503
``rate_limit_unavailable``. Either way the outage is logged once and counted (``outage_counters``).

Failed API-key attempts are counted per client address (``auth`` group, django-ratelimit's ``ip``
key, behind ``RATELIMIT_IP_META_KEY`` when set) and, for a well-formed key, per key prefix (``auth:
prefix``: guesses at one key from many addresses). Past ``RATELIMIT_AUTH_FAILURES_PER_MINUTE`` on
either, a bad key is answered 429 instead of 401 until the window ends. A valid key is never refused
for failures: behind a proxy or a NAT other clients share the address, and a guesser may share
the prefix.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tenants.exceptions import RateLimitUnavailable, TooManyFailedAttempts
from tenants.limits.registry import REQUESTS_PER_MINUTE
from tenants.models import ApiKey, Tenant

logger = logging.getLogger(__name__)

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


def _get_usage(request: HttpRequest, **kwargs) -> dict | None:
    """django-ratelimit's ``get_usage``; ``None`` when ``RATELIMIT_ENABLE`` is off.

    A count it lost (it then answers a limit of 0, whatever the rate) is raised as a counter-store
    failure, for ``guarded`` to decide.
    """
    usage = get_usage(request, **kwargs)
    if usage is not None and usage["limit"] == 0:
        raise RedisConnectionError("The rate-limit counter could not be read.")
    return usage


def _usage(request: HttpRequest, group: str, subject: str, *, increment: bool) -> dict | None:
    """The count of ``subject`` in ``group``'s current window."""
    return _get_usage(
        request, group=group, key=lambda _group, _request: subject, rate=_KEY_RATE,
        increment=increment,
    )  # fmt: skip


def _refunds(group: str) -> str:
    return f"{group}:refunded"


def _refunded(request: HttpRequest, group: str, subject: str) -> int:
    usage = _usage(request, _refunds(group), subject, increment=False)
    return usage["count"] if usage else 0


def _refund(request: HttpRequest, group: str, subject: str) -> None:
    _usage(request, _refunds(group), subject, increment=True)


def _count(request: HttpRequest, group: str, subject: str, limit: int) -> RateLimitState | None:
    usage = _usage(request, group, subject, increment=True)
    if usage is None:
        return None
    reset, used = max(usage["time_left"], 0), usage["count"]
    if used > limit:
        used -= _refunded(request, group, subject)
    if used > limit:
        _refund(request, group, subject)
        return RateLimitState(group, limit, 0, max(reset, 1), True)
    return RateLimitState(group, limit, limit - used, reset, False)


def _subjects(tenant: Tenant, api_key: ApiKey | None) -> list[tuple[str, str, int | None]]:
    """``(name, counter subject, per-minute limit)``: the key's own budget first, then the
    tenant's."""
    subjects = []
    if api_key is not None and api_key.requests_per_minute is not None:
        subjects.append(("api_key", f"apikey:{api_key.pk}", api_key.requests_per_minute))
    subjects.append(("tenant", f"tenant:{tenant.pk}", tenant.limits().get(REQUESTS_PER_MINUTE)))
    return subjects


def _check_counted(
    request: HttpRequest, tenant: Tenant, api_key: ApiKey | None, group: str
) -> RateLimitState | None:
    tightest: RateLimitState | None = None
    counted: list[str] = []
    for _name, subject, per_minute in _subjects(tenant, api_key):
        limit = group_limit(per_minute, group)
        if limit is None:
            continue
        state = _count(request, group, subject, limit)
        if state is None:
            return None
        if state.limited:
            for earlier in counted:  # the key's increment, when the tenant refuses
                _refund(request, group, earlier)
            return state  # later budgets are not touched
        counted.append(subject)
        if tightest is None or state.remaining < tightest.remaining:
            tightest = state
    return tightest


def check(
    request: HttpRequest, *, tenant: Tenant, api_key: ApiKey | None, group: str
) -> RateLimitState | None:
    """Count the request against its key's and tenant's budgets of ``group``; the tightest answer
    (a refusal, else the fewest remaining) is returned. ``None``: not limited."""
    return guarded(lambda: _check_counted(request, tenant, api_key, group))


def _peek(request: HttpRequest, group: str, subject: str, limit: int | None) -> dict | None:
    if limit is None:
        return None
    usage = read_or_none(lambda: _usage(request, group, subject, increment=False))
    refunded = read_or_none(lambda: _refunded(request, group, subject)) or 0
    used = usage["count"] - refunded if usage else 0
    reset = max(usage["time_left"], 0) if usage else WINDOW_SECONDS
    return {"limit": limit, "remaining": max(limit - used, 0), "reset": reset}


def current_budget(
    request: HttpRequest, *, tenant: Tenant, api_key: ApiKey | None
) -> dict[str, dict[str, dict | None]]:
    """Per group, what the tenant (and the key, if it has its own limit) has left in this window.

    Read without counting; ``None`` for an unlimited group. While the counter store is down the
    counts read as zero.
    """
    return {
        name: {
            group: _peek(request, group, subject, group_limit(per_minute, group))
            for group in GROUP_DIVISORS
        }
        for name, subject, per_minute in reversed(_subjects(tenant, api_key))
    }


def attempts_over_budget(
    request: HttpRequest, counters: list[tuple[str, object]], per_minute: int
) -> int | None:
    """Count one attempt in each ``(group, key)`` counter (a django-ratelimit key: a name such as
    ``"ip"`` or a callable); the seconds to wait when any is past ``per_minute``, else ``None``.

    Every counter is counted, so one that is over does not hide the attempt from the others.
    While the counters are down ``RATELIMIT_FAIL_OPEN`` decides (``guarded``).
    """
    rate = (max(1, per_minute), WINDOW_SECONDS)
    waits = []
    for group, key in counters:
        usage = guarded(
            lambda group=group, key=key: _get_usage(
                request, group=group, key=key, rate=rate, increment=True
            )
        )
        if usage is not None and usage["should_limit"]:
            waits.append(max(usage["time_left"], 1))
    return max(waits) if waits else None


def record_failed_attempt(request: HttpRequest, key_prefix: str | None = None) -> None:
    """Count one failed API-key attempt against the client's address and, for a well-formed key,
    against its prefix; raise ``TooManyFailedAttempts`` (429) once either is past its budget for
    this window.

    The prefix counter stops guesses at one key's secret spread over many addresses (a botnet, or
    every client behind one proxy). Both only ever refuse bad keys: a valid key is never counted.
    """
    counters: list[tuple[str, object]] = [(AUTH_GROUP, "ip")]
    if key_prefix is not None:
        counters.append((f"{AUTH_GROUP}:prefix", lambda _group, _request: key_prefix))
    wait = attempts_over_budget(request, counters, settings.RATELIMIT_AUTH_FAILURES_PER_MINUTE)
    if wait is not None:
        raise TooManyFailedAttempts(wait=wait)
