"""The job table: the truth about background work. The broker only carries wake-ups.

Invariants (``queues.services``, ``queues.runner``, ``queues.dispatcher``):

* A job is written in its caller's transaction and published after that transaction commits. A
  publish that fails (broker down) leaves the row ``queued``; the dispatcher publishes it later.
  Between the two, nothing is lost: the row is there or the caller's transaction did not commit.
* A worker runs a job only after claiming its row with ONE conditional UPDATE (queued or scheduled,
  due) that sets it ``running`` with a lease. A message for a job that is running, finished or
  cancelled claims nothing and does nothing, so a duplicated or redelivered message never runs a
  job twice at once.
* A running job's lease is renewed while it runs. A lease that expires (the worker was killed, the
  machine is gone) makes the job ``queued`` again: a rescue. Past ``JOB_MAX_RESCUES`` rescues the
  job is ``dead`` with the reason, so a job that kills its worker cannot loop.
* Delays (retries, ``run_at``) wait in this table as ``scheduled`` rows, never as broker
  countdowns, so no broker visibility timeout can deliver them twice.
* A job runs in its own tenant's scope, set from the row and cleared after.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from tenants.scoping import TenantScopedModel


class Job(TenantScopedModel):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SCHEDULED = "scheduled", "Scheduled"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        DEAD = "dead", "Dead"
        CANCELLED = "cancelled", "Cancelled"

    #: Waiting to be claimed.
    WAITING = (Status.QUEUED, Status.SCHEDULED)
    #: Done, one way or another: nothing runs them again unless staff retry them.
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.DEAD, Status.CANCELLED)

    kind = models.CharField(max_length=100)
    payload = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0, help_text="Claims that ran the job.")
    max_attempts = models.PositiveIntegerField()
    rescues = models.PositiveIntegerField(
        default=0, help_text="Times a worker was lost while running it."
    )
    run_at = models.DateTimeField(default=timezone.now, help_text="Not claimed before this.")
    lease_until = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    last_error = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantScopedModel.Meta):
        ordering = ["id"]
        constraints = [
            *TenantScopedModel.Meta.constraints,
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="queues_job_tenant_idempotency_uniq",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "id"], name="queues_job_tenant_status_idx"),
            # Due jobs in order, per tenant (the dispatcher's rounds and a tenant's refill);
            # partial: only waiting rows.
            models.Index(
                fields=["tenant", "run_at"],
                condition=models.Q(status__in=["queued", "scheduled"]),
                name="queues_job_due_idx",
            ),
            # The rescuer's scan runs across tenants, so it cannot lead with tenant_id; partial.
            models.Index(
                fields=["lease_until"],
                condition=models.Q(status="running"),
                name="queues_job_lease_idx",
            ),
            # The console's last hour and the pruning: finished jobs across tenants by time.
            models.Index(fields=["finished_at"], name="queues_job_finished_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"


class Worker(models.Model):
    """A Celery worker as its heartbeat last told (``queues.heartbeat``): global, not a tenant's.

    Alive while ``last_seen`` is within ``WORKER_ALIVE_SECONDS``; what it runs is in the job table
    (``Job.worker`` starts with its ``name``).
    """

    name = models.CharField(max_length=200, unique=True, help_text="Celery's node name.")
    queues = models.CharField(max_length=500, blank=True)
    concurrency = models.PositiveIntegerField(default=0)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
