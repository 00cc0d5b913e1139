"""The Celery app. Settings are read from Django's (``CELERY_*``, config/settings.py).

Workers: ``celery -A config worker -Q default,email`` (see the Procfile). Jobs reach workers as
``queues.run_job`` messages on the queue of their kind; the job table (``queues.models.Job``) is
the truth, a message only a wake-up.

A worker started with ``WORKER_METRICS_PORT`` exports its own Prometheus metrics
(``metrics.worker``). Its pool processes must then count in Prometheus's multiprocess mode, which
prometheus_client chooses when it is first imported: before Django loads, so here, from the
environment (as ``config/gunicorn.py`` does for the web), with a directory of the worker's own
unless ``PROMETHEUS_MULTIPROC_DIR`` names one.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from celery import Celery
from celery.signals import worker_init, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

if os.environ.get("WORKER_METRICS_PORT", "0").strip() not in ("", "0"):
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ils-prometheus-worker-")
        atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    # prometheus_client writes its files there from its first metric on
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

app = Celery("ils")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_exporter = None


@worker_init.connect
def _start_metrics_exporter(**kwargs) -> None:
    """In the worker's main process, before its pool starts: the directory emptied of what an
    earlier worker counted (this one's own files stay) and the exporter."""
    global _exporter
    from django.conf import settings

    if not settings.WORKER_METRICS_PORT:
        return
    from metrics import multiprocess, worker

    multiprocess.prepare(multiprocess.directory(), keep=os.getpid())
    _exporter = worker.serve(settings.WORKER_METRICS_ADDRESS, settings.WORKER_METRICS_PORT)


@worker_shutdown.connect
def _stop_metrics_exporter(**kwargs) -> None:
    if _exporter is not None:
        _exporter.shutdown()
