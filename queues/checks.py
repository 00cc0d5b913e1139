"""System checks of the queues app."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_visibility_timeout(app_configs=None, **kwargs) -> list[Error]:
    """queues.E001: the Redis transport redelivers an unacked message after its visibility
    timeout. A message may then be delivered again while its job runs; the claim makes that
    harmless, but only when the timeout is longer than a lease (else every long job would see a
    redelivery before a lost worker could even be noticed)."""
    timeout = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    if timeout <= settings.JOB_LEASE_SECONDS:
        return [
            Error(
                f"CELERY_VISIBILITY_TIMEOUT ({timeout} s) must be longer than JOB_LEASE_SECONDS "
                f"({settings.JOB_LEASE_SECONDS} s).",
                hint="Raise CELERY_VISIBILITY_TIMEOUT (default 3600) or lower JOB_LEASE_SECONDS.",
                id="queues.E001",
            )
        ]
    return []
