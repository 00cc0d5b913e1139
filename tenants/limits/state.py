"""``LimitsState``: what the limits decided for one request (or any unit of work that opens one).

``LimitsMiddleware`` opens it on the way in and reads it on the way out; admission fills in the
rate window and the API-call count, and every quota check or reservation made during the request
adds its warning. Nothing is left on the request object: the parts of the package meet here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenants.limits.api_calls import ApiCallCount
    from tenants.limits.ratelimits import RateLimitState

#: Percentages of a limit at which ``quota_threshold_crossed`` is sent; the first one also starts
#: the ``Quota-Warning`` header.
THRESHOLDS = (80, 100)


@dataclass(frozen=True)
class QuotaWarning:
    """A counter at or above the first threshold (80%) of its limit after this request's work."""

    resource: str
    used: int
    limit: int

    @property
    def percent(self) -> int:
        return 100 if self.limit == 0 else self.used * 100 // self.limit

    def header_value(self) -> str:
        return f"{self.resource}; used={self.used}; limit={self.limit}; percent={self.percent}"


@dataclass
class LimitsState:
    """The rate budget, the API-call count and the quota warnings of one request."""

    rate: RateLimitState | None = None
    api_call: ApiCallCount | None = None
    warnings: dict[str, QuotaWarning] = field(default_factory=dict)

    def note_usage(self, resource: str, used: int, limit: int | None) -> None:
        """Keep a warning for ``resource`` when ``used`` is at 80% or more of ``limit``."""
        if limit is not None and used * 100 >= THRESHOLDS[0] * limit:
            self.warnings[resource] = QuotaWarning(resource, used, limit)

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` for a request the rate limits counted, ``Quota-Warning`` for every
        quota it left at 80% or more. (A refusal's ``Retry-After`` comes with its error.)"""
        headers: dict[str, str] = {}
        if self.rate is not None:
            headers["RateLimit-Limit"] = str(self.rate.limit)
            headers["RateLimit-Remaining"] = str(self.rate.remaining)
            headers["RateLimit-Reset"] = str(self.rate.reset)
        if self.warnings:
            headers["Quota-Warning"] = ", ".join(w.header_value() for w in self.warnings.values())
        return headers


_state: ContextVar[LimitsState | None] = ContextVar("ils_limits_state", default=None)


@contextmanager
def limits_state() -> Iterator[LimitsState]:
    """Open a ``LimitsState`` for the block (one request); it is gone after."""
    state = LimitsState()
    token = _state.set(state)
    try:
        yield state
    finally:
        _state.reset(token)


def current_limits_state() -> LimitsState | None:
    """The state of the request being served, or ``None`` outside one."""
    return _state.get()


def note_usage(resource: str, used: int, limit: int | None) -> None:
    """Record usage on the open state, if any (work outside a request has no headers to add)."""
    state = _state.get()
    if state is not None:
        state.note_usage(resource, used, limit)
