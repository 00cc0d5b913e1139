"""``/metrics``: the Prometheus scrape, for Prometheus only.

It is answered by ``metrics.middleware.MetricsMiddleware`` before the tenant middleware, the
session and the URL resolver run: a metrics token is not an API key, so a wrong one is never a
failed key attempt, and a scrape is not counted as a request. Access: ``Authorization: Bearer
<METRICS_TOKEN>`` (compared by digest in constant time) or a client address inside
``METRICS_ALLOWED_NETWORKS`` (loopback by default). Anything else is a 401 (a token was sent and
is wrong) or a 403, in the error shape.

The body: in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) every process's metrics merged from
their files (``metrics.multiprocess``: dead processes compacted first, the merge under the shared
lock), else this process's registry; then the scrape-time gauges (``metrics.collectors``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from metrics import multiprocess
from metrics.collectors import SharedStateCollector
from tenants.http import error_response


@cache
def _token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@cache
def _networks(
    entries: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The allowed networks (``metrics.E001`` has checked each entry at start-up)."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry)


def client_address(request: HttpRequest) -> str:
    """The client's address read as django-ratelimit reads it (``RATELIMIT_IP_META_KEY``: unset for
    ``REMOTE_ADDR``, a callable or its dotted path, or a ``META`` key), without its masking: a
    network check needs the whole address. Its reader is private (``_get_ip``), hence this copy of
    its rule. A header holding a list (``X-Forwarded-For``: ``client, proxy``) is not an address
    and is refused: its first entry is whatever the client sent, and must never open /metrics."""
    key = settings.RATELIMIT_IP_META_KEY
    if not key:
        return request.META.get("REMOTE_ADDR", "")
    if isinstance(key, str) and "." in key:
        key = import_string(key)
    if callable(key):
        return key(request)
    return request.META.get(key, "")


def refusal(request: HttpRequest) -> HttpResponse | None:
    """``None`` when the caller may scrape; else the error answer."""
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        expected = settings.METRICS_TOKEN
        if expected and hmac.compare_digest(_token_digest(token.strip()), _token_digest(expected)):
            return None
        return error_response(401, "invalid_metrics_token", "The metrics token is not valid.")
    try:
        address = ipaddress.ip_address(client_address(request))
    except ValueError:
        address = None
    if address is not None and any(
        address in network for network in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS))
    ):
        return None
    return error_response(
        403,
        "metrics_forbidden",
        "Metrics are served to the metrics token or the allowed networks only.",
    )


def scrape(*, shared_state: bool = True) -> bytes:
    """The exposition; ``shared_state=False`` leaves out the scrape-time gauges (a Celery
    worker's exporter: the web's already serves them, and twice would double every sum)."""
    path = multiprocess.directory()
    if path is None:
        body = generate_latest(REGISTRY)
    else:
        multiprocess.sweep(path)
        merged = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(merged, path=str(path))
        with multiprocess.locked(path, exclusive=False):
            body = generate_latest(merged)
    if not shared_state:
        return body
    shared = CollectorRegistry(auto_describe=False)
    shared.register(SharedStateCollector())
    return body + generate_latest(shared)


def answer(request: HttpRequest, *, shared_state: bool = True) -> HttpResponse:
    if (refused := refusal(request)) is not None:
        return refused
    if request.method not in ("GET", "HEAD"):
        return error_response(405, "method_not_allowed", "Use GET.", headers={"Allow": "GET"})
    response = HttpResponse(scrape(shared_state=shared_state), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
