"""What the rate limiter and the API-call count add to a warm request.

Runs in-process through Django's test client (WSGI handler, the full middleware chain) against the
database and cache the environment names, so run it on real services:

    .venv/bin/python -m scripts.services run -- .venv/bin/python bench/ratelimit.py [--requests 3000]

GET /api/v1/tenant/ with its answer cached (so the request itself costs no SQL), under limits far
above what the bench sends, so every answer is a 200 (asserted). Scenarios, run in interleaved
rounds so that drift on a shared machine spreads over all of them:

- ``throttle bypassed``: ``LimitsMiddleware`` admits without counting (its headers and state
  still run); the floor the others are compared with;
- ``API-call count only``: a tenant with no per-minute limit: the monthly API-call ``INCR``;
- ``tenant limit + API calls``: the tenant's per-minute budget and the monthly count;
- ``tenant + key limits + API calls``: a key with its own per-minute limit as well.

Prints per scenario: latency (mean, p50, p95), SQL queries and Redis round trips per request.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from inprocess import measure, merge, print_table  # noqa: E402

from tenants import services  # noqa: E402
from tenants.limits import middleware as limits_middleware  # noqa: E402
from tenants.models import Plan, Tenant  # noqa: E402

#: Far above what the bench sends in a minute or a month: counted, never refused.
HIGH = 10**12


def _tenant(slug: str, requests_per_minute: int | None) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first() or services.tenant_create(
        slug=slug, name=slug, plan=Plan.objects.get(code="pro")
    )
    tenant.limit_overrides = {
        "requests_per_minute": requests_per_minute,
        "api_calls_per_month": HIGH,
        "max_api_keys": None,  # every run issues new keys: it can run again on one database
    }
    tenant.save(update_fields=["limit_overrides", "updated_at"])  # invalidates its cached entry
    return tenant


def _bypassed():
    return mock.patch.object(limits_middleware, "_admit", lambda *args: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per scenario")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    limited = _tenant("bench-ratelimit", HIGH)
    unlimited = _tenant("bench-ratelimit-api-calls", None)
    plain_key = services.api_key_create(tenant=limited, name="bench").secret
    scenarios = {
        "throttle bypassed": (plain_key, _bypassed),
        "API-call count only": (
            services.api_key_create(tenant=unlimited, name="bench").secret,
            nullcontext,
        ),
        "tenant limit + API calls": (plain_key, nullcontext),
        "tenant + key limits + API calls": (
            services.api_key_create(
                tenant=limited, name="bench-own-limit", requests_per_minute=HIGH
            ).secret,
            nullcontext,
        ),
    }
    client = Client()
    rows: dict[str, dict[str, list[float]]] = {label: {} for label in scenarios}
    per_round = max(1, args.requests // args.rounds)
    for secret, context in scenarios.values():  # warm up: imports, connections, cached answers
        with context():
            measure(client, secret, 50)
    for _ in range(args.rounds):
        for label, (secret, context) in scenarios.items():
            with context():
                merge(rows[label], measure(client, secret, per_round))
    counters = settings.CACHES["ratelimit"]["BACKEND"].rsplit(".", 1)[-1]
    print(
        f"database: {connection.vendor}; rate-limit counters: {counters}; "
        f"requests per scenario: {per_round * args.rounds} in {args.rounds} interleaved rounds"
    )
    print_table("GET /api/v1/tenant/ (warm)", rows)


if __name__ == "__main__":
    main()
