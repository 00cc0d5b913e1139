"""Gauges computed when Prometheus scrapes, from state every process shares.

In multiprocess mode a custom collector registered in one process's registry is invisible to the
scrape (prometheus_client reads only the files); and a gauge kept per process would be one
worker's view. So what is shared is read at scrape time, once, by the scraping process: breaker
states (shared in Redis), the job table and the broker (``queues.selectors.queue_stats``: a few SQL
queries and one broker inspection per scrape), and what the wiring adds with ``add_source`` (the
replicas' lag, from ``config``, which metrics may not import). A source that fails yields
nothing rather than fail the scrape; ``ils_scrape_collector_errors`` says which.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from degradation.breakers import CLOSED, HALF_OPEN, OPEN, all_breakers
from metrics.selectors import busiest_tenants, this_hour, totals_since
from queues.selectors import queue_stats

logger = logging.getLogger(__name__)

BREAKER_STATES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


def _breakers() -> list[GaugeMetricFamily]:
    state = GaugeMetricFamily(
        "ils_breaker_state",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        labels=["breaker"],
    )
    for breaker in all_breakers():
        state.add_metric([breaker.name], BREAKER_STATES.get(breaker.snapshot().state, 2))
    return [state]


def _queues() -> list[GaugeMetricFamily]:
    stats = queue_stats()
    jobs = GaugeMetricFamily(
        "ils_queue_jobs", "Jobs in the table by queue and status.", labels=["queue", "status"]
    )
    oldest = GaugeMetricFamily(
        "ils_queue_oldest_waiting_seconds", "Age of the oldest due job.", labels=["queue"]
    )
    depth = GaugeMetricFamily(
        "ils_queue_broker_depth", "Messages waiting on the broker.", labels=["queue"]
    )
    finished = GaugeMetricFamily(
        "ils_queue_finished_last_hour",
        "Jobs finished in the last hour by outcome.",
        labels=["queue", "outcome"],
    )
    for queue in stats.queues:
        for status in ("queued", "scheduled", "running"):
            jobs.add_metric([queue.name, status], getattr(queue, status))
        if queue.oldest_waiting_seconds is not None:
            oldest.add_metric([queue.name], queue.oldest_waiting_seconds)
        if queue.broker_depth is not None:
            depth.add_metric([queue.name], queue.broker_depth)
        finished.add_metric([queue.name, "succeeded"], queue.succeeded_last_hour)
        finished.add_metric([queue.name, "failed"], queue.failed_last_hour)
    workers = GaugeMetricFamily("ils_queue_workers_alive", "Workers with a recent heartbeat.")
    workers.add_metric([], stats.workers_alive)
    return [jobs, oldest, depth, finished, workers]


def _top_tenants() -> list[GaugeMetricFamily]:
    """The ``TENANT_METRICS_TOP_N`` tenants with most requests this hour, by slug, and the rest
    summed as ``other``: a bounded label set whatever the number of tenants (two queries on the
    hour's rows, which ``metrics_usage_hour_idx`` finds)."""
    since = this_hour()
    top = busiest_tenants(since=since, limit=settings.TENANT_METRICS_TOP_N)
    totals = totals_since(since)
    requests = GaugeMetricFamily(
        "ils_tenant_requests_this_hour",
        "Requests this hour of the busiest tenants (the rest: other).",
        labels=["tenant"],
    )
    errors = GaugeMetricFamily(
        "ils_tenant_errors_this_hour",
        "Error answers this hour of the busiest tenants (the rest: other).",
        labels=["tenant"],
    )
    for row in top:
        requests.add_metric([row.slug], row.figures.requests)
        errors.add_metric([row.slug], row.figures.errors)
    requests.add_metric(["other"], totals.requests - sum(row.figures.requests for row in top))
    errors.add_metric(["other"], totals.errors - sum(row.figures.errors for row in top))
    return [requests, errors]


Source = Callable[[], Iterable[Metric]]
SOURCES: dict[str, Source] = {
    "breakers": _breakers,
    "queues": _queues,
    "top_tenants": _top_tenants,
}


def add_source(name: str, source: Source) -> None:
    """Add a scrape-time source (``config`` adds the replicas'); the same name replaces."""
    SOURCES[name] = source


class SharedStateCollector(Collector):
    """Every scrape-time gauge; a source that fails is skipped and counted."""

    def collect(self):
        errors = GaugeMetricFamily(
            "ils_scrape_collector_errors",
            "1 when a scrape-time source failed in this scrape.",
            labels=["source"],
        )
        for name, source in SOURCES.items():
            try:
                yield from source()
                errors.add_metric([name], 0.0)
            except Exception:
                logger.exception("metrics source %s failed", name)
                errors.add_metric([name], 1.0)
        yield errors
