"""The Celery app. Settings are read from Django's (``CELERY_*``, config/settings.py).

Workers: ``celery -A config worker -Q default,email`` (see the Procfile). Jobs reach workers as
``queues.run_job`` messages on the queue of their kind; the job table (``queues.models.Job``) is
the truth, a message only a wake-up.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("ils")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
