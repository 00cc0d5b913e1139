"""Cost of GET /api/v1/tenant/ with its answer cached, recomputed, and with no cache at all.

Runs in-process through Django's test client (WSGI handler, the full middleware chain) against the
database and cache the environment names, so run it on real services:

    .venv/bin/python -m scripts.services run -- .venv/bin/python bench/cache.py [--requests 2000]

Prints a table: per-request latency (mean, p50, p95), SQL queries and Redis round trips per
request for GET /api/v1/tenant/ with its cached answer warm; with the tenant's generation bumped
before every request (the answer is recomputed, the key/tenant/plan resolution stays cached); with
the whole cache emptied before every request (resolution goes to SQL too, and so does the
once-a-minute ``last_used_at`` write); and with ``ENABLE_CACHING=false`` (a DummyCache).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import caches  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from inprocess import measure, print_table  # noqa: E402

from tenants import resolution, services  # noqa: E402
from tenants.cache import clear_local_answers, tenant_cache_invalidate  # noqa: E402
from tenants.mirror import global_mirror  # noqa: E402
from tenants.models import Plan, Tenant  # noqa: E402

#: The bench tenant's overrides: no rate limit, no monthly cap (API calls are still counted).
UNLIMITED_REQUESTS = {"requests_per_minute": None, "api_calls_per_month": None}

_DUMMY = {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
DUMMY_CACHE = {"default": _DUMMY, "global": _DUMMY, "flags": _DUMMY}


def _empty_caches() -> None:
    """A cold cache: the shared aliases emptied, and this process's copies and hints forgotten."""
    caches["default"].clear()
    caches["global"].clear()
    global_mirror.clear()
    clear_local_answers()
    resolution.clear_process_memory()


def _setup() -> tuple[Tenant, str]:
    call_command("migrate", verbosity=0)
    tenant = Tenant.objects.filter(slug="bench-cache").first() or services.tenant_create(
        slug="bench-cache", name="Bench", plan=Plan.objects.get(code="pro")
    )
    # This bench measures caching, not limits (bench/ratelimit.py does): never refuse a request.
    tenant.limit_overrides = UNLIMITED_REQUESTS
    tenant.save(update_fields=["limit_overrides", "updated_at"])
    return tenant, services.api_key_create(tenant=tenant, name="bench").secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    tenant, secret = _setup()
    client = Client()
    measure(client, secret, 50)  # warm up imports, connections, cache
    rows = {
        "cached answer (warm)": measure(client, secret, args.requests),
        "answer uncached (bumped)": measure(
            client, secret, args.requests, before=lambda: tenant_cache_invalidate(tenant)
        ),
        "cache emptied": measure(client, secret, args.requests, before=_empty_caches),
    }
    # ENABLE_CACHING=false keeps the rate-limit counters' own alias (config/settings.py).
    no_cache = {**DUMMY_CACHE, "ratelimit": settings.CACHES["ratelimit"]}
    with override_settings(CACHES=no_cache):
        rows["ENABLE_CACHING=false"] = measure(client, secret, args.requests)
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"database: {connection.vendor}; cache: {backend}; requests: {args.requests}")
    print_table("GET /api/v1/tenant/", rows)


if __name__ == "__main__":
    main()
