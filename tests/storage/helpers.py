"""Helpers of the storage tests."""

from __future__ import annotations

import hashlib
import io
import os

from storage.detection import HEAD_BYTES
from storage.models import StoredFile
from storage.services import file_store


def store(tenant, data: bytes, name: str = "photo.png", **kwargs) -> StoredFile:
    """Store ``data`` for ``tenant`` as an upload would (``file_store`` on counted bytes)."""
    return file_store(
        tenant=tenant,
        source=io.BytesIO(data),
        name=name,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        head=data[:HEAD_BYTES],
        **kwargs,
    )


def random_bytes(size: int) -> bytes:
    """``size`` bytes detected as ``application/octet-stream``: random bytes alone sometimes start
    like an MP3 frame or another format the allow-list refuses."""
    prefix = b"ILS\x00"
    return prefix + os.urandom(max(0, size - len(prefix)))
