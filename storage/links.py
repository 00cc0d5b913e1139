"""Download links: short-lived and signed, for every storage.

S3 storages: a presigned URL (signed against the endpoint, never a CDN domain), whose answer is an
attachment with the detected type. Local disk: a link to ``storage.views.signed_download``, signed
with Django's signing (the file id, its tenant and its key, with a timestamp); it works without an
API key until ``FILE_URL_SECONDS`` have passed, for that one file only.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.core.files.storage import FileSystemStorage
from django.urls import reverse

from storage.backends import backend_named, ensure_available
from storage.keys import sanitise_name
from storage.models import StoredFile

SALT = "storage.download"


def attachment_disposition(stored: StoredFile) -> str:
    return f'attachment; filename="{sanitise_name(stored.original_name)}"'


def download_url(stored: StoredFile) -> str:
    """A link to the file's bytes where its row says they are (503 while the storage breaker is
    open: the link would lead to a storage that does not answer)."""
    ensure_available()
    backend = backend_named(stored.storage)
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
