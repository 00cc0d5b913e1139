"""Resource quotas: reserve usage before the work, release it if the work fails.

Invariants (money and fairness depend on them):

* A counter never passes its limit. A reservation is ONE conditional update,
  ``UPDATE ... SET used = used + n WHERE tenant_id = ... AND resource = ... AND period = ...
  AND used <= limit - n``; the database re-checks the condition on the row it locks, so concurrent
  reservations (threads, processes, machines) can never take a tenant past its limit. There is no
  read-compare-write anywhere.
* Usage counted is usage used. ``quota_reserve`` is a context manager: when its block raises, what
  it reserved is released before the error propagates. If the block broke the enclosing database
  transaction, that transaction's rollback undoes the reservation instead (the reservation was made
  inside it). A process killed between reserve and release can still leave usage counted:
  ``quota_reconcile`` recomputes a counter from the source of truth and reports the drift.
* Counters never go below zero (``quota_release`` clamps at 0).
* Periods are UTC: ``jobs_per_day`` counts in rows of period ``YYYY-MM-DD``,
  ``api_calls_per_month`` in ``YYYY-MM``; ``storage_bytes`` has no period (``""``). A new period is a
  new row, so a counter starts from zero on time even if ``quota_reset_periods`` runs late.
* Unlimited (``None``) limits skip the counter write, except ``storage_bytes``, which is always
  recorded (stored bytes must be known when a tenant moves to a limited plan).
* ``max_file_bytes`` is a per-file check, not a counter: a larger file raises ``FileTooLarge``
  (413). ``max_members`` and ``max_api_keys`` are counted from their rows under the tenant's row
  lock by ``tenants.services``, through ``quota_check``.
* A request that leaves a counter at 80% or more of its limit gets a ``Quota-Warning`` header
  (``tenants.limits.state``, written by ``tenants.limits.middleware.LimitsMiddleware``).
* ``quota_threshold_crossed`` is sent once per crossing of 80% and 100% of a limit: the counter
  before and after a reservation are read under the row lock the reservation holds, so exactly one
  reservation sees each crossing. It is sent after the block succeeds and the transaction commits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.dispatch import Signal
from django.utils import timezone

from tenants.exceptions import FileTooLarge, QuotaExceeded
from tenants.limits.registry import COUNTERS, MAX_FILE_BYTES, STORAGE_BYTES
from tenants.limits.registry import resource as registry_resource
from tenants.limits.state import THRESHOLDS, note_usage
from tenants.models import Tenant, TenantUsage

logger = logging.getLogger(__name__)

#: Sent with ``sender=TenantUsage`` and ``tenant``, ``resource``, ``percent``, ``used``, ``limit``.
quota_threshold_crossed = Signal()


@dataclass
class Reservation:
    """What ``quota_reserve`` took: ``counted`` units of ``resource`` in ``period``."""

    tenant: Tenant
    resource: str
    period: str
    amount: int
    counted: int = 0
    limit: int | None = None
    used: int | None = None
    crossed: list[int] = field(default_factory=list)


def period_key(resource: str, now: datetime | None = None) -> str:
    """The counter row's period for ``resource`` at ``now`` (UTC)."""
    if resource not in COUNTERS:
        raise ValueError(f"{resource!r} is not a counted resource ({', '.join(COUNTERS)}).")
    length = COUNTERS[resource]
    if length is None:
        return ""
    moment = (now or timezone.now()).astimezone(UTC)
    return moment.strftime("%Y-%m-%d" if length == "day" else "%Y-%m")


def _counter(tenant_id: int, resource: str, period: str):
    return TenantUsage.all_tenants.filter(tenant_id=tenant_id, resource=resource, period=period)


def _ensure_counter(tenant_id: int, resource: str, period: str) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: concurrent first uses make one row, and nobody fails."""
    TenantUsage.all_tenants.bulk_create(
        [TenantUsage(tenant_id=tenant_id, resource=resource, period=period)],
        ignore_conflicts=True,
    )


def counter_used(tenant_id: int, resource: str, period: str) -> int:
    """The counter of ``resource`` in ``period`` (0 when nothing was counted yet)."""
    return _counter(tenant_id, resource, period).values_list("used", flat=True).first() or 0


def next_period_start(period: str | None, moment: datetime) -> datetime | None:
    """When a counter of ``period`` ("day", "month", ``None``) next starts from zero (UTC)."""
    if period is None:
        return None
    start = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return start + timedelta(days=1)
    return (start.replace(day=1) + timedelta(days=32)).replace(day=1)


def _check_amount(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError(f"A quota amount is a non-negative integer, not {amount!r}.")


def exceeded_error(
    tenant: Tenant, resource: str, limit: int, used: int, requested: int
) -> QuotaExceeded:
    """The error of a refused request: 403 ``quota_exceeded`` (413 for a file's size)."""
    error = FileTooLarge if resource == MAX_FILE_BYTES else QuotaExceeded
    details = {"resource": resource, "limit": limit, "used": used, "requested": requested}
    if resets := next_period_start(registry_resource(resource).period, timezone.now()):
        details["resets_at"] = resets.isoformat().replace("+00:00", "Z")
    return error(f"The {tenant.plan.name} plan allows {limit} ({resource}).", details=details)


def quota_check(*, tenant: Tenant, resource: str, used: int, requested: int = 1) -> None:
    """Raise ``QuotaExceeded`` if ``used + requested`` passes the limit.

    Only for usage counted from rows that the caller has locked (members, API keys: the tenant
    row is locked with ``SELECT ... FOR UPDATE`` first); counters go through ``quota_reserve``.
    """
    limit = tenant.limits()[resource]
    if limit is not None and used + requested > limit:
        raise exceeded_error(tenant, resource, limit, used, requested)
    note_usage(resource, used + requested, limit)


def thresholds_crossed(before: int, after: int, limit: int) -> list[int]:
    """The ``THRESHOLDS`` percentages a counter passed going from ``before`` to ``after``."""
    if limit <= 0:
        return []
    return [p for p in THRESHOLDS if before * 100 < p * limit <= after * 100]


def _reserve(tenant: Tenant, resource: str, amount: int, now: datetime | None) -> Reservation:
    _check_amount(amount)
    limit = tenant.limits().get(resource) if resource in (*COUNTERS, MAX_FILE_BYTES) else None
    if resource == MAX_FILE_BYTES:
        if limit is not None and amount > limit:
            raise exceeded_error(tenant, resource, limit, 0, amount)
        return Reservation(tenant, resource, "", amount, limit=limit)
    period = period_key(resource, now)
    reservation = Reservation(tenant, resource, period, amount, limit=limit)
    if amount == 0 or (limit is None and resource != STORAGE_BYTES):
        return reservation
    moment = now or timezone.now()
    rows = _counter(tenant.pk, resource, period)
    if limit is None:
        if not rows.update(used=F("used") + amount, updated_at=moment):
            _ensure_counter(tenant.pk, resource, period)
            rows.update(used=F("used") + amount, updated_at=moment)
        reservation.counted = amount
        return reservation
    if amount <= limit:
        with transaction.atomic():
            fits = rows.filter(used__lte=limit - amount)
            updated = fits.update(used=F("used") + amount, updated_at=moment)
            if not updated:
                _ensure_counter(tenant.pk, resource, period)
                updated = fits.update(used=F("used") + amount, updated_at=moment)
            if updated:
                # Still under the lock our UPDATE took: nobody else moved the counter since.
                after = rows.values_list("used", flat=True).get()
        if updated:
            reservation.counted = amount
            reservation.used = after
            reservation.crossed = thresholds_crossed(after - amount, after, limit)
            return reservation
    raise exceeded_error(tenant, resource, limit, counter_used(tenant.pk, resource, period), amount)


def _announce(reservation: Reservation) -> None:
    for percent in reservation.crossed:
        quota_threshold_crossed.send(
            sender=TenantUsage,
            tenant=reservation.tenant,
            resource=reservation.resource,
            percent=percent,
            used=reservation.used,
            limit=reservation.limit,
        )


def _undo(reservation: Reservation) -> None:
    if not reservation.counted:
        return
    connection = transaction.get_connection()
    if connection.in_atomic_block and connection.needs_rollback:
        # The enclosing transaction is broken and will roll back, our reservation with it.
        return
    quota_release(
        reservation.tenant,
        reservation.resource,
        reservation.counted,
        period=reservation.period,
    )


@contextmanager
def quota_reserve(
    tenant: Tenant, resource: str, amount: int, *, now: datetime | None = None
) -> Iterator[Reservation]:
    """Reserve ``amount`` of ``resource`` for the block; release it if the block raises.

    Raises ``QuotaExceeded`` (403) before the block runs when the reservation would pass the
    tenant's limit, or ``FileTooLarge`` (413) for a file above ``max_file_bytes``. See the module
    docstring for the invariants.
    """
    reservation = _reserve(tenant, resource, amount, now)
    try:
        yield reservation
    except BaseException:
        _undo(reservation)
        raise
    if reservation.used is not None:
        note_usage(resource, reservation.used, reservation.limit)
    if reservation.crossed:
        transaction.on_commit(lambda: _announce(reservation), robust=True)


def quota_release(
    tenant: Tenant,
    resource: str,
    amount: int,
    *,
    period: str | None = None,
    now: datetime | None = None,
) -> None:
    """Give back ``amount`` (e.g. a deleted file's bytes). The counter never goes below zero."""
    _check_amount(amount)
    if period is None:
        period = period_key(resource, now)
    _counter(tenant.pk, resource, period).update(
        used=Greatest(F("used") - Value(amount), Value(0)), updated_at=now or timezone.now()
    )


def quota_raise_to(tenant: Tenant, resource: str, used: int, *, period: str) -> None:
    """Bring the counter up to ``used`` if it is below (never down): for counts kept elsewhere
    first, such as the API calls counted in the counter store (``tenants.limits.api_calls``)."""
    _check_amount(used)
    rows = _counter(tenant.pk, resource, period)
    raised = Greatest(F("used"), Value(used))
    if not rows.update(used=raised, updated_at=timezone.now()):
        _ensure_counter(tenant.pk, resource, period)
        rows.update(used=raised, updated_at=timezone.now())


def quota_usage(tenant: Tenant, resource: str, *, now: datetime | None = None) -> int:
    """The counter of ``resource`` in the current period (0 when nothing was counted yet)."""
    return counter_used(tenant.pk, resource, period_key(resource, now))


def tenants_counting(resource: str, *, now: datetime | None = None) -> set[int]:
    """Ids of the tenants whose counter of ``resource`` in the current period is above zero (for
    reconciliations, which must also reach counters whose source of truth is now empty)."""
    return set(
        TenantUsage.all_tenants.filter(
            resource=resource, period=period_key(resource, now), used__gt=0
        ).values_list("tenant_id", flat=True)
    )


def quota_reset_periods(now: datetime | None = None) -> int:
    """Drop daily and monthly counters of past periods; return how many were dropped.

    For the beat schedule (global, not per tenant). Counting itself never depends on it: the
    current period always has its own row. Periods are compared as ISO strings, so a clock slightly
    behind never drops the current period's counter.
    """
    deleted = 0
    for resource, length in COUNTERS.items():
        if length is None:
            continue
        current = period_key(resource, now)
        count, _ = TenantUsage.all_tenants.filter(resource=resource, period__lt=current).delete()
        deleted += count
    return deleted


@transaction.atomic
def quota_reconcile(
    tenant: Tenant, resource: str, actual: int, *, now: datetime | None = None
) -> int:
    """Set the counter to ``actual`` (the source of truth); return the drift ``counted - actual``.

    A positive drift is usage that was counted but not used (e.g. a process killed inside a
    reservation), a negative one usage that escaped counting.
    """
    _check_amount(actual)
    period = period_key(resource, now)
    _ensure_counter(tenant.pk, resource, period)
    row = _counter(tenant.pk, resource, period).select_for_update().get()
    drift = row.used - actual
    if drift:
        logger.warning(
            "quota drift",
            extra={"tenant_id": tenant.pk, "resource": resource, "drift": drift},
        )
        _counter(tenant.pk, resource, period).update(used=actual, updated_at=now or timezone.now())
    return drift
