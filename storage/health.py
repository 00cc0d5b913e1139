"""``/api/storage/health`` (the seed's path): write, read and delete a probe object, timed.

The probe goes through the ``storage`` breaker like every storage call, so a storage that is down
opens it and the files API fails fast. Anyone gets ``ok``/``down`` (503 with ``Retry-After``
when down); staff also get the storage's name, each step's latency and the breaker. One probe
result serves every request for ``STORAGE_HEALTH_CACHE_SECONDS`` in a process, so the endpoint
cannot be used to make the storage write on every request.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.base import ContentFile
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from degradation.breakers import CircuitOpen, breaker
from storage.backends import BREAKER, backend_named, guarded
from storage.exceptions import StorageUnavailable

PROBE_PREFIX = "health/"


@dataclass
class ProbeResult:
    storage: str
    ok: bool
    latency_ms: dict[str, float] = field(default_factory=dict)
    error: str = ""
    retry_after: int = 0
    at: float = field(default_factory=time.monotonic)


_last: ProbeResult | None = None
_lock = threading.Lock()


def probe() -> ProbeResult:
    """Write, read back and delete a small object in the files storage, each step timed."""
    name = settings.FILES_STORAGE
    result = ProbeResult(storage=name, ok=False)
    payload = uuid.uuid4().hex.encode()
    try:
        backend = backend_named(name)
        started = time.perf_counter()
        key = guarded(backend.save, f"{PROBE_PREFIX}probe-{uuid.uuid4().hex}", ContentFile(payload))
        result.latency_ms["write"] = round((time.perf_counter() - started) * 1000, 2)
        started = time.perf_counter()
        with guarded(backend.open, key, "rb") as handle:
            read = handle.read()
        result.latency_ms["read"] = round((time.perf_counter() - started) * 1000, 2)
        started = time.perf_counter()
        guarded(backend.delete, key)
        result.latency_ms["delete"] = round((time.perf_counter() - started) * 1000, 2)
        result.ok = read == payload
        if not result.ok:
            result.error = "the probe object read back differs from what was written"
    except CircuitOpen as error:
        result.error, result.retry_after = str(error), error.wait
    except StorageUnavailable as error:
        cause = error.__cause__
        result.error = f"{type(cause).__name__}: {cause}" if cause else str(error.detail)
        result.retry_after = error.wait
    return result


def recent_probe() -> ProbeResult:
    """The last probe if younger than ``STORAGE_HEALTH_CACHE_SECONDS``, else a new one."""
    global _last
    with _lock:
        if _last is None or time.monotonic() - _last.at > settings.STORAGE_HEALTH_CACHE_SECONDS:
            _last = probe()
        return _last


class StorageHealthView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses=dict)
    def get(self, request):
        result = recent_probe()
        body = {"status": "ok" if result.ok else "down"}
        if request.user and request.user.is_staff:
            body.update(
                storage=result.storage,
                latency_ms=result.latency_ms,
                error=result.error,
                breaker=breaker(BREAKER).describe(),
            )
        response = Response(body, status=200 if result.ok else 503)
        if not result.ok:
            response["Retry-After"] = str(max(1, result.retry_after or 1))
        return response
