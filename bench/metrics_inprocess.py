"""Each metrics feature's cost per request, measured in one process without wrk, HTTP or gunicorn.

bench/metrics.py runs this after its wrk table (``make bench-metrics``); alone:

    .venv/bin/python -m scripts.services run -- .venv/bin/python bench/metrics_inprocess.py \\
        [--rounds 40] [--requests 400] [--tenants 4]

Why: on 2 CPUs shared by wrk, the workers, PostgreSQL and Redis, the wrk table's noise (about
±100-150 µs a request) is larger than the per-tenant counters' and the query monitor's costs. Here
one thread sends ``GET /api/v1/tenant/`` (ceiling.py's tenants and keys: ``setup_project``, the key
rotated per request) through the project's whole middleware stack with Django's test ``Client``,
on the real PostgreSQL and Redis, serially: nothing else competes for the CPU, and the only
difference between two variants is the feature.

Variants (the same steps as bench/metrics.py): ``all off`` (the project's MIDDLEWARE without the
metrics middleware and django-prometheus's pair), ``+ request metrics`` (our middleware; usage and
the monitor off), ``+ django-prometheus`` (its pair too), ``+ per-tenant usage``
(``TENANT_METRICS_ENABLED``), ``+ query monitor 10%`` and ``100%`` (``QUERY_MONITOR_ENABLED`` and
its sample rate). Each variant is a ``Client`` made under ``override_settings`` of those settings
(the middleware chain is built at its first request, under the override); the usage and monitor
switches are read per request, so they take effect at once. Prometheus runs in multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``: a new empty folder, set before Django loads), as in production.
The flush threads are off (both flush settings 0), so no background work lands in a round; this
measures the request path only.

A first warm-up of 1,000 requests fills the caches and the pool. Rounds: every variant once per
round in a rotated order (round r starts r variants further down), each ``--requests`` requests
after 50 of warm-up (a new client builds its middleware chain). On this VM the same variant took
from 1,050 to 2,565 CPU µs a request from one 400-request block to the next (cause not found: the
machine's own load was the bench alone), so the rounds are many and short, and a
variant's cost is paired: in each round, its time minus ``all off``'s time in the same round, and
the median of those differences over the rounds. Times are this process's CPU time
(``time.process_time``: the features are CPU work in the process, and waiting on PostgreSQL and
Redis, the same in every variant, drops out) and, beside it, wall time. Table: per variant the
median CPU µs/request; its best round (noise only ever adds time, so the fastest of 40 short rounds
is the closest to the code's own cost) and the difference of best rounds against ``all off``; the
paired CPU cost against ``all off`` with the middle half of the
rounds' differences (25th-75th percentile), the same paired cost in wall time, and the SQL
queries per request (an untimed pass of 200 requests
per variant under Django's ``CaptureQueriesContext``: the features must add none). Exit status 1
when an answer was not a 200.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Before Django (and prometheus_client) load: multiprocess mode, as under gunicorn; no flush thread.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ils-bench-inprocess-")
os.environ["TENANT_METRICS_FLUSH_SECONDS"] = "0"
os.environ["QUERY_MONITOR_FLUSH_SECONDS"] = "0"
os.environ.pop("DJANGO_DEBUG", None)
os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"  # the test client's host

from bench.ceiling import setup_project  # noqa: E402
from bench.report import print_table  # noqa: E402

PATH = "/api/v1/tenant/"
WARM_UP = 50
SQL_PASS = 200
OURS = "metrics.middleware.MetricsMiddleware"
PROMETHEUS = (
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
)
OFF = {"TENANT_METRICS_ENABLED": False, "QUERY_MONITOR_ENABLED": False}
USAGE = {**OFF, "TENANT_METRICS_ENABLED": True}
MONITOR = {**USAGE, "QUERY_MONITOR_ENABLED": True}
# (name, left out of MIDDLEWARE, settings)
VARIANTS = (
    ("all off", {OURS, *PROMETHEUS}, OFF),
    ("+ request metrics", set(PROMETHEUS), OFF),
    ("+ django-prometheus", set(), OFF),
    ("+ per-tenant usage", set(), USAGE),
    ("+ query monitor 10%", set(), {**MONITOR, "QUERY_MONITOR_SAMPLE_RATE": 0.1}),
    ("+ query monitor 100%", set(), {**MONITOR, "QUERY_MONITOR_SAMPLE_RATE": 1.0}),
)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--tenants", type=int, default=4)
    return parser.parse_args()


def _client(middleware: list[str], changes: dict):
    """A test Client whose handler is built under the variant's settings (at its first request)."""
    from django.test import Client, override_settings

    override = override_settings(MIDDLEWARE=middleware, **changes)
    override.enable()
    client = Client()
    return client, override


def _send(client, keys, count: int) -> int:
    """``count`` requests with the keys in turn; returns how many answers were not a 200."""
    bad = 0
    for key in itertools.islice(keys, count):
        if client.get(PATH, HTTP_AUTHORIZATION=f"Bearer {key}").status_code != 200:
            bad += 1
    return bad


def main() -> int:
    args = _arguments()
    secrets = setup_project(args.tenants)
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    base = list(settings.MIDDLEWARE)
    keys = itertools.cycle(secrets)
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    wall: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    sql: dict[str, float] = {}
    client, override = _client(base, {})  # the caches and the pool warm, once for all
    try:
        bad = _send(client, keys, 1000)
    finally:
        override.disable()
    for name, left_out, changes in VARIANTS:  # warm-up and the SQL pass, untimed
        client, override = _client([m for m in base if m not in left_out], changes)
        try:
            bad += _send(client, keys, WARM_UP)
            with CaptureQueriesContext(connection) as queries:
                bad += _send(client, keys, SQL_PASS)
            sql[name] = len(queries) / SQL_PASS
        finally:
            override.disable()
    for number in range(args.rounds):
        order = VARIANTS[number % len(VARIANTS) :] + VARIANTS[: number % len(VARIANTS)]
        for name, left_out, changes in order:
            client, override = _client([m for m in base if m not in left_out], changes)
            try:
                bad += _send(client, keys, WARM_UP)
                started, started_cpu = time.perf_counter(), time.process_time()
                bad += _send(client, keys, args.requests)
                cpu[name].append((time.process_time() - started_cpu) * 1e6 / args.requests)
                wall[name].append((time.perf_counter() - started) * 1e6 / args.requests)
            finally:
                override.disable()

    reference = VARIANTS[0][0]
    rows = []
    for name, _, _ in VARIANTS:
        best = min(cpu[name])
        row = [name, f"{statistics.median(cpu[name]):.0f}", f"{best:.0f}"]
        if name == reference:
            row += ["(reference)", "(reference)", "(reference)"]
        else:
            paired = [a - b for a, b in zip(cpu[name], cpu[reference], strict=True)]
            low, _, high = statistics.quantiles(paired, n=4)
            paired_wall = [a - b for a, b in zip(wall[name], wall[reference], strict=True)]
            row += [
                f"{best - min(cpu[reference]):+.0f}",
                f"{statistics.median(paired):+.0f} ({low:+.0f} to {high:+.0f})",
                f"{statistics.median(paired_wall):+.0f}",
            ]
        rows.append([*row, f"{sql[name]:.2f}"])
    print(
        f"In one process, serially: {args.rounds} rounds x {args.requests} requests per variant, "
        f"GET {PATH} with {args.tenants} rotating keys, Prometheus in multiprocess mode."
    )
    print_table(
        [
            "variant",
            "CPU us/request (median)",
            "CPU us (best round)",
            "best vs all off's best",
            "paired CPU us vs all off (25th-75th)",
            "wall us vs all off",
            "SQL/request",
        ],
        rows,
    )
    if bad:
        print(f"{bad} answers were not a 200", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
