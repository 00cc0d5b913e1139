"""Request metrics by plan and error code, the query monitor's unit of a request, and the
``/metrics`` answer (``metrics.exporter``).

Placed first in ``MIDDLEWARE`` (after ``SecurityMiddleware``), before django-prometheus's own pair,
so a scrape is neither authenticated as a tenant nor counted as a request, and every statement of
a request (its tenant's resolution too) is seen by the query monitor (``metrics.queries.monitor``:
its cost is stated there).

Cost per request: a clock read, then after the answer one counter and one histogram update (each
an add to this process's memory-mapped file under prometheus_client's lock: no system call, no
round trip), and for a tenant's request a dict update in the per-tenant usage table
(``metrics.usage``: flushed by a thread, no round trip). The plan comes from the request's
resolved tenant; when its plan is not loaded the label is ``unknown`` (never a query to find it).
"""

from __future__ import annotations

import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from metrics import exporter, instruments, usage
from metrics.queries.monitor import monitored
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


def _length(raw: str | None) -> int:
    return int(raw) if raw and raw.isascii() and raw.isdigit() else 0


class MetricsMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == settings.METRICS_PATH:
            return exporter.answer(request)
        started = time.perf_counter()
        with monitored() as unit:
            response = self.get_response(request)
            unit.label = route = route_label(request)
        plan = plan_label(request)
        instruments.requests.labels(
            plan,
            route,
            instruments.method_label(request.method),
            instruments.status_class(response.status_code),
        ).inc()
        seconds = time.perf_counter() - started
        instruments.latency.labels(plan).observe(seconds)
        # error answers carry their code (tenants.http.ErrorAnswer.mark)
        if (code := getattr(response, "error_code", None)) is not None:
            instruments.errors.labels(code, plan).inc()
        tenant = getattr(request, "tenant", None)
        if tenant is not None and settings.TENANT_METRICS_ENABLED:
            usage.record_request(
                tenant.pk,
                status=response.status_code,
                ms=seconds * 1000,
                bytes_in=_length(request.META.get("CONTENT_LENGTH")),
                bytes_out=_length(response.get("Content-Length"))
                if getattr(response, "streaming", False)
                else len(response.content),
            )
        return response
