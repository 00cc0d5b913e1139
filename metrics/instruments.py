"""The platform's own Prometheus metrics, labelled by bounded values only.

Never a tenant, user, key, path or id as a label: ``plan`` (the plans table: a handful), ``route``
(a URL pattern's name), ``method`` (the nine HTTP methods or ``other``), ``status_class`` (``2xx``
...), ``code`` (the platform's error codes, a fixed set). django-prometheus counts requests per
view, method and status and their latency; these add what it cannot know: the plan, and the error
code of a refusal (rate limits, quotas, bad input). Jobs: ``queue`` (the settings' few),
``kind`` (the job kinds registered in the code) and ``outcome`` (``queues.signals``' five), counted
in the worker process that ran the job.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

#: Latency buckets in seconds: the API's answers are milliseconds; the tail matters.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Jobs wait and run from milliseconds to many minutes.
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)

METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
NO_PLAN = "none"

requests = Counter(
    "ils_http_requests",
    "Requests answered, by plan of the calling tenant, route, method and status class.",
    ["plan", "route", "method", "status_class"],
)
latency = Histogram(
    "ils_http_request_duration_seconds",
    "Time to answer a request, by plan of the calling tenant.",
    ["plan"],
    buckets=LATENCY_BUCKETS,
)
errors = Counter(
    "ils_api_errors",
    "Error answers by code (rate_limited, quota_exceeded, ...) and plan.",
    ["code", "plan"],
)

jobs = Counter(
    "ils_jobs",
    "Job runs ended, by queue, kind and outcome (succeeded, scheduled for a retry, failed, dead, "
    "lost).",
    ["queue", "kind", "outcome"],
)
job_wait = Histogram(
    "ils_job_queue_seconds",
    "Time from a job being due to a worker claiming it, by queue.",
    ["queue"],
    buckets=JOB_BUCKETS,
)
job_duration = Histogram(
    "ils_job_duration_seconds",
    "Time a job's handler ran, by queue and kind.",
    ["queue", "kind"],
    buckets=JOB_BUCKETS,
)
cache_lookups = Counter(
    "ils_tenant_cache_lookups",
    "Lookups of the tenant cache (tenants.cache) by result: hit or miss.",
    ["result"],
)

slow_queries = Counter(
    "ils_slow_queries", "Statements over SLOW_QUERY_MS, by route or job kind.", ["route"]
)
n_plus_ones = Counter(
    "ils_query_n_plus_one",
    "Units that ran one statement N+1 times, by route or job kind.",
    ["route"],
)
usage_dropped = Counter(
    "ils_tenant_usage_dropped", "Per-tenant usage rows dropped because a flush failed."
)


def method_label(method: str | None) -> str:
    return method if method in METHODS else "other"


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"
