"""Signals of the job runner, for apps that observe jobs (the metrics app's query monitor).

``job_started`` is sent in the worker right before a job's handler runs (inside its tenant scope),
``job_finished`` right after, whatever the outcome, from the same thread: a receiver may open
something on the first and close it on the second. Arguments: ``kind``, ``job_id``, ``tenant_id``.
"""

from django.dispatch import Signal

job_started = Signal()
job_finished = Signal()
