"""Beat tasks of the metrics app (global, on the cleanup queue)."""

from __future__ import annotations

from celery import shared_task

from metrics import usage


@shared_task(name="metrics.roll_up_usage", ignore_result=True)
def roll_up_usage_task() -> dict[str, int]:
    """Global: finished days of per-tenant usage rolled up; rows past retention deleted."""
    days = usage.roll_up_days()
    hours_pruned, days_pruned = usage.prune()
    return {"days": days, "hours_pruned": hours_pruned, "days_pruned": days_pruned}
