"""Worker heartbeats: each Celery worker writes its ``Worker`` row every
``WORKER_HEARTBEAT_SECONDS`` from a thread of its main process, and deletes it when it stops.
Connected to Celery's ``worker_ready`` and ``worker_shutdown`` signals (queues/apps.py); they fire
only in worker processes."""

from __future__ import annotations

import logging
import os
import threading

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from queues.models import Worker

logger = logging.getLogger(__name__)
_stop = threading.Event()


def _beat(name: str, queues: str, concurrency: int) -> None:
    started = timezone.now()
    try:
        while True:
            try:
                Worker.objects.update_or_create(
                    name=name,
                    defaults={
                        "queues": queues,
                        "concurrency": concurrency,
                        "pid": os.getpid(),
                        "started_at": started,
                        "last_seen": timezone.now(),
                    },
                )
            except DatabaseError as error:
                logger.warning("Worker heartbeat not written: %s", error)
            if _stop.wait(settings.WORKER_HEARTBEAT_SECONDS):
                return
    finally:
        connection.close()


def _described(consumer) -> tuple[str, int]:
    """The queues and concurrency of the worker whose consumer sent ``worker_ready``. Celery
    documents no API for them on the signal's sender, so they are read defensively (a missing
    attribute shows as empty; the heartbeat itself needs only the node name)."""
    task_consumer = getattr(consumer, "task_consumer", None)
    queues = ",".join(sorted(q.name for q in getattr(task_consumer, "queues", None) or []))
    concurrency = getattr(getattr(consumer, "controller", None), "concurrency", 0) or 0
    return queues, int(concurrency)


@worker_ready.connect
def _start(sender, **kwargs) -> None:
    name = sender.hostname
    queues, concurrency = _described(sender)
    _stop.clear()
    threading.Thread(
        target=_beat, args=(name, queues, concurrency), name="heartbeat", daemon=True
    ).start()


@worker_shutdown.connect
def _stop_beating(sender, **kwargs) -> None:
    _stop.set()
    try:
        Worker.objects.filter(name=sender.hostname).delete()
    finally:
        connection.close()
