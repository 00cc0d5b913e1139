"""System checks of the metrics app."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_metrics_networks(app_configs=None, **kwargs) -> list[Error]:
    """metrics.E001: every ``METRICS_ALLOWED_NETWORKS`` entry is an address or a network."""
    errors = []
    for entry in settings.METRICS_ALLOWED_NETWORKS:
        if not entry.strip():
            continue
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            errors.append(
                Error(
                    f"METRICS_ALLOWED_NETWORKS has {entry!r}, which is not an address or network.",
                    hint="Comma-separated CIDRs, e.g. 10.0.0.0/8,127.0.0.1/32; empty: token only.",
                    id="metrics.E001",
                )
            )
    return errors
