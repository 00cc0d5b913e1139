"""Where a breaker keeps its state: in this process, or in the cache Redis shared by all processes.

Both are pybreaker ``CircuitBreakerStorage`` subclasses (its property interface: ``state``,
``counter``, ``opened_at``...), plus two methods pybreaker lacks and the breaker relies on:
``snapshot()`` reads everything in one round trip, and ``transition()`` changes the state
atomically and says whether this caller made the change (so N processes that see the threshold
together record one event, not N).

``SharedRedisStorage`` never raises because Redis is down, at construction or later: it connects
lazily, keeps a per-process mirror (a ``MemoryStateStorage``) and serves from it while Redis is
unreachable, skipping Redis for ``retry_seconds`` after an error so calls never wait on it twice
in a row. When Redis answers again it resyncs: a state this process changed during the outage is
pushed to Redis unless Redis has changed since; otherwise Redis wins. pybreaker's own
``CircuitRedisStorage`` is not used because it raises when Redis is down at construction.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pybreaker
import redis

logger = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
KEY_PREFIX = "ils:breaker:"


@dataclass(frozen=True)
class Snapshot:
    """A breaker's state at one moment; times are Unix seconds (shared across machines)."""

    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    changed_at: float = 0.0
    forced: bool = False


class MemoryStateStorage(pybreaker.CircuitBreakerStorage):
    """State in this process only (the ``redis`` breaker, embedded mode, and Redis outages)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._lock = threading.Lock()
        self._snap = Snapshot()
        self._success = 0
        self.dirty = False  # changed while the shared store was unreachable

    def snapshot(self) -> Snapshot:
        return self._snap

    def load(self, snap: Snapshot) -> None:
        with self._lock:
            self._snap, self.dirty = snap, False

    def transition(
        self, to: str, *, expect: str | None = None, force: bool = False, now: float | None = None
    ) -> str | None:
        """Set ``to``; return the previous state, or ``None`` when nothing changed."""
        now = time.time() if now is None else now
        with self._lock:
            old = self._snap.state
            if (expect is not None and old != expect) or (old == to and not force):
                return None
            self._snap = _moved(self._snap, to, now, force)
            self.dirty = True
            return old

    def add_failure(self) -> int:
        with self._lock:
            self._snap = replace(self._snap, failures=self._snap.failures + 1)
            self.dirty = True
            return self._snap.failures

    # pybreaker's storage interface
    @property
    def state(self) -> str:
        return self._snap.state

    @state.setter
    def state(self, state: str) -> None:
        self.transition(state, force=True)

    def increment_counter(self) -> None:
        self.add_failure()

    def reset_counter(self) -> None:
        with self._lock:
            self._snap = replace(self._snap, failures=0)

    def increment_success_counter(self) -> None:
        self._success += 1

    def reset_success_counter(self) -> None:
        self._success = 0

    @property
    def counter(self) -> int:
        return self._snap.failures

    @property
    def success_counter(self) -> int:
        return self._success

    @property
    def opened_at(self) -> datetime | None:
        opened = self._snap.opened_at
        return datetime.fromtimestamp(opened, UTC) if opened else None

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        with self._lock:
            self._snap = replace(self._snap, opened_at=value.timestamp())


def _moved(snap: Snapshot, to: str, now: float, force: bool) -> Snapshot:
    return Snapshot(
        state=to,
        failures=0 if to == CLOSED else snap.failures,
        opened_at=now if to == OPEN else snap.opened_at,
        changed_at=now,
        forced=force and to == OPEN,
    )


# KEYS[1] = hash; ARGV = to, expect ('' = any), now, force ('1'/'0'). Returns the old state or nil.
_TRANSITION = """
local old = redis.call('HGET', KEYS[1], 'state') or 'closed'
if (ARGV[2] ~= '' and old ~= ARGV[2]) or (old == ARGV[1] and ARGV[4] ~= '1') then return false end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'changed_at', ARGV[3], 'forced', '0')
if ARGV[1] == 'open' then
  redis.call('HSET', KEYS[1], 'opened_at', ARGV[3], 'forced', ARGV[4])
elseif ARGV[1] == 'closed' then
  redis.call('HSET', KEYS[1], 'failures', 0)
end
return old
"""


class SharedRedisStorage(MemoryStateStorage):
    """State in a Redis hash ``ils:breaker:<name>`` with a per-process fallback (see module doc)."""

    def __init__(self, name: str, url: str, *, timeout: float, retry_seconds: float) -> None:
        super().__init__(name)
        self.url, self.timeout, self.retry_seconds = url, timeout, retry_seconds
        self.key = f"{KEY_PREFIX}{name}"
        self._client: redis.Redis | None = None
        self._down_until = 0.0
        self._was_down = False

    @property
    def client(self) -> redis.Redis:
        if self._client is None:  # from_url connects lazily: construction never touches Redis
            self._client = redis.Redis.from_url(
                self.url,
                socket_connect_timeout=self.timeout,
                socket_timeout=self.timeout,
                health_check_interval=0,
            )
        return self._client

    @property
    def shared(self) -> bool:
        """True unless this process is serving the state from its own memory (Redis down)."""
        return time.monotonic() >= self._down_until

    def _redis(self, operation):
        """Run ``operation(client)``; ``None`` (after noting the outage) when Redis is down."""
        if not self.shared:
            return None
        try:
            if self._was_down:
                self._resync()
            return operation(self.client)
        except REDIS_DOWN as error:
            self._down_until = time.monotonic() + self.retry_seconds
            if not self._was_down:
                logger.warning(
                    "Breaker %s: state store unreachable (%s); using this process's state",
                    self.name,
                    error,
                )
            self._was_down = True
            return None

    def _resync(self) -> None:
        remote = _parse(self.client.hgetall(self.key))
        local = super().snapshot()
        if self.dirty and local.changed_at >= remote.changed_at:
            self.client.hset(self.key, mapping=_fields(local))
        else:
            self.load(remote)
        self._was_down, self.dirty = False, False
        logger.warning("Breaker %s: state store is back; state resynced", self.name)

    def snapshot(self) -> Snapshot:
        raw = self._redis(lambda client: client.hgetall(self.key))
        if raw is None:
            return super().snapshot()
        snap = _parse(raw)
        self.load(snap)
        return snap

    def transition(
        self, to: str, *, expect: str | None = None, force: bool = False, now: float | None = None
    ) -> str | None:
        now = time.time() if now is None else now
        old = self._redis(
            lambda client: (
                client.eval(
                    _TRANSITION, 1, self.key, to, expect or "", repr(now), "1" if force else "0"
                )
                or b""
            )
        )
        if old is None:  # Redis down: decide in this process
            return super().transition(to, expect=expect, force=force, now=now)
        if not old:
            return None
        self.load(_moved(super().snapshot(), to, now, force))
        return old.decode()

    def add_failure(self) -> int:
        count = self._redis(lambda client: client.hincrby(self.key, "failures", 1))
        if count is None:
            return super().add_failure()
        with self._lock:
            self._snap = replace(self._snap, failures=int(count))
        return int(count)

    def reset_counter(self) -> None:
        super().reset_counter()
        self._redis(lambda client: client.hset(self.key, "failures", 0))


def _parse(raw: dict[bytes, bytes]) -> Snapshot:
    if not raw:
        return Snapshot()
    get = {key.decode(): value.decode() for key, value in raw.items()}.get
    return Snapshot(
        state=get("state", CLOSED),
        failures=int(get("failures", "0")),
        opened_at=float(get("opened_at", "0")),
        changed_at=float(get("changed_at", "0")),
        forced=get("forced", "0") == "1",
    )


def _fields(snap: Snapshot) -> dict[str, str]:
    return {
        "state": snap.state,
        "failures": str(snap.failures),
        "opened_at": repr(snap.opened_at),
        "changed_at": repr(snap.changed_at),
        "forced": "1" if snap.forced else "0",
    }
