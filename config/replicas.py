"""Health and lag of the read replicas, watched by a background thread in each process.

The router hands out only replicas this monitor has seen healthy: a replica starts ``unknown``
(no reads) until its first check, so a dead one is never handed out on trust. Each check opens (or
reuses) a connection of its own with a short connect timeout and asks the replica itself whether it
is still in recovery and how far its replay is behind:

- ``down``: the check failed (or a request lost its connection to it); no reads and no checks for
  ``REPLICA_COOLDOWN_SECONDS``, then the next check decides.
- ``promoted``: not in recovery any more, so it no longer follows the primary; no reads.
- ``lagging``: replay is more than ``REPLICA_MAX_LAG_SECONDS`` behind, or by an unknown amount.
- ``healthy``: reads may go there.

The thread starts on first use and again in a forked child (a prefork server or Celery worker
forks after import): the child sees a new pid, forgets the parent's states and connections (psycopg
never closes a connection in a process other than its creator) and checks afresh. The first routed
reads of a process wait for that first check, up to ``REPLICA_FIRST_CHECK_WAIT_SECONDS`` in all
(a reachable replica answers in milliseconds and a refused connection fails at once; only an
unanswering host takes that long): without it every read until the check answers would go to the
primary only because no replica had been checked yet. After that requests never wait for a check.
Reads served per alias are counted in this process for the ops view.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

HEALTHY, LAGGING, PROMOTED, DOWN, UNKNOWN = "healthy", "lagging", "promoted", "down", "unknown"

#: libpq's smallest connect timeout; the check runs in the monitor thread, never in a request.
CHECK_CONNECT_TIMEOUT_SECONDS = 2
CHECK_STATEMENT_TIMEOUT_MS = 2000

# Lag is 0 when everything received is replayed (an idle primary sends nothing, so the age of the
# last replayed transaction says nothing then); otherwise the age of the last replayed commit.
# NULL when not in recovery, or when the replica is behind by an amount it cannot tell.
LAG_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8
       END
"""


@dataclass
class ReplicaStatus:
    alias: str
    state: str = UNKNOWN
    lag_seconds: float | None = None
    checked_at: float | None = None  # time.time() of the last check
    down_until: float = 0.0  # time.monotonic() when a down replica may be checked again
    error: str = ""


class ReplicaMonitor:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._statuses: dict[str, ReplicaStatus] = {}
        self._connections: dict[str, psycopg.Connection] = {}
        self._reads: Counter[str] = Counter()
        self._first_check = threading.Event()
        self._first_check_deadline = 0.0  # time.monotonic() after which nobody waits for it

    # --- used by the router on every read ---------------------------------------------------
    def readable_aliases(self) -> list[str]:
        """The replicas that may serve a read now (starting the monitor on first use)."""
        self.ensure_running()
        return [alias for alias, status in self._statuses.items() if status.state == HEALTHY]

    def count_read(self, alias: str) -> None:
        with self._lock:
            self._reads[alias] += 1

    def mark_down(self, alias: str, reason: str) -> None:
        """Take ``alias`` out of rotation for the cool-down; the router stops handing it out now."""
        status = self._statuses.get(alias)
        if status is None:
            return
        if status.state != DOWN:
            logger.warning("Read replica %s is down: %s", alias, reason)
        status.state, status.lag_seconds, status.error = DOWN, None, reason
        status.down_until = time.monotonic() + settings.REPLICA_COOLDOWN_SECONDS

    # --- the background thread --------------------------------------------------------------
    def ensure_running(self) -> None:
        """Start the thread if this process has none; wait (bounded) for its first check."""
        pid = os.getpid()
        if not self._running_in(pid):
            with self._lock:
                if not self._running_in(pid):
                    self._adopt_process(pid)
                    self._thread = threading.Thread(
                        target=self._run,
                        args=(pid, self._first_check),
                        name="replica-monitor",
                        daemon=True,
                    )
                    self._thread.start()
        first_check = self._first_check
        if not first_check.is_set():
            first_check.wait(max(0.0, self._first_check_deadline - time.monotonic()))

    def _running_in(self, pid: int) -> bool:
        return self._pid == pid and self._thread is not None and self._thread.is_alive()

    def check_now(self) -> None:
        """Check every replica in the calling thread (for a one-off process such as a command)."""
        with self._lock:
            self._adopt_process(os.getpid())
            first_check = self._first_check
        self.check_all()
        first_check.set()

    def _renew_lock_in_child(self) -> None:
        # A lock held by another thread at fork time would stay held forever in the child.
        self._lock = threading.Lock()

    def _adopt_process(self, pid: int) -> None:
        if self._pid != pid:  # first use, or a child after fork: trust nothing inherited
            self._statuses = {
                alias: ReplicaStatus(alias) for alias in settings.READ_REPLICA_ALIASES
            }
            self._connections = {}
            self._reads = Counter()
            self._first_check = threading.Event()
            self._first_check_deadline = (
                time.monotonic() + settings.REPLICA_FIRST_CHECK_WAIT_SECONDS
            )
            self._pid = pid

    def _run(self, pid: int, first_check: threading.Event) -> None:
        while self._pid == pid:
            try:
                self.check_all()
            except Exception:  # a bug here must not stop the checks: states would freeze
                logger.exception("Read replica check failed")
            first_check.set()  # whatever the check found, the states now say it
            time.sleep(settings.REPLICA_HEALTH_INTERVAL_SECONDS)

    def check_all(self) -> None:
        for alias in list(self._statuses):
            self.check(alias)

    def check(self, alias: str) -> None:
        status = self._statuses[alias]
        if status.state == DOWN and time.monotonic() < status.down_until:
            return
        try:
            in_recovery, lag = self._query(alias)
        except psycopg.Error as error:
            self._drop_connection(alias)
            self.mark_down(alias, str(error).strip() or type(error).__name__)
            return
        finally:
            status.checked_at = time.time()
        max_lag = settings.REPLICA_MAX_LAG_SECONDS
        if not in_recovery:
            state = PROMOTED
        elif lag is None or lag > max_lag:
            state = LAGGING
        else:
            state = HEALTHY
        if state != status.state and state != HEALTHY:
            logger.warning("Read replica %s is %s (lag %s s)", alias, state, lag)
        if state == HEALTHY and status.state == DOWN:
            logger.info("Read replica %s is back", alias)
        status.state, status.lag_seconds, status.error = state, lag, ""

    def _query(self, alias: str) -> tuple[bool, float | None]:
        conn = self._connections.get(alias)
        if conn is None or conn.closed:
            conn = psycopg.connect(**_check_connection_params(alias))
            conn.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                (str(CHECK_STATEMENT_TIMEOUT_MS),),
            )
            self._connections[alias] = conn
        row = conn.execute(LAG_SQL).fetchone()
        return bool(row[0]), None if row[1] is None else float(row[1])

    def _drop_connection(self, alias: str) -> None:
        conn = self._connections.pop(alias, None)
        if conn is not None:
            conn.close()

    # --- the ops view -----------------------------------------------------------------------
    def snapshot(self) -> list[dict[str, Any]]:
        """The primary and each replica: state, lag and share of this process's routed reads."""
        with self._lock:
            reads = dict(self._reads)
            statuses = list(self._statuses.values())
        total = sum(reads.values())
        primary = ReplicaStatus("default", state="primary", lag_seconds=0.0)
        rows = []
        for status in [primary, *statuses]:
            db = settings.DATABASES[status.alias]
            rows.append(
                {
                    "alias": status.alias,
                    "host": f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}",
                    "state": status.state,
                    "lag_seconds": status.lag_seconds,
                    "checked_at": status.checked_at,
                    "error": status.error,
                    "reads": reads.get(status.alias, 0),
                    "read_share": reads.get(status.alias, 0) / total if total else 0.0,
                }
            )
        return rows


def _check_connection_params(alias: str) -> dict[str, Any]:
    """Django's own connection parameters for ``alias``, minus its adapters, plus short timeouts."""
    params = connections[alias].get_connection_params()
    for django_only in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(django_only, None)
    params["connect_timeout"] = CHECK_CONNECT_TIMEOUT_SECONDS
    params["autocommit"] = True
    return params


monitor = ReplicaMonitor()
os.register_at_fork(after_in_child=monitor._renew_lock_in_child)


def replica_metrics() -> list:
    """Scrape-time gauges of the replicas (``metrics.collectors.add_source``): lag and up."""
    from prometheus_client.core import GaugeMetricFamily

    lag = GaugeMetricFamily(
        "ils_replica_lag_seconds", "Replication lag of each read replica.", labels=["replica"]
    )
    up = GaugeMetricFamily(
        "ils_replica_up", "1 while the replica serves reads.", labels=["replica"]
    )
    for row in monitor.snapshot()[1:]:  # the first row is the primary
        up.add_metric([row["alias"]], 1.0 if row["state"] == HEALTHY else 0.0)
        if row["lag_seconds"] is not None:
            lag.add_metric([row["alias"]], row["lag_seconds"])
    return [lag, up]
