"""Job kinds of the storage app (registered in ``storage.apps``)."""

from __future__ import annotations

from rest_framework import serializers

from queues.kinds import JobContext, RetryPolicy, job_kind
from storage.models import StoredFile
from storage.services import PURGE_KIND, file_purge


class PurgePayload(serializers.Serializer):
    file = serializers.IntegerField(min_value=1)


@job_kind(
    PURGE_KIND,
    queue="cleanup",
    payload=PurgePayload,
    public=False,
    retry=RetryPolicy(max_attempts=8, backoff_seconds=60, backoff_max_seconds=3600),
)
def purge_file(payload: dict, context: JobContext) -> dict:
    """Runs in the file's tenant scope (the job's): another tenant's file id finds nothing."""
    stored = StoredFile.objects.filter(pk=payload["file"]).first()
    if stored is None:
        return {"purged": False}
    file_purge(stored=stored)
    return {"purged": True, "bytes": stored.size}
