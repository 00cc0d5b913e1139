"""Cost of GET /api/v1/tenant/ with its answer cached, recomputed, and with no cache at all.

Runs in-process through Django's test client (WSGI handler, the full middleware chain) against the
database and cache the environment names, so run it on real services:

    .venv/bin/python -m scripts.services run -- .venv/bin/python bench/cache.py [--requests 2000]

Prints a table: per-request latency (mean, p50, p95) and SQL queries per request for GET
/api/v1/tenant/ with its cached answer warm; with the tenant's generation bumped before every
request (the answer is recomputed, the key/tenant/plan resolution stays cached); with the whole
cache emptied before every request (resolution goes to SQL too, and so does the once-a-minute
``last_used_at`` write); and with ``ENABLE_CACHING=false`` (a DummyCache).
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
from django.test import Client, override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from tenants import services  # noqa: E402
from tenants.cache import tenant_cache_invalidate  # noqa: E402
from tenants.models import Plan, Tenant  # noqa: E402

#: The bench tenant's overrides: no rate limit, no monthly cap (API calls are still counted).
UNLIMITED_REQUESTS = {"requests_per_minute": None, "api_calls_per_month": None}

DUMMY_CACHE = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}


def _setup() -> tuple[Tenant, str]:
    call_command("migrate", verbosity=0)
    tenant = Tenant.objects.filter(slug="bench-cache").first() or services.tenant_create(
        slug="bench-cache", name="Bench", plan=Plan.objects.get(code="pro")
    )
    # This bench measures caching, not limits (bench/ratelimit.py does): never refuse a request.
    tenant.limit_overrides = UNLIMITED_REQUESTS
    tenant.save(update_fields=["limit_overrides", "updated_at"])
    return tenant, services.api_key_create(tenant=tenant, name="bench").secret


def _measure(client: Client, secret: str, requests: int, before=lambda: None) -> dict[str, float]:
    timings, queries = [], []
    for _ in range(requests):
        before()
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
    tenant, secret = _setup()
    client = Client()
    _measure(client, secret, 50)  # warm up imports, connections, cache
    rows = {
        "cached answer (warm)": _measure(client, secret, args.requests),
        "answer uncached (bumped)": _measure(
            client, secret, args.requests, before=lambda: tenant_cache_invalidate(tenant)
        ),
        "cache emptied": _measure(client, secret, args.requests, before=cache.clear),
    }
    with override_settings(CACHES=DUMMY_CACHE):
        rows["ENABLE_CACHING=false"] = _measure(client, secret, args.requests)
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"database: {connection.vendor}; cache: {backend}; requests: {args.requests}")
    print(
        f"{'GET /api/v1/tenant/':<28}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}{'SQL/request':>13}"
    )
    for label, row in rows.items():
        print(
            f"{label:<28}{row['mean']:>10.2f}{row['p50']:>10.2f}{row['p95']:>10.2f}{row['queries']:>13.1f}"
        )


if __name__ == "__main__":
    main()
