"""System checks: ``degradation.E001`` an unknown circuit breaker name in settings or in code."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_breaker_names(app_configs=None, **kwargs) -> list[Error]:
    from degradation.breakers import BREAKER_NAMES, REFERENCED_NAMES

    errors = []
    configured = getattr(settings, "CIRCUIT_BREAKERS", {})
    for name in sorted(set(configured) - set(BREAKER_NAMES)):
        errors.append(
            Error(
                f"CIRCUIT_BREAKERS names an unknown circuit breaker {name!r}.",
                hint=f"Known breakers: {', '.join(BREAKER_NAMES)}.",
                id="degradation.E001",
            )
        )
    for name in sorted(REFERENCED_NAMES - set(BREAKER_NAMES)):
        errors.append(
            Error(
                f"requires_dependencies() names an unknown circuit breaker {name!r}.",
                hint=f"Known breakers: {', '.join(BREAKER_NAMES)}.",
                id="degradation.E001",
            )
        )
    for name, config in configured.items():
        if int(config.get("failures", 1)) < 1 or float(config.get("reset_seconds", 0)) < 0:
            errors.append(
                Error(
                    f"Circuit breaker {name!r}: failures must be >= 1 and reset_seconds >= 0.",
                    id="degradation.E002",
                )
            )
    return errors
