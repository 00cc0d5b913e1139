"""Download links: short-lived and signed, for every storage.

S3 storages: a presigned URL (signed against the endpoint, never a CDN domain), whose answer is an
attachment with the detected type. Local disk: a link to ``storage.views.signed_download``, signed
with Django's signing (the file id, its tenant and its key, with a timestamp); it works without an
API key until ``FILE_URL_SECONDS`` have passed, for that one file only.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.core.files.storage import FileSystemStorage, InvalidStorageError, storages
from django.urls import reverse

from storage.exceptions import StorageUnavailable
from storage.keys import sanitise_name
from storage.models import StoredFile

SALT = "storage.download"


def attachment_disposition(stored: StoredFile) -> str:
    return f'attachment; filename="{sanitise_name(stored.original_name)}"'


def backend_of(stored: StoredFile):
    """The storage holding the file's bytes; 503 when that storage is not configured here."""
    try:
        return storages[stored.storage]
    except InvalidStorageError:
        raise StorageUnavailable(details={"storage": stored.storage}) from None


def download_url(stored: StoredFile) -> str:
    backend = backend_of(stored)
    if isinstance(backend, FileSystemStorage):
        token = signing.dumps({"f": stored.pk, "t": stored.tenant_id, "k": stored.key}, salt=SALT)
        return reverse("file-signed-download", args=[token])
    return backend.url(
        stored.key,
        parameters={
            "ResponseContentDisposition": attachment_disposition(stored),
            "ResponseContentType": stored.content_type,
        },
        expire=settings.FILE_URL_SECONDS,
    )


def signed_file(token: str) -> StoredFile | None:
    """The live file a local link names; ``None`` for a forged or foreign link.

    Raises ``signing.SignatureExpired`` for a link older than ``FILE_URL_SECONDS``."""
    try:
        claims = signing.loads(token, salt=SALT, max_age=settings.FILE_URL_SECONDS)
    except signing.SignatureExpired:
        raise
    except signing.BadSignature:
        return None
    return StoredFile.all_tenants.filter(
        pk=claims.get("f"), tenant_id=claims.get("t"), key=claims.get("k"), deleted_at__isnull=True
    ).first()
