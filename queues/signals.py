"""Signals of the job runner, for apps that observe jobs (the metrics app).

``job_started`` is sent in the worker right before a job's handler runs (inside its tenant scope),
``job_finished`` right after, whatever the outcome, from the same thread: a receiver may open
something on the first and close it on the second. Both carry ``kind``, ``job_id``, ``tenant_id``
and ``queue``; ``job_started`` adds ``waited_seconds`` (from the moment the job was due to its
claim), ``job_finished`` adds ``outcome``: ``succeeded``, ``scheduled`` (a retry is due later),
``failed``, ``dead`` or ``lost`` (the lease was lost and the result dropped).
"""

from django.dispatch import Signal

job_started = Signal()
job_finished = Signal()
