"""Usage against limits in the tenant admin, computed in SQL for a whole changelist at once.

The changelist of 100,000 tenants cannot ask ``usage.quota_report`` per row, so the same
figures are built here as query expressions: one correlated subquery per counted resource and the
effective limit read from the tenant's ``limit_overrides`` JSON (else the plan's column). The page
and its count stay one query each, whatever the number of tenants.

Rules, the same as ``tenants.limits.quotas`` and ``QuotaLine.percent``:

* Effective limit: the override when its key is present (a present key with ``null`` is
  unlimited), else the plan's field. ``NULL`` is unlimited: no percentage, never near a limit.
* Percent: ``used * 100 // limit``, floored, so ``>= 80`` means ``used * 100 >= 80 * limit``
  exactly. A limit of 0 means "none allowed" and counts as 100% whatever is used (the tenant is
  at its limit: it can take no more).
* Counted: members, active (not revoked) API keys, and the ``TenantUsage`` row of the *current*
  period (``quotas.period_key``) of ``storage_bytes``, ``jobs_per_day`` and
  ``api_calls_per_month``; rows of past periods are ignored. ``max_file_bytes`` is a per-file
  limit with nothing counted, and ``requests_per_minute`` is a rate, not a quota.
* API calls are read from their durable row, which may trail the live counter store by fewer than
  ``API_CALLS_FLUSH_EVERY`` calls (``tenants.limits.api_calls``); the change page shows the live count.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    Expression,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, Greatest, Least, NullIf
from django.db.models.lookups import Exact, IsNull

from tenants.limits import quotas
from tenants.limits.registry import COUNTED, MAX_API_KEYS, MAX_MEMBERS
from tenants.models import ApiKey, Membership, TenantUsage

#: Above this a counter is taken as this value before ``* 100``, so the product fits a bigint
#: (9.2e18). A percentage is exact up to it; past it, with limits at most ``MAX_LIMIT_VALUE``
#: (10**15), it is at least 1000% and still over every threshold.
_USED_CAP = 10**16

#: The filter's choices: the threshold in percent and its label.
THRESHOLD_CHOICES = (("80", "≥ 80% of a limit"), ("100", "at or over a limit (100%)"))

#: The annotation holding the highest percentage over the tenant's counted quotas (``NULL`` when
#: all of them are unlimited).
NEAR_LIMIT = "near_limit"


def count_per_tenant(model, **filters) -> Coalesce:
    """A correlated ``COUNT`` of the tenant's rows: one query for the page, no join fan-out."""
    rows = (
        model.all_tenants.filter(tenant=OuterRef("pk"), **filters)
        .order_by()
        .values("tenant")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows), 0, output_field=BigIntegerField())


def counter_used(resource: str) -> Coalesce:
    """The tenant's counter of ``resource`` in the current period (0 when there is no row)."""
    rows = TenantUsage.all_tenants.filter(
        tenant=OuterRef("pk"), resource=resource, period=quotas.period_key(resource)
    ).values("used")[:1]
    return Coalesce(Subquery(rows), 0, output_field=BigIntegerField())


def used_expression(resource: str) -> Expression:
    if resource == MAX_MEMBERS:
        return count_per_tenant(Membership)
    if resource == MAX_API_KEYS:
        return count_per_tenant(ApiKey, revoked_at__isnull=True)
    return counter_used(resource)


def effective_limit(name: str) -> Case:
    """The tenant's limit ``name``: the override when the key is present (JSON ``null``:
    unlimited), else the plan's column (``NULL``: unlimited).

    JSON ``null`` is matched first (``limit_overrides__<name>=None`` matches a present key holding
    null, never a missing key): on SQLite the key's text would be ``'null'``, which casts to 0.
    Overrides are validated integers (``validate_limit_overrides``), so the cast cannot fail.
    """
    return Case(
        When(Q(**{f"limit_overrides__{name}": None}), then=Value(None)),
        When(
            Q(limit_overrides__has_key=name),
            then=Cast(KeyTextTransform(name, "limit_overrides"), BigIntegerField()),
        ),
        default=F(f"plan__{name}"),
        output_field=BigIntegerField(),
    )


def percent_expression(used: Expression, limit: Expression) -> Case:
    """``used * 100 // limit`` (floored: both are non-negative integers); 100 when the limit is 0
    ("none allowed": at the limit whatever is used); ``NULL`` when unlimited."""
    capped = Least(used, Value(_USED_CAP, output_field=BigIntegerField()))
    return Case(
        When(IsNull(limit, True), then=Value(None)),
        When(Exact(limit, 0), then=Value(100)),
        default=capped * Value(100) / limit,
        output_field=BigIntegerField(),
    )


def near_limit_expression() -> NullIf:
    """The highest percentage over the tenant's counted quotas; ``NULL`` if all are unlimited.

    ``GREATEST`` skips ``NULL`` on PostgreSQL but not on SQLite, hence the -1 stand-in.
    """
    percents = [
        Coalesce(percent_expression(used_expression(name), effective_limit(name)), Value(-1))
        for name in COUNTED
    ]
    return NullIf(Greatest(*percents, output_field=BigIntegerField()), Value(-1))


def with_usage(queryset: QuerySet) -> QuerySet:
    """``queryset`` of tenants with ``near_limit`` annotated (once)."""
    if NEAR_LIMIT in queryset.query.annotations:
        return queryset
    return queryset.annotate(**{NEAR_LIMIT: near_limit_expression()})


class UsageFilter(admin.SimpleListFilter):
    """Tenants at or over 80% / 100% of any counted limit, in the changelist's one query.

    A limit of 0 counts as 100% (see the module docstring); an unlimited quota never matches.
    """

    title = "usage"
    parameter_name = "usage"

    def lookups(self, request, model_admin):
        return THRESHOLD_CHOICES

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() not in dict(THRESHOLD_CHOICES):
            return queryset
        return with_usage(queryset).filter(**{f"{NEAR_LIMIT}__gte": int(self.value())})
