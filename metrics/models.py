"""What the metrics app keeps in the database: the query monitor's fingerprints."""

from __future__ import annotations

from django.db import models

from tenants.scoping import TenantScopedModel


class QueryFingerprint(models.Model):
    """One SQL shape (``metrics.queries.fingerprint``) and what the monitored requests and jobs
    saw of it, summed over every process (``metrics.queries.monitor`` flushes into it).

    Global by nature (a statement's shape belongs to the code, not to a tenant); ``top_tenants``
    names the tenants that spent most time in it, by id, for staff only. ``plan`` is the last slow
    run's plan with its literals masked, and ``sample_params`` stays empty unless
    ``QUERY_MONITOR_STORE_PARAMS`` is on: parameters may hold personal data."""

    fingerprint = models.CharField(max_length=16, unique=True)
    sql = models.TextField(help_text="The statement with its literals as ?.")
    calls = models.PositiveBigIntegerField(default=0)
    total_ms = models.FloatField(default=0.0)
    max_ms = models.FloatField(default=0.0)
    slow_calls = models.PositiveBigIntegerField(default=0)
    n_plus_one_runs = models.PositiveBigIntegerField(
        default=0, help_text="Requests or jobs that ran it QUERY_MONITOR_N_PLUS_ONE times or more."
    )
    n_plus_one_max = models.PositiveIntegerField(default=0, help_text="Most runs in one of them.")
    n_plus_one_at = models.CharField(max_length=500, blank=True, help_text="Our line that ran it.")
    routes = models.JSONField(default=dict, help_text="Calls per route or job kind.")
    top_tenants = models.JSONField(default=dict, help_text="Milliseconds of the top tenants.")
    plan = models.JSONField(null=True, blank=True)
    plan_at = models.DateTimeField(null=True, blank=True)
    sample_params = models.JSONField(null=True, blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-total_ms"]
        indexes = [models.Index(fields=["-total_ms"], name="metrics_fp_total_idx")]

    def __str__(self) -> str:
        return f"{self.fingerprint}: {self.sql[:80]}"

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else 0.0


#: Upper bounds (ms) of the latency buckets of the per-tenant rows; the last bucket is the rest.
LATENCY_BOUNDS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500)
LATENCY_FIELDS = (*(f"latency_le_{bound}ms" for bound in LATENCY_BOUNDS_MS), "latency_over_2500ms")
#: The counters of a per-tenant row, summed by the flushes and the daily rollup.
USAGE_FIELDS = (
    "requests", "errors_4xx", "errors_5xx", "rejected", "bytes_in", "bytes_out",
    "latency_ms_total", *LATENCY_FIELDS, "jobs", "cache_hits", "cache_misses",
)  # fmt: skip


class TenantUsageFigures(TenantScopedModel):
    """A tenant's usage in a period, counted per process and added here (``metrics.usage``)."""

    requests = models.PositiveBigIntegerField(default=0)
    errors_4xx = models.PositiveBigIntegerField(default=0)
    errors_5xx = models.PositiveBigIntegerField(default=0)
    rejected = models.PositiveBigIntegerField(default=0, help_text="429 answers.")
    bytes_in = models.PositiveBigIntegerField(default=0)
    bytes_out = models.PositiveBigIntegerField(default=0)
    latency_ms_total = models.FloatField(default=0.0)
    for _field in LATENCY_FIELDS:
        vars()[_field] = models.PositiveBigIntegerField(default=0)
    del _field
    jobs = models.PositiveBigIntegerField(default=0, help_text="Jobs run.")
    cache_hits = models.PositiveBigIntegerField(default=0, help_text="Tenant cache hits.")
    cache_misses = models.PositiveBigIntegerField(default=0, help_text="Tenant cache misses.")

    class Meta(TenantScopedModel.Meta):
        abstract = True

    @property
    def errors(self) -> int:
        return self.errors_4xx + self.errors_5xx

    @property
    def latency_mean_ms(self) -> float | None:
        return self.latency_ms_total / self.requests if self.requests else None

    @property
    def cache_hit_rate(self) -> float | None:
        looked_up = self.cache_hits + self.cache_misses
        return self.cache_hits / looked_up if looked_up else None

    def latency_percentile(self, share: float) -> float | None:
        """The latency under which ``share`` of the requests were answered (ms, interpolated
        within its bucket; the last bucket answers its lower bound)."""
        counts = [getattr(self, name) for name in LATENCY_FIELDS]
        total = sum(counts)
        if not total:
            return None
        rank, seen, lower = share * total, 0, 0.0
        for bound, count in zip((*LATENCY_BOUNDS_MS, None), counts, strict=True):
            if count and seen + count >= rank:
                if bound is None:
                    return float(lower)
                return lower + (bound - lower) * (rank - seen) / count
            seen += count
            lower = float(bound) if bound is not None else lower
        return float(lower)


class TenantUsageHour(TenantUsageFigures):
    hour = models.DateTimeField(help_text="Start of the hour (UTC).")

    class Meta(TenantUsageFigures.Meta):
        ordering = ["-hour"]
        constraints = [
            *TenantScopedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "hour"], name="metrics_usage_hour_uniq"),
        ]
        indexes = [models.Index(fields=["hour"], name="metrics_usage_hour_idx")]


class TenantUsageDay(TenantUsageFigures):
    day = models.DateField(help_text="UTC day.")

    class Meta(TenantUsageFigures.Meta):
        ordering = ["-day"]
        constraints = [
            *TenantScopedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "day"], name="metrics_usage_day_uniq"),
        ]
