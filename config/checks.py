"""System checks of the wiring: configuration read from the environment."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_database_variables(app_configs, **kwargs):
    """A malformed database URL or pool size stops start-up with the variable's name (config.E001)."""
    return [
        Error(f"{variable} {problem}.", hint="See docs/CONFIGURATION.md.", id="config.E001")
        for variable, problem in settings.DATABASE_CONFIG_ERRORS
    ]
