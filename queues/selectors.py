"""Reads of the queues app: per-queue figures and worker liveness, for the admin's queue console
and ``/api/queues/stats`` / ``/api/queues/health`` (one place for both).

Cost: the broker's depth of each queue (one passive declare per queue, one connection), and five
grouped queries on the job table, each on an index: unfinished jobs (partial indexes), the last
hour's finished jobs (``finished_at``), workers (a handful of rows).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db.models import Count, Min
from django.db.models.functions import TruncMinute
from django.utils import timezone
from kombu.exceptions import ChannelError

from queues.models import Job, Worker
from queues.publisher import BROKER_ERRORS, broker_configured

#: The last hour in buckets of this many minutes (the console's chart).
BUCKET_MINUTES = 5
FAILED = (Job.Status.FAILED, Job.Status.DEAD)


def broker_depths(queues: list[str]) -> dict[str, int] | None:
    """Messages waiting on the broker per queue; ``None`` when there is no broker or it is down.

    A passive ``queue_declare`` (kombu's public channel API, for Redis and AMQP alike) reports a
    queue's message count without creating it; a queue never declared has none waiting.
    """
    if not broker_configured():
        return None
    depths = {}
    try:
        with current_app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            for queue in queues:
                channel = connection.channel()
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except (ChannelError, *BROKER_ERRORS):
                    depths[queue] = 0  # not declared yet: NOT_FOUND (AMQP and kombu's Redis)
                finally:
                    channel.close()
    except BROKER_ERRORS:
        return None
    return depths


@dataclass
class QueueFigures:
    name: str
    broker_depth: int | None = None
    queued: int = 0
    scheduled: int = 0
    running: int = 0
    oldest_waiting_seconds: float | None = None
    succeeded_last_hour: int = 0
    failed_last_hour: int = 0
    #: ``(bucket start, succeeded, failed)`` over the last hour, oldest first.
    timeline: list[tuple[datetime, int, int]] = field(default_factory=list)

    @property
    def failure_rate(self) -> float | None:
        done = self.succeeded_last_hour + self.failed_last_hour
        return None if done == 0 else self.failed_last_hour / done


@dataclass(frozen=True)
class WorkerFigures:
    name: str
    queues: str
    concurrency: int
    last_seen: datetime
    alive: bool
    running: list[tuple[int, str]]  # (job id, kind)


@dataclass(frozen=True)
class QueueStats:
    queues: list[QueueFigures]
    workers: list[WorkerFigures]
    broker_up: bool | None  # None: embedded mode, no broker

    @property
    def workers_alive(self) -> int:
        return sum(1 for worker in self.workers if worker.alive)

    @property
    def health(self) -> str:
        """``ok``; ``degraded`` when the broker is down or no worker is alive (jobs wait in the
        table, nothing is lost); embedded mode runs jobs in-process and is ``ok``."""
        if self.broker_up is None:
            return "ok"
        return "ok" if self.broker_up and self.workers_alive else "degraded"


def _bucket(moment: datetime, start: datetime) -> int:
    return int((moment - start).total_seconds() // (BUCKET_MINUTES * 60))


def queue_stats(*, now: datetime | None = None) -> QueueStats:
    now = now or timezone.now()
    names = list(settings.JOB_QUEUES)
    figures = {name: QueueFigures(name) for name in names}
    unfinished = (
        Job.all_tenants.filter(status__in=[*Job.WAITING, Job.Status.RUNNING])
        .values("queue", "status")
        .annotate(count=Count("id"))
    )
    for row in unfinished:
        queue = figures.setdefault(row["queue"], QueueFigures(row["queue"]))
        setattr(queue, row["status"], row["count"])
    oldest = (
        Job.all_tenants.filter(status__in=Job.WAITING, run_at__lte=now)
        .values("queue")
        .annotate(oldest=Min("run_at"))
    )
    for row in oldest:
        figures[row["queue"]].oldest_waiting_seconds = (now - row["oldest"]).total_seconds()
    start = now - timedelta(hours=1)
    buckets = 60 // BUCKET_MINUTES
    counts: dict[str, list[list[int]]] = defaultdict(lambda: [[0, 0] for _ in range(buckets)])
    finished = (
        Job.all_tenants.filter(finished_at__gt=start, status__in=[Job.Status.SUCCEEDED, *FAILED])
        .annotate(minute=TruncMinute("finished_at"))
        .values("queue", "status", "minute")
        .annotate(count=Count("id"))
    )
    for row in finished:
        queue = figures.setdefault(row["queue"], QueueFigures(row["queue"]))
        slot = min(buckets - 1, max(0, _bucket(row["minute"], start)))
        failed = row["status"] in FAILED
        counts[row["queue"]][slot][failed] += row["count"]
        if failed:
            queue.failed_last_hour += row["count"]
        else:
            queue.succeeded_last_hour += row["count"]
    for name, queue in figures.items():
        series = counts[name]
        queue.timeline = [
            (start + timedelta(minutes=BUCKET_MINUTES * i), ok, bad)
            for i, (ok, bad) in enumerate(series)
        ]
    depths = broker_depths(list(figures))
    for name, depth in (depths or {}).items():
        figures[name].broker_depth = depth
    broker_up = None if not broker_configured() else depths is not None
    return QueueStats(list(figures.values()), _workers(now), broker_up)


def _workers(now: datetime) -> list[WorkerFigures]:
    alive_after = now - timedelta(seconds=settings.WORKER_ALIVE_SECONDS)
    running = defaultdict(list)
    for job_id, kind, worker in Job.all_tenants.filter(status=Job.Status.RUNNING).values_list(
        "pk", "kind", "worker"
    ):
        running[worker.rsplit(":", 1)[0]].append((job_id, kind))
    return [
        WorkerFigures(
            name=worker.name,
            queues=worker.queues,
            concurrency=worker.concurrency,
            last_seen=worker.last_seen,
            alive=worker.last_seen >= alive_after,
            running=running.get(worker.name, []),
        )
        for worker in Worker.objects.all()
    ]
