"""Receiving an upload: streamed to a temporary file, counted, hashed and sniffed on the way.

``CountingUploadHandler`` goes first in the request's upload-handler chain (Django's documented
extension point), before Django's ``TemporaryFileUploadHandler``: it sees every chunk, adds it to
the size and the sha256, keeps the first ``HEAD_BYTES`` for type detection, and passes the chunk
on. The moment the size passes the caller's allowance (the plan's ``max_file_bytes``, or what is
left of ``storage_bytes``) it raises the refusal (413 ``quota_exceeded`` / 403 ``quota_exceeded``),
which DRF answers in the error shape: the rest of the body is never stored. Nothing is held in
memory but one chunk and the head.
"""

from __future__ import annotations

import hashlib

from django.core.files.uploadhandler import FileUploadHandler, TemporaryFileUploadHandler

from storage.detection import HEAD_BYTES
from tenants.exceptions import TenantsError


class CountingUploadHandler(FileUploadHandler):
    def __init__(self, request, *, allowance: int, refusal: TenantsError) -> None:
        super().__init__(request)
        self.allowance = allowance
        self.refusal = refusal
        self.size = 0
        self.files = 0
        self._hash = hashlib.sha256()
        self.head = b""

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.files += 1

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.size += len(raw_data)
        if self.size > self.allowance:
            raise self.refusal
        self._hash.update(raw_data)
        if len(self.head) < HEAD_BYTES:
            self.head += raw_data[: HEAD_BYTES - len(self.head)]
        return raw_data

    def file_complete(self, file_size: int):
        return None  # the temporary file handler after this one makes the file

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def upload_handlers(request, *, allowance: int, refusal: TenantsError) -> list:
    """The chain for one upload: count and sniff, then stream to a temporary file on disk."""
    counter = CountingUploadHandler(request, allowance=allowance, refusal=refusal)
    return [counter, TemporaryFileUploadHandler(request)]
