from __future__ import annotations

import re

from rest_framework import serializers

from queues.kinds import JobKind
from queues.models import Job
from queues.publisher import broker_configured

#: The ``Idempotency-Key`` header: printable ASCII, as long as the column holds; ``unique:`` is
#: the prefix of the code's unique keys (``job_enqueue(unique_key=...)``).
IDEMPOTENCY_KEY_PATTERN = r"^(?!unique:)[\x21-\x7e]{1,200}$"


class JobSerializer(serializers.ModelSerializer):
    waiting_for_broker = serializers.SerializerMethodField(
        help_text="True while a due job is written but not yet handed to the broker (the "
        "broker is unreachable, or the job was just rescued): it waits in the table and is "
        "sent when the broker answers."
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "queue",
            "payload",
            "result",
            "last_error",
            "attempts",
            "max_attempts",
            "rescues",
            "run_at",
            "created_at",
            "started_at",
            "finished_at",
            "waiting_for_broker",
        ]
        read_only_fields = fields

    def get_waiting_for_broker(self, job: Job) -> bool:
        return broker_configured() and job.status == Job.Status.QUEUED and job.published_at is None


class JobCreateSerializer(serializers.Serializer):
    kind = serializers.CharField(max_length=100, help_text="A registered kind (GET /jobs/kinds/).")
    payload = serializers.DictField(required=False, default=dict)
    run_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="Not before. Empty: now."
    )


def kind_request_serializer(kind: JobKind) -> type[serializers.Serializer]:
    """The body of ``POST /api/v1/jobs/`` for one kind, as the schema states it (one branch of a
    ``oneOf`` on ``kind``); the server checks the same payload serializer (``job_enqueue``)."""
    name = "JobCreate" + "".join(part.title() for part in re.split(r"[^A-Za-z0-9]+", kind.name))
    if kind.payload is None:
        payload = serializers.DictField(required=False)
    else:
        required = any(field.required for field in kind.payload().fields.values())
        payload = kind.payload(required=required)
    fields = {
        "kind": serializers.ChoiceField(choices=[kind.name]),
        "payload": payload,
        "run_at": serializers.DateTimeField(required=False, allow_null=True),
    }
    return type(name, (serializers.Serializer,), fields)


class JobKindSerializer(serializers.Serializer):
    name = serializers.CharField()
    queue = serializers.CharField()
    max_attempts = serializers.IntegerField()
