"""The metrics app's API: the query optimizer's ops API on the seed's paths, and the calling
tenant's own usage metrics (``/api/v1/usage/metrics``), the busiest tenants for staff
(``/api/ops/tenants/top``).

* ``/api/query-optimizer/metrics`` (staff): the costliest fingerprints of the query monitor, a
  bounded top list (``?limit=`` 1 to 200, default 50, by total time), ``?slowOnly=true`` for those
  that ran over ``SLOW_QUERY_MS``; ``?plans=true`` adds each one's last slow plan.
* ``/api/query-optimizer/health``: ``ok`` (the monitor is on) or ``degraded`` (it is off) for
  anyone; staff also get its settings, the fingerprints known and which PostgreSQL extensions
  the index advisor can use.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from metrics.models import QueryFingerprint, TenantUsageDay, TenantUsageHour
from metrics.queries.monitor import store
from metrics.selectors import ORDERINGS, busiest_tenants, this_hour
from tenants.params import bounded_int, flag

MAX_LIMIT = 200
ADVISOR_EXTENSIONS = ("pg_stat_statements", "hypopg")


class FingerprintSerializer(serializers.ModelSerializer):
    mean_ms = serializers.FloatField()

    class Meta:
        model = QueryFingerprint
        fields = [
            "fingerprint", "sql", "calls", "total_ms", "mean_ms", "max_ms", "slow_calls",
            "n_plus_one_runs", "n_plus_one_max", "n_plus_one_at", "routes", "top_tenants",
            "first_seen", "last_seen",
        ]  # fmt: skip


class FingerprintWithPlanSerializer(FingerprintSerializer):
    class Meta(FingerprintSerializer.Meta):
        fields = [*FingerprintSerializer.Meta.fields, "plan", "plan_at"]


class QueryMetricsView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        parameters=[
            OpenApiParameter("slowOnly", OpenApiTypes.BOOL, description="Only slow ones."),
            OpenApiParameter("plans", OpenApiTypes.BOOL, description="Add the last slow plan."),
            OpenApiParameter("limit", OpenApiTypes.INT, description=f"1 to {MAX_LIMIT}."),
        ],
        responses=FingerprintWithPlanSerializer(many=True),
    )
    def get(self, request):
        limit = bounded_int(request.query_params, "limit", default=50, top=MAX_LIMIT)
        rows = QueryFingerprint.objects.order_by("-total_ms")
        if flag(request.query_params, "slowOnly"):
            rows = rows.filter(max_ms__gte=settings.SLOW_QUERY_MS)
        serializer = (
            FingerprintWithPlanSerializer
            if flag(request.query_params, "plans")
            else FingerprintSerializer
        )
        return Response(
            {
                "slow_query_ms": settings.SLOW_QUERY_MS,
                "fingerprints": serializer(rows[:limit], many=True).data,
            }
        )


def _extensions() -> dict[str, bool]:
    if connection.vendor != "postgresql":
        return dict.fromkeys(ADVISOR_EXTENSIONS, False)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extname FROM pg_extension WHERE extname = ANY(%s)", [list(ADVISOR_EXTENSIONS)]
        )
        present = {name for (name,) in cursor.fetchall()}
    return {name: name in present for name in ADVISOR_EXTENSIONS}


class QueryHealthView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses=dict)
    def get(self, request):
        body = {"status": "ok" if settings.QUERY_MONITOR_ENABLED else "degraded"}
        if request.user and request.user.is_staff:
            body.update(
                monitor_enabled=settings.QUERY_MONITOR_ENABLED,
                sample_rate=settings.QUERY_MONITOR_SAMPLE_RATE,
                slow_query_ms=settings.SLOW_QUERY_MS,
                n_plus_one_threshold=settings.QUERY_MONITOR_N_PLUS_ONE,
                fingerprints=QueryFingerprint.objects.count(),
                last_flush_of_this_process=store.last_flush,
                extensions=_extensions(),
            )
        return Response(body)


class UsagePeriodSerializer(serializers.Serializer):
    """One hour or day of the calling tenant's usage (``metrics.usage``)."""

    start = serializers.DateTimeField(help_text="Start of the hour, or of the UTC day.")
    requests = serializers.IntegerField()
    errors_4xx = serializers.IntegerField()
    errors_5xx = serializers.IntegerField()
    rejected = serializers.IntegerField(help_text="429 answers.")
    bytes_in = serializers.IntegerField()
    bytes_out = serializers.IntegerField()
    latency_mean_ms = serializers.FloatField(allow_null=True)
    latency_p50_ms = serializers.FloatField(allow_null=True)
    latency_p95_ms = serializers.FloatField(allow_null=True)
    latency_p99_ms = serializers.FloatField(allow_null=True)
    jobs = serializers.IntegerField(help_text="Jobs run.")
    cache_hits = serializers.IntegerField()
    cache_misses = serializers.IntegerField()
    cache_hit_rate = serializers.FloatField(allow_null=True, help_text="0 to 1.")

    def to_representation(self, row):
        start = (
            row.hour
            if isinstance(row, TenantUsageHour)
            else datetime(row.day.year, row.day.month, row.day.day, tzinfo=UTC)
        )
        return super().to_representation(
            {
                "start": start,
                **{name: getattr(row, name) for name in (
                    "requests", "errors_4xx", "errors_5xx", "rejected", "bytes_in",
                    "bytes_out", "jobs", "cache_hits", "cache_misses", "cache_hit_rate",
                    "latency_mean_ms",
                )},
                "latency_p50_ms": row.latency_percentile(0.5),
                "latency_p95_ms": row.latency_percentile(0.95),
                "latency_p99_ms": row.latency_percentile(0.99),
            }
        )  # fmt: skip


@extend_schema_view(
    get=extend_schema(
        parameters=[
            OpenApiParameter(
                "granularity", str, enum=["hour", "day"], description="Hourly (default) or daily."
            )
        ]
    )
)
class UsageMetricsView(ListAPIView):
    """The calling tenant's own usage: requests, errors, bytes, latency percentiles and jobs per
    hour (kept ``TENANT_METRICS_HOURLY_DAYS``) or per day, newest first, paginated. Counts reach
    it within ``TENANT_METRICS_FLUSH_SECONDS``."""

    serializer_class = UsagePeriodSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return TenantUsageHour.all_tenants.none()
        granularity = self.request.query_params.get("granularity", "hour")
        if granularity not in ("hour", "day"):
            raise ValidationError({"granularity": ["hour or day."]})
        model = TenantUsageHour if granularity == "hour" else TenantUsageDay
        return model.objects.all()


class TenantTopSerializer(serializers.Serializer):
    tenant_id = serializers.IntegerField()
    slug = serializers.CharField()
    requests = serializers.IntegerField(source="figures.requests")
    errors = serializers.IntegerField(source="figures.errors")
    rejected = serializers.IntegerField(source="figures.rejected")
    bytes_in = serializers.IntegerField(source="figures.bytes_in")
    bytes_out = serializers.IntegerField(source="figures.bytes_out")
    jobs = serializers.IntegerField(source="figures.jobs")
    latency_p95_ms = serializers.SerializerMethodField()

    def get_latency_p95_ms(self, row) -> float | None:
        return row.figures.latency_percentile(0.95)


class TenantsTopView(APIView):
    """The busiest tenants over the last ``hours`` (1-168, default 24) by ``by`` (requests,
    errors, bytes_out or latency: total time), ``limit`` 1-100 (default 10). Staff only."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        parameters=[
            OpenApiParameter("hours", OpenApiTypes.INT, description="1 to 168."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 100."),
            OpenApiParameter("by", str, enum=sorted(ORDERINGS)),
        ],
        responses=TenantTopSerializer(many=True),
    )
    def get(self, request):
        hours = bounded_int(request.query_params, "hours", default=24, top=168)
        limit = bounded_int(request.query_params, "limit", default=10, top=100)
        by = request.query_params.get("by", "requests")
        if by not in ORDERINGS:
            raise ValidationError({"by": [f"One of {', '.join(sorted(ORDERINGS))}."]})
        rows = busiest_tenants(since=this_hour() - timedelta(hours=hours - 1), limit=limit, by=by)
        return Response(
            {"hours": hours, "by": by, "tenants": TenantTopSerializer(rows, many=True).data}
        )
