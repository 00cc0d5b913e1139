"""Request metrics by plan and error code, and the ``/metrics`` answer (``metrics.exporter``).

Placed first in ``MIDDLEWARE`` (after ``SecurityMiddleware``), before django-prometheus's own pair,
so a scrape is neither authenticated as a tenant nor counted as a request.

Cost per request: a clock read, then after the answer one counter and one histogram update (each
an add to this process's memory-mapped file under prometheus_client's lock: no system call, no
round trip), plus a ``json.loads`` of the body for error answers only (to count their code). The
plan comes from the request's resolved tenant; when its plan is not loaded the label is
``unknown`` (never a query to find it).
"""

from __future__ import annotations

import json
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from metrics import exporter, instruments
from tenants.models import Tenant

_PLAN_FIELD = Tenant._meta.get_field("plan")


def plan_label(request: HttpRequest) -> str:
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        return instruments.NO_PLAN
    if not _PLAN_FIELD.is_cached(tenant):
        return "unknown"
    return tenant.plan.code


def route_label(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return (match.view_name if match is not None else None) or "unresolved"


def error_code(response: HttpResponse) -> str | None:
    """The error code of an answer in the error shape, else ``None`` (error answers only)."""
    if response.status_code < 400 or getattr(response, "streaming", False):
        return None
    if not response.get("Content-Type", "").startswith("application/json"):
        return None
    try:
        code = json.loads(response.content)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) and len(code) <= 64 else None


class MetricsMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == settings.METRICS_PATH:
            return exporter.answer(request)
        started = time.perf_counter()
        response = self.get_response(request)
        plan = plan_label(request)
        instruments.requests.labels(
            plan,
            route_label(request),
            instruments.method_label(request.method),
            instruments.status_class(response.status_code),
        ).inc()
        instruments.latency.labels(plan).observe(time.perf_counter() - started)
        if (code := error_code(response)) is not None:
            instruments.errors.labels(code, plan).inc()
        return response
