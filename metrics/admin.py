"""The query monitor's fingerprints in the admin: the costliest first, each with its plan.

Read only: the rows are the monitor's sums (``metrics.queries.monitor``), written by its flushes."""

from __future__ import annotations

import json

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from metrics.models import QueryFingerprint


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
        "plan_shown", "plan_at", "sample_params", "first_seen", "last_seen",
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
