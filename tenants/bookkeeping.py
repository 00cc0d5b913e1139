"""Bookkeeping writes: rows that no read of the request (or of its tenant's next requests) needs to
see at once, such as an API key's ``last_used_at``, the API-call count's durable row or a breaker's
event history.

Invariant: a write made inside ``bookkeeping_writes()`` never pins reads to the primary. The
read-your-writes router (``config.db_router``) asks ``in_bookkeeping()`` before it marks a unit of
work as having written, so keeping the books does not cost a tenant its read replicas. Only rows
whose readers accept a replica's lag belong here; a write the caller reads back stays outside.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_bookkeeping: ContextVar[bool] = ContextVar("ils_bookkeeping_writes", default=False)


@contextmanager
def bookkeeping_writes() -> Iterator[None]:
    """Writes in the block are bookkeeping: they do not pin the unit of work's reads."""
    token = _bookkeeping.set(True)
    try:
        yield
    finally:
        _bookkeeping.reset(token)


def in_bookkeeping() -> bool:
    return _bookkeeping.get()
