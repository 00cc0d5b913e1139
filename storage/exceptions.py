"""Errors of the storage app. Those a client can see are ``tenants`` errors (one error shape)."""

from __future__ import annotations

from rest_framework import status

from tenants.exceptions import RetryLater, TenantsError


class StorageError(TenantsError):
    """Root error of the storage app."""

    default_code = "storage_error"
    default_detail = "The file could not be handled."


class UnsupportedFileType(StorageError):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_code = "unsupported_file_type"
    default_detail = "Files of this type are not accepted."


class StorageUnavailable(StorageError, RetryLater):
    """A file's storage is not configured here (any more), or does not answer (``Retry-After``)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "storage_unavailable"
    default_detail = "The storage holding this file is unavailable. Retry later."
    default_wait = 30
