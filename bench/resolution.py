"""Cost of resolving a request's API key, tenant and plan: warm cache vs. cold (SQL) lookups.

Runs in-process through Django's test client (WSGI handler, the full middleware chain) against the
database and cache the environment names, so run it on real services:

    .venv/bin/python -m scripts.services run -- .venv/bin/python bench/resolution.py [--requests 2000]

Prints a table: per-request latency (mean, p50, p95) and SQL queries per request for GET
/api/v1/tenant/ with the resolution cache warm, and with it emptied before every request.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from tenants import services  # noqa: E402
from tenants.models import Plan, Tenant  # noqa: E402


def _setup() -> str:
    call_command("migrate", verbosity=0)
    tenant = Tenant.objects.filter(slug="bench-resolution").first() or services.tenant_create(
        slug="bench-resolution", name="Bench", plan=Plan.objects.get(code="pro")
    )
    return services.api_key_create(tenant=tenant, name="bench").secret


def _measure(client: Client, secret: str, requests: int, cold: bool) -> dict[str, float]:
    timings, queries = [], []
    for _ in range(requests):
        if cold:
            cache.clear()
        connection.queries_log.clear()  # a bounded deque: once full, captures would read as empty
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(
                "/api/v1/tenant/", HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_HOST="localhost"
            )
            timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content
        queries.append(len(captured.captured_queries))
    timings.sort()
    return {
        "mean": statistics.fmean(timings),
        "p50": timings[len(timings) // 2],
        "p95": timings[int(len(timings) * 0.95)],
        "queries": statistics.fmean(queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    secret = _setup()
    client = Client()
    _measure(client, secret, 50, cold=False)  # warm up imports, connections, cache
    rows = {
        "warm cache": _measure(client, secret, args.requests, cold=False),
        "cold (cache emptied)": _measure(client, secret, args.requests, cold=True),
    }
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"database: {connection.vendor}; cache: {backend}; requests: {args.requests}")
    print(
        f"{'GET /api/v1/tenant/':<24}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}{'SQL/request':>13}"
    )
    for label, row in rows.items():
        print(
            f"{label:<24}{row['mean']:>10.2f}{row['p50']:>10.2f}{row['p95']:>10.2f}{row['queries']:>13.1f}"
        )


if __name__ == "__main__":
    main()
