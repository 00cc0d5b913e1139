"""The storages files live in, and the one way the request path and jobs call them.

Every storage call of the files API, its services and its jobs goes through ``guarded``: through
the ``storage`` circuit breaker (state shared across processes), so that while a storage is down
calls fail fast with 503 ``dependency_unavailable`` and ``Retry-After`` instead of each waiting for its own
timeout; a failing call is a 503 ``storage_unavailable`` (also with ``Retry-After``), never a 500.
``migrate_storage`` does not use it (``storage.transfer`` says why).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from django.core.files.storage import InvalidStorageError, Storage, storages

from degradation.breakers import CircuitOpen, breaker
from storage.exceptions import StorageUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")
BREAKER = "storage"


def backend_named(name: str) -> Storage:
    """The ``STORAGES`` entry ``name``; 503 when it is not configured here (any more)."""
    try:
        return storages[name]
    except InvalidStorageError:
        raise StorageUnavailable(details={"storage": name}) from None


def guarded(func: Callable[..., T], *args, **kwargs) -> T:
    """``func(*args, **kwargs)``, a call to a storage, through the ``storage`` breaker."""
    target = breaker(BREAKER)
    try:
        return target.call(func, *args, **kwargs)
    except CircuitOpen:
        raise
    except Exception as error:
        logger.warning("storage call %s failed: %r", getattr(func, "__name__", func), error)
        raise StorageUnavailable(wait=max(1, round(target.reset_seconds))) from error


def ensure_available() -> None:
    """Raise ``CircuitOpen`` (503, ``Retry-After``) while the storage breaker is open: for what
    needs no call of its own (a presigned link is signed locally) but would lead to one."""
    breaker(BREAKER).before_call()
