"""Circuit breakers shared across processes (docs/DEGRADATION.md)."""

from degradation.breakers.core import (
    BREAKER_NAMES,
    PROCESS_LOCAL,
    Breaker,
    all_breakers,
    breaker,
    breaker_counters,
    open_breakers,
    reset_registry,
)
from degradation.breakers.storage import CLOSED, HALF_OPEN, OPEN, Snapshot
from degradation.breakers.views import REFERENCED_NAMES, requires_dependencies
from degradation.exceptions import CircuitOpen, DegradationError, UnknownBreaker

__all__ = [
    "BREAKER_NAMES",
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "PROCESS_LOCAL",
    "REFERENCED_NAMES",
    "Breaker",
    "CircuitOpen",
    "DegradationError",
    "Snapshot",
    "UnknownBreaker",
    "all_breakers",
    "breaker",
    "breaker_counters",
    "open_breakers",
    "requires_dependencies",
    "reset_registry",
]
