"""Celery tasks of the tenants app (beat maintenance). Thin: each calls a service."""

from __future__ import annotations

from celery import shared_task

from tenants.limits.quotas import quota_reset_periods


@shared_task(name="tenants.reset_quota_periods", ignore_result=True)
def reset_quota_periods_task() -> int:
    """Global: drop daily and monthly counters of past periods."""
    return quota_reset_periods()
