"""The dispatcher: publish due jobs nobody has claimed, and rescue jobs whose worker is gone.

It is what makes the table the truth: a job whose publish failed (broker down), whose message was
lost, whose retry came due, or whose worker died, is found here by its row and sent again. It runs
from beat (``queues.tasks.dispatch``) or ``manage.py dispatch_jobs``; two dispatchers at once are
safe (SKIP LOCKED rows, and a second message for a job claims nothing).
"""

from __future__ import annotations

from collections import Counter

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from queues.models import Job
from queues.publisher import (
    broker_configured,
    publish,
    published_recently_since,
    unpublished,
)
from tenants.limits.registry import JOBS_IN_FLIGHT
from tenants.models import Tenant


def in_flight(tenant_ids, *, now=None) -> dict[int, int]:
    """Per tenant: its jobs handed to workers, i.e. running, or published (recently) and not
    yet claimed. What its ``jobs_in_flight`` limit bounds."""
    now = now or timezone.now()
    handed = Q(status=Job.Status.RUNNING) | Q(
        status__in=Job.WAITING, published_at__gte=published_recently_since(now)
    )
    rows = (
        Job.all_tenants.filter(handed, tenant_id__in=tenant_ids)
        .values("tenant_id")
        .annotate(count=Count("id"))
        .values_list("tenant_id", "count")
    )
    return dict(rows)


def _rooms(tenant_ids, now) -> dict[int, int | None]:
    """How many more jobs each tenant may have handed out now (``None``: no limit)."""
    busy = in_flight(tenant_ids, now=now)
    rooms = {}
    for tenant in Tenant.objects.select_related("plan").filter(pk__in=tenant_ids):
        cap = tenant.limits()[JOBS_IN_FLIGHT]
        rooms[tenant.pk] = None if cap is None else max(0, cap - busy.get(tenant.pk, 0))
    return rooms


def fair_share(rows, rooms: dict[int, int | None], batch: int) -> list[int]:
    """Job ids from ``rows`` (``(tenant_id, job_id)`` ordered by each job's rank within its
    tenant, so round-robin across tenants), at most each tenant's room, at most ``batch``."""
    taken: Counter = Counter()
    chosen = []
    for tenant_id, job_id in rows:
        room = rooms.get(tenant_id, 0)
        if room is not None and taken[tenant_id] >= room:
            continue
        taken[tenant_id] += 1
        chosen.append(job_id)
        if len(chosen) == batch:
            break
    return chosen


def dispatch_due(*, now=None, batch: int = 500, tenant_id: int | None = None) -> int:
    """Publish due, unclaimed jobs fairly; returns how many went.

    Fairness: a tenant has at most its plan's ``jobs_in_flight`` jobs handed to workers (on the
    broker or running), whatever their kinds or queues, and each round hands out slots
    round-robin: every tenant's oldest due job, then every tenant's second, ... So one tenant's
    100,000 queued jobs are never more than its share ahead of another tenant's one job; the
    rest wait in the table. Embedded mode (no broker, one process) runs due jobs in order.
    """
    now = now or timezone.now()
    waiting = Job.all_tenants.filter(unpublished(now))
    if tenant_id is not None:
        waiting = waiting.filter(tenant_id=tenant_id)
    if not broker_configured():
        due = list(waiting.order_by("run_at", "id").values_list("pk", flat=True)[:batch])
        return publish(due) if due else 0
    if tenant_id is not None:  # one tenant: its oldest due jobs, up to its room
        room = _rooms([tenant_id], now).get(tenant_id, 0)
        limit = batch if room is None else min(room, batch)
        due = list(waiting.order_by("run_at", "id").values_list("pk", flat=True)[:limit])
        return publish(due) if due else 0
    tenant_ids = list(waiting.order_by().values_list("tenant_id", flat=True).distinct())
    if not tenant_ids:
        return 0
    rooms = _rooms(tenant_ids, now)
    deepest = max((batch if room is None else room) for room in rooms.values())
    if deepest == 0:
        return 0
    ranked = (
        waiting.annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("tenant_id")],
                order_by=[F("run_at").asc(), F("id").asc()],
            )
        )
        .filter(rank__lte=deepest)
        .order_by("rank", "run_at", "id")
        .values_list("tenant_id", "pk")
    )
    chosen = fair_share(ranked, rooms, batch)
    return publish(chosen) if chosen else 0


def dispatch_tenant(tenant_id: int) -> int:
    """Fill the tenant's free slots now (after it enqueued a job, or one of its jobs ended)."""
    return dispatch_due(tenant_id=tenant_id)


def rescue_expired(*, now=None, batch: int = 500) -> dict[str, int]:
    """Jobs whose lease ran out (their worker is gone): back to ``queued``, or ``dead`` past
    ``JOB_MAX_RESCUES`` rescues. Rows are locked with SKIP LOCKED, so two rescuers split them."""
    now = now or timezone.now()
    counts = {"requeued": 0, "dead": 0}
    with transaction.atomic():
        expired = list(
            Job.all_tenants.select_for_update(skip_locked=True)
            .filter(status=Job.Status.RUNNING, lease_until__lt=now)
            .values_list("pk", "rescues", "worker")[:batch]
        )
        for job_id, rescues, worker in expired:
            lost = f"worker {worker or '?'} lost while running (lease expired)"
            if rescues + 1 > settings.JOB_MAX_RESCUES:
                Job.all_tenants.filter(pk=job_id).update(
                    status=Job.Status.DEAD,
                    rescues=rescues + 1,
                    lease_until=None,
                    finished_at=now,
                    last_error=f"quarantined after {rescues + 1} rescues: {lost}",
                )
                counts["dead"] += 1
            else:
                Job.all_tenants.filter(pk=job_id).update(
                    status=Job.Status.QUEUED,
                    rescues=rescues + 1,
                    worker="",
                    lease_until=None,
                    published_at=None,
                    last_error=lost,
                )
                counts["requeued"] += 1
    return counts


def dispatch(*, now=None) -> dict[str, int]:
    """One round: rescue, then publish (a rescued job goes out in the same round)."""
    counts = rescue_expired(now=now)
    counts["published"] = dispatch_due(now=now)
    return counts
