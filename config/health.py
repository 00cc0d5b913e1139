"""``/health/live`` (the process answers) and ``/health/ready`` (its database and cache answer).

A check answers "ok", "degraded" (it works on a fallback: HTTP 200, overall status "degraded") or
"down" (HTTP 503). The cache is degraded while Redis is down and its local fallback serves it.
Files storage is degraded while its breaker is open (the files API answers 503, the rest of the
API serves: taking the instance out of a load balancer would not help, every instance shares the
storage); it costs one read of the breaker's state, no storage call (``/api/storage/health``
probes the storage itself).
"""

from __future__ import annotations

import logging
import uuid

from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from degradation.breakers import OPEN, breaker
from degradation.cache import cache_status
from tenants.cache import global_cache

logger = logging.getLogger(__name__)


def _database_state() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return "ok" if cursor.fetchone() == (1,) else "down"


def _cache_state() -> str:
    if isinstance(caches["default"], DummyCache):
        return "ok"  # ENABLE_CACHING=false: there is no cache to be down
    probe, store = f"health:probe:{uuid.uuid4().hex}", global_cache()
    store.set(probe, "1", 5)
    ok = store.get(probe) == "1"
    store.delete(probe)
    return cache_status() if ok else "down"


def _storage_state() -> str:
    return "degraded" if breaker("storage").snapshot().state == OPEN else "ok"


CHECKS = {"database": _database_state, "cache": _cache_state, "storage": _storage_state}


def _run(check) -> str:
    try:
        return check()
    except Exception:
        logger.exception("Readiness check %s failed", check.__name__)
        return "down"


@never_cache
@require_GET
def live(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def ready(request):
    results = {name: _run(check) for name, check in CHECKS.items()}
    down = [name for name, state in results.items() if state == "down"]
    status = "down" if down else "degraded" if "degraded" in results.values() else "ok"
    return JsonResponse(
        {"status": status, "checks": results, "down": down}, status=503 if down else 200
    )
