"""The degradation app's errors: one root, a DRF ``APIException`` so views answer in the error shape."""

from __future__ import annotations

import math

from rest_framework import status
from rest_framework.exceptions import APIException


class DegradationError(APIException):
    """Root error of the app: a dependency the request needs is unavailable (503)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "dependency_unavailable"
    default_detail = "A dependency is unavailable. Retry shortly."


class CircuitOpen(DegradationError):
    """A call refused without touching the dependency because its breaker is open.

    ``wait`` (seconds until the breaker half-opens, rounded up, at least 1) becomes the
    ``Retry-After`` header through DRF's exception handler; ``details`` names the breaker.
    """

    def __init__(self, name: str, retry_after: float) -> None:
        self.breaker = name
        self.retry_after = max(retry_after, 0.0)
        self.wait = max(1, math.ceil(self.retry_after))
        self.details = {"breaker": name, "retry_after_seconds": self.wait}
        super().__init__(f"The {name} dependency is unavailable (circuit open). Retry shortly.")


class UnknownBreaker(DegradationError, LookupError):
    """A breaker name that is not one of ``BREAKER_NAMES`` (a programming error, not a 503)."""

    status_code = status.HTTP_404_NOT_FOUND
    default_code = "unknown_breaker"

    def __init__(self, name: str) -> None:
        self.details = {"name": name}
        super().__init__(f"No circuit breaker named {name!r}.")
