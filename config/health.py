"""``/health/live`` (the process answers) and ``/health/ready`` (its database and cache answer)."""

from __future__ import annotations

import logging
import uuid

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def _database_ok() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)


def _cache_ok() -> bool:
    probe = f"health:probe:{uuid.uuid4().hex}"
    cache.set(probe, "1", 5)
    ok = cache.get(probe) == "1"
    cache.delete(probe)
    return ok


CHECKS = {"database": _database_ok, "cache": _cache_ok}


def _run(check) -> bool:
    try:
        return check()
    except Exception:
        logger.exception("Readiness check %s failed", check.__name__)
        return False


@never_cache
@require_GET
def live(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def ready(request):
    results = {name: "ok" if _run(check) else "down" for name, check in CHECKS.items()}
    down = [name for name, state in results.items() if state == "down"]
    return JsonResponse(
        {"status": "down" if down else "ok", "checks": results, "down": down},
        status=503 if down else 200,
    )
