"""Errors of the queues app. Those a client can see are ``tenants`` errors (one error shape)."""

from __future__ import annotations

from rest_framework import status

from tenants.exceptions import TenantsError


class QueuesError(TenantsError):
    """Root error of the queues app."""

    default_code = "queues_error"
    default_detail = "The job could not be handled."


class UnknownJobKind(QueuesError):
    default_code = "unknown_job_kind"
    default_detail = "There is no job kind of that name."


class InvalidJobPayload(QueuesError):
    default_code = "invalid"
    default_detail = "The job's payload is invalid."


class IdempotencyConflict(QueuesError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_conflict"
    default_detail = "That idempotency key was used for another job (a different kind or payload)."


class JobNotRetryable(QueuesError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "job_not_retryable"
    default_detail = "Only a failed, dead or cancelled job can be retried."


class JobNotCancellable(QueuesError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "job_not_cancellable"
    default_detail = "Only a queued or scheduled job can be cancelled; this one ran or is running."
