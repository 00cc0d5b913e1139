"""The metrics app in the admin: the query monitor's fingerprints (the costliest first, each with
its plan and, on its page, the index advisor's advice for it) and per-tenant usage (the busiest tenants, and a page per tenant with its requests,
errors and p95 latency over the last 48 hours as inline SVG charts: no script, no CDN).

Read only: the rows are the monitor's sums and the usage counters, written by their flushes."""

from __future__ import annotations

import json
from datetime import timedelta

from django.contrib import admin
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from metrics.models import QueryFingerprint, TenantUsageHour
from metrics.queries.advisor import Candidate, advise
from metrics.selectors import busiest_tenants, tenant_hours, this_hour
from tenants.admin import AllTenantsAdmin, ReadOnlyAdmin
from tenants.models import Tenant

#: The usage charts: hours shown, and the size of a bar in pixels.
CHART_HOURS, BAR_WIDTH, BAR_GAP, CHART_HEIGHT = 48, 8, 2, 60


@admin.register(QueryFingerprint)
class QueryFingerprintAdmin(admin.ModelAdmin):
    list_display = (
        "fingerprint", "statement", "calls", "total_ms_shown", "mean_ms_shown", "max_ms_shown",
        "slow_calls", "n_plus_one_runs", "last_seen",
    )  # fmt: skip
    list_filter = ("last_seen",)
    search_fields = ("fingerprint", "sql")
    ordering = ("-total_ms",)
    show_full_result_count = False
    fields = (
        "fingerprint", "sql", "calls", "total_ms", "mean_ms_shown", "max_ms", "slow_calls",
        "n_plus_one_runs", "n_plus_one_max", "n_plus_one_at", "routes", "top_tenants",
        "plan_shown", "plan_at", "index_advice", "sample_params", "first_seen", "last_seen",
    )  # fmt: skip
    readonly_fields = fields
    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="SQL")
    def statement(self, row: QueryFingerprint) -> str:
        return row.sql if len(row.sql) <= 120 else f"{row.sql[:117]}..."

    @admin.display(description="Total ms", ordering="total_ms")
    def total_ms_shown(self, row: QueryFingerprint) -> str:
        return f"{row.total_ms:,.1f}"

    @admin.display(description="Mean ms")
    def mean_ms_shown(self, row: QueryFingerprint) -> str:
        return f"{row.mean_ms:,.2f}"

    @admin.display(description="Max ms", ordering="max_ms")
    def max_ms_shown(self, row: QueryFingerprint) -> str:
        return f"{row.max_ms:,.1f}"

    @admin.display(description="Last slow plan")
    def plan_shown(self, row: QueryFingerprint) -> str:
        if row.plan is None:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(row.plan, indent=2))

    @admin.display(description="Index advice")
    def index_advice(self, row: QueryFingerprint) -> str:
        """The advisor on this statement alone (``top=0``: not pg_stat_statements' others), read
        only and in one session, as ``manage.py recommend_indexes --query`` would run it."""
        if not row.sql.startswith("SELECT"):
            return "Only SELECT statements are advised on."
        report = advise(top=0, extra_sql=[Candidate(row.sql, row.calls, row.total_ms, "monitor")])
        notices = format_html_join("", "<p>{}</p>", ((notice,) for notice in report.notices))
        if not report.proposals:
            reasons = ", ".join(skipped["reason"] for skipped in report.skipped) or "none given"
            return format_html("{}<p>No index proposal ({}).</p>", notices, reasons)
        proposals = format_html_join(
            "",
            "<p><code>{}</code><br>{}; plan cost {} &rarr; {}</p>",
            (
                (
                    proposal.statement,
                    "verified by HypoPG" if proposal.verified else proposal.unverified_reason,
                    f"{proposal.before_cost:,.2f}" if proposal.before_cost is not None else "-",
                    f"{proposal.after_cost:,.2f}" if proposal.after_cost is not None else "-",
                )
                for proposal in report.proposals
            ),
        )
        return format_html("{}{}", notices, proposals)


def _chart(values: list[float], stacked: list[float] | None = None) -> list[dict]:
    """Bars of ``values`` (and ``stacked`` on top, e.g. errors over requests), heights relative
    to the chart's highest bar."""
    stacked = stacked or [0] * len(values)
    peak = max([a + b for a, b in zip(values, stacked, strict=True)] or [0]) or 1
    bars = []
    for i, (value, extra) in enumerate(zip(values, stacked, strict=True)):
        low = round(value * CHART_HEIGHT / peak)
        high = round(extra * CHART_HEIGHT / peak)
        bars.append(
            {
                "x": i * (BAR_WIDTH + BAR_GAP),
                "y": CHART_HEIGHT - low,
                "h": low,
                "top_y": CHART_HEIGHT - low - high,
                "top_h": high,
            }
        )
    return bars


@admin.register(TenantUsageHour)
class TenantUsageHourAdmin(AllTenantsAdmin, ReadOnlyAdmin):
    """Hourly usage rows (read only), the busiest tenants, and a page per tenant."""

    list_display = ("tenant", "hour", "requests", "errors_4xx", "errors_5xx", "rejected", "jobs")
    list_filter = ("hour",)
    list_select_related = ("tenant",)
    ordering = ("-hour", "-requests")
    show_full_result_count = False
    change_list_template = "admin/metrics/tenantusagehour/change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("busiest/", view(self.busiest_view), name="metrics_usage_busiest"),
            path("tenant/<int:tenant_id>/", view(self.tenant_view), name="metrics_usage_tenant"),
            *super().get_urls(),
        ]

    def busiest_view(self, request: HttpRequest):
        if not self.has_view_permission(request):
            raise Http404
        since = this_hour() - timedelta(hours=23)
        rows = busiest_tenants(since=since, limit=50)
        context = {
            **self.admin_site.each_context(request),
            "title": "Busiest tenants, last 24 hours",
            "rows": [
                (
                    row,
                    reverse("admin:metrics_usage_tenant", args=[row.tenant_id]),
                    row.figures.latency_percentile(0.95),
                )
                for row in rows
            ],
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/metrics/usage_busiest.html", context)

    def tenant_view(self, request: HttpRequest, tenant_id: int):
        if not self.has_view_permission(request):
            raise Http404
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is None:
            raise Http404
        hours = tenant_hours(tenant.pk, hours=CHART_HOURS)
        errors = [row.errors for row in hours]
        p95 = [row.latency_percentile(0.95) or 0.0 for row in hours]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Usage of {tenant.slug}, last {CHART_HOURS} hours",
            "tenant": tenant,
            "hours": hours,
            "width": CHART_HOURS * (BAR_WIDTH + BAR_GAP),
            "height": CHART_HEIGHT,
            "bar_width": BAR_WIDTH,
            "requests_chart": zip(
                hours,
                _chart([r.requests - e for r, e in zip(hours, errors, strict=True)], errors),
                strict=True,
            ),
            "latency_chart": zip(hours, _chart(p95), p95, strict=True),
            "totals": {
                "requests": sum(row.requests for row in hours),
                "errors": sum(errors),
                "jobs": sum(row.jobs for row in hours),
                "peak_p95": max(p95 or [0.0]),
            },
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/metrics/usage_tenant.html", context)
