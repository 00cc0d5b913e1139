"""Beat: django-celery-beat's database scheduler, sending only from the one beat that holds the
beat lock, so two beats started by mistake (or by a deploy overlap) send every task once.

The lock is a PostgreSQL session advisory lock held on a connection of the scheduler's own (not
Django's, which Django may close between ticks). It is "a lock with expiry" without a timer to
tune: it ends with its session, when the process dies (the socket closes at once) or when its
machine is gone (TCP keepalives end the session in about half a minute). A beat that cannot
confirm it still holds the lock (the connection broke) stops sending at once. A standby beat tries
every ``LOCK_RETRY_SECONDS`` and takes over when the lock is free.

On SQLite (embedded mode, one process by definition) there is nothing to lock: it always sends.
"""

from __future__ import annotations

import logging

import psycopg
from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

#: The advisory lock's key: "ilsbeat" read as a number (any constant nobody else uses).
BEAT_LOCK_KEY = int.from_bytes(b"ilsbeat", "big")
LOCK_RETRY_SECONDS = 1.0
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def _conninfo() -> str | None:
    database = settings.DATABASES["default"]
    if not database["ENGINE"].endswith("postgresql"):
        return None
    return psycopg.conninfo.make_conninfo(
        dbname=database["NAME"],
        host=database.get("HOST") or None,
        port=database.get("PORT") or None,
        user=database.get("USER") or None,
        password=database.get("PASSWORD") or None,
        connect_timeout=5,
        application_name="ils-beat-lock",
        **_KEEPALIVES,
    )


class BeatLock:
    """The beat lock of this process: ``held()`` acquires it if free, confirms it if held."""

    def __init__(self) -> None:
        self._conninfo = _conninfo()
        self._connection: psycopg.Connection | None = None
        self._holding = False

    def held(self) -> bool:
        if self._conninfo is None:
            return True
        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(self._conninfo, autocommit=True)
                self._holding = False
            if self._holding:
                self._connection.execute("SELECT 1")
            else:
                row = self._connection.execute(
                    "SELECT pg_try_advisory_lock(%s)", (BEAT_LOCK_KEY,)
                ).fetchone()
                self._holding = bool(row and row[0])
                if self._holding:
                    logger.info("This beat holds the beat lock and sends the schedule.")
        except psycopg.Error as error:
            if self._holding:
                logger.warning("Beat lock lost (%s): this beat stops sending.", error)
            self.release()
        return self._holding

    def release(self) -> None:
        if self._connection is not None:
            self._connection.close()  # ends the session, and with it the lock
        self._connection, self._holding = None, False


class SingleBeatScheduler(DatabaseScheduler):
    """``DatabaseScheduler`` whose ``tick`` (its public extension point, one due entry per call)
    runs only while this process holds the beat lock; otherwise it waits and tries again."""

    def __init__(self, *args, **kwargs) -> None:
        self.beat_lock = BeatLock()
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs) -> float:
        if not self.beat_lock.held():
            return LOCK_RETRY_SECONDS
        return super().tick(*args, **kwargs)

    def close(self) -> None:
        super().close()
        self.beat_lock.release()
