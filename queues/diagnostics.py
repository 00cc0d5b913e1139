"""Diagnostic job kinds (``JOBS_DIAGNOSTIC_KINDS``): echo, sleep and fail, for tests and checks."""

from __future__ import annotations

import time

from rest_framework import serializers

from queues.kinds import JobContext, RetryPolicy, job_kind


class EchoPayload(serializers.Serializer):
    message = serializers.JSONField(required=False, allow_null=True, default=None)


class SleepPayload(serializers.Serializer):
    seconds = serializers.FloatField(min_value=0, max_value=600)


class FailPayload(serializers.Serializer):
    times = serializers.IntegerField(min_value=0, max_value=100)


class DiagnosticFailure(RuntimeError):
    """What ``diagnostics.fail`` raises on its failing attempts."""


@job_kind("diagnostics.echo", payload=EchoPayload)
def echo(payload: dict, context: JobContext) -> dict:
    return {"message": payload["message"]}


@job_kind("diagnostics.sleep", payload=SleepPayload)
def sleep(payload: dict, context: JobContext) -> dict:
    time.sleep(payload["seconds"])
    return {"slept": payload["seconds"]}


@job_kind(
    "diagnostics.fail",
    payload=FailPayload,
    retry=RetryPolicy(max_attempts=3, backoff_seconds=1, backoff_max_seconds=10),
)
def fail(payload: dict, context: JobContext) -> dict:
    """Fails its first ``times`` attempts, then succeeds."""
    if context.attempt <= payload["times"]:
        raise DiagnosticFailure(f"attempt {context.attempt} of {payload['times']} failing")
    return {"attempts": context.attempt}
