"""A django-redis cache that keeps answering while Redis is down.

``ResilientRedisCache`` is django-redis's ``RedisCache`` with each Django cache operation guarded:
when Redis refuses or times out, the operation is served by a per-process ``LocMemCache`` (reads
and writes alike), and after ``failures`` consecutive connection errors the ``redis`` circuit breaker
(``degradation.breakers``) opens and skips Redis for ``reset_seconds``, so requests stop waiting
for Redis timeouts. After that a trial call tries Redis again; when it answers, Redis is used again.
The ``redis`` breaker's state is per process: it cannot live in the Redis it guards. Its
thresholds are ``CIRCUIT_BREAKERS["redis"]``; the cache ``OPTIONS`` ``BREAKER_FAILURES`` and
``BREAKER_COOLDOWN`` override them when given.

Invariant (no stale reads after the outage): the keys this process wrote or deleted while Redis was
down are deleted from Redis when it returns, and the local cache is emptied. An invalidation made
during the outage (a deleted resolution, a bumped tenant generation) therefore also holds for what
Redis kept from before it. Past ``FALLBACK_MAX_DIRTY_KEYS`` keys this is logged, not guaranteed:
those keys stay stale until their TTL.

The outage is visible: one warning when it starts and one line when it ends (not one per call),
counters (``outage_counters()``) and ``cache_status()`` for the readiness probe.

Other django-redis methods (``ttl``, ``lock``, ``keys``...) are not guarded and raise while Redis
is down.

Invariant (one alias never empties another): ``clear()`` deletes this alias's own keys, those under
``<KEY_PREFIX>:<version>:``, not the whole Redis database as django-redis's ``FLUSHDB`` would. The
cache, the flag cache, the rate-limit and API-call counters and the breakers' state share one
database by default; emptying the cache must not lose the API calls counted since the last write
to the database, reopen rate windows or reset breakers. The default client is
``PrefixClearingClient``; a ``KEY_FUNCTION`` must keep Django's ``<prefix>:<version>:`` start.

With ``OPTIONS["REMEMBER_ADDED"] = True`` (the rate-limit counters' alias), ``add()`` answers
``False`` without a round trip for a key this process has already seen exist, until the timeout of
that ``add`` has passed. django-ratelimit counts with ``add`` then ``incr``: remembering halves its
round trips. It is right for keys whose name changes with every window and whose timeout outlives
the window, as django-ratelimit makes them (the window's end is in the name, the timeout is the
period plus a margin): while the name is in use the key exists. A remembered key that vanished
anyway (evicted, Redis restarted, deleted elsewhere) makes the next ``incr`` raise ``ValueError``,
which forgets it, so one request pays for it; deletes and ``clear()`` through this alias forget
at once.

With ``OPTIONS["FALLBACK"] = False`` there is no local cache: while Redis is down (or its breaker
is open) every operation raises ``CacheUnavailable``, a ``redis`` ``ConnectionError``, at once. For
data that must not be counted per process without the caller knowing, such as rate-limit counters
(``tenants.limits.ratelimits`` then applies ``RATELIMIT_FAIL_OPEN``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache
from django_redis.cache import RedisCache
from django_redis.client import DefaultClient
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from degradation.breakers import Breaker, Snapshot, breaker

logger = logging.getLogger(__name__)

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, TimeoutError)


class CacheUnavailable(RedisConnectionError):
    """Redis is down or its breaker is open, and the cache has no local fallback."""


_DELETE_CHUNK = 1000


@dataclass
class RedisOutage:
    """What this process knows about one Redis location: breaker, counters, keys written locally."""

    location: str
    max_dirty_keys: int
    degraded: bool = False
    since: float = 0.0
    errors: int = 0
    fallback_calls: int = 0
    outages: int = 0
    dirty: set[str] = field(default_factory=set)
    dirty_overflow: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def breaker(self) -> Breaker:
        return breaker("redis")

    def failed(self, error: Exception) -> None:
        self.breaker.on_failure(error)
        with self.lock:
            self.errors += 1
            if self.degraded:
                return
            self.degraded, self.since = True, time.monotonic()
            self.outages += 1
        logger.warning(
            "Redis cache %s unreachable (%s: %s); serving from the local memory cache",
            self.location,
            type(error).__name__,
            error,
        )

    def served_locally(self, written: list[str]) -> None:
        with self.lock:
            self.fallback_calls += 1
            for key in written:
                if len(self.dirty) >= self.max_dirty_keys:
                    self.dirty_overflow = True
                    break
                self.dirty.add(key)

    def dirty_keys(self) -> list[str]:
        with self.lock:
            return list(self.dirty)

    def recovered(self, deleted: list[str]) -> bool:
        """End the outage once the keys written locally are deleted from Redis; True if it ended."""
        self.breaker.on_success()
        with self.lock:
            if not self.degraded:
                return False
            self.dirty.difference_update(deleted)
            overflow = self.dirty_overflow
            self.degraded, self.dirty_overflow = False, False
            seconds = time.monotonic() - self.since
        logger.warning(
            "Redis cache %s is back after %.1fs; dropped %d keys written during the outage%s",
            self.location,
            seconds,
            len(deleted),
            " (more were written: they stay stale until their TTL)" if overflow else "",
        )
        return True

    def counters(self) -> dict[str, Any]:
        with self.lock:
            return {
                "degraded": self.degraded,
                "errors": self.errors,
                "fallback_calls": self.fallback_calls,
                "outages": self.outages,
            }


_outages: dict[str, RedisOutage] = {}
_outages_lock = threading.Lock()
_breaker_server: list[str] = []  # the Redis location the `redis` breaker was last set up for


def _delete_in_chunks(client, keys: Iterable) -> None:
    """``DEL`` the keys ``_DELETE_CHUNK`` at a time (one command per chunk, never one huge one)."""
    keys = iter(keys)
    while chunk := list(itertools.islice(keys, _DELETE_CHUNK)):
        client.delete(*chunk)


_GLOB_SPECIALS = str.maketrans({character: f"\\{character}" for character in "*?[]\\"})


class PrefixClearingClient(DefaultClient):
    """django-redis's client, but ``clear()`` deletes only this cache's keys (see module doc)."""

    def clear(self, client=None) -> None:
        client = client or self.get_client(write=True)
        pattern = f"{self._backend.key_prefix.translate(_GLOB_SPECIALS)}:[0-9]*:*"
        try:
            _delete_in_chunks(client, client.scan_iter(match=pattern, count=_DELETE_CHUNK))
        except REDIS_DOWN as error:  # RedisCache re-raises the cause, as for its own operations
            raise ConnectionInterrupted(connection=client) from error


class _SeenKeys:
    """Keys this process saw exist, each until a deadline (``REMEMBER_ADDED``, module docstring).

    Bounded: past ``_SEEN_MAX`` keys the expired ones are dropped, and if that is not enough, all
    of them (remembering is an optimisation; forgetting only costs round trips).
    """

    def __init__(self) -> None:
        self.deadlines: dict[str, float] = {}

    def exists(self, key: str) -> bool:
        return self.deadlines.get(key, 0.0) > time.monotonic()

    def remember(self, key: str, timeout: float | None) -> None:
        if timeout is None or timeout <= 0:
            return
        now = time.monotonic()
        if len(self.deadlines) >= _SEEN_MAX:
            live = {k: d for k, d in list(self.deadlines.items()) if d > now}
            self.deadlines = live if len(live) < _SEEN_MAX else {}
        self.deadlines[key] = now + timeout

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.deadlines.pop(key, None)

    def clear(self) -> None:
        self.deadlines = {}


_SEEN_MAX = 100_000


def _redis_breaker(server: str, failures: int | None, cooldown: float | None) -> None:
    """The shared ``redis`` breaker, set up afresh (quietly closed) when the cache moves to another
    Redis (tests do; a deployment has one). Every thread's backend instance shares it."""
    guard = breaker("redis")
    with _outages_lock:
        if _breaker_server != [server]:
            _breaker_server[:] = [server]
            config = settings.CIRCUIT_BREAKERS.get("redis", {})
            guard.configure(
                failures=failures if failures is not None else config.get("failures"),
                reset_seconds=cooldown if cooldown is not None else config.get("reset_seconds"),
            )
            guard.storage.load(Snapshot())


def _redacted(server: str) -> str:
    parts = urlsplit(server)
    return f"{parts.hostname}:{parts.port}{parts.path}" if parts.hostname else server


class ResilientRedisCache(RedisCache):
    """``RedisCache`` that falls back to a local memory cache while Redis is unreachable.

    Extra ``OPTIONS``: ``BREAKER_FAILURES`` and ``BREAKER_COOLDOWN`` (default: the ``redis``
    breaker's settings), ``FALLBACK`` (``True``; ``False`` raises ``CacheUnavailable`` instead),
    ``FALLBACK_MAX_ENTRIES`` (10000), ``FALLBACK_MAX_DIRTY_KEYS`` (100000). ``CLIENT_CLASS``
    defaults to ``PrefixClearingClient``.
    """

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS", {}))
        failures = options.pop("BREAKER_FAILURES", None)
        cooldown = options.pop("BREAKER_COOLDOWN", None)
        max_entries = options.pop("FALLBACK_MAX_ENTRIES", 10_000)
        max_dirty = options.pop("FALLBACK_MAX_DIRTY_KEYS", 100_000)
        self.falls_back = options.pop("FALLBACK", True)
        self._seen = _SeenKeys() if options.pop("REMEMBER_ADDED", False) else None
        options.setdefault("CLIENT_CLASS", f"{__name__}.PrefixClearingClient")
        super().__init__(server, {**params, "OPTIONS": options})
        location = _redacted(server)
        _redis_breaker(server, failures, cooldown)
        with _outages_lock:
            if server not in _outages:
                _outages[server] = RedisOutage(location, max_dirty)
            self.outage = _outages[server]
        # Same prefix, version and key function: the local cache holds the very keys Redis would.
        self._fallback = LocMemCache(
            f"resilient-fallback:{server}", {**params, "OPTIONS": {"MAX_ENTRIES": max_entries}}
        )

    def _call(self, name: str, *args, written: Iterable[str] = (), **kwargs) -> Any:
        if self.outage.breaker.allow():
            try:
                if self.outage.degraded:  # failed() always sets it: the usual path takes no lock
                    self._end_outage()
                return getattr(super(), name)(*args, **kwargs)
            except REDIS_DOWN as error:
                self.outage.failed(error)
                if not self.falls_back:
                    raise CacheUnavailable(
                        f"Redis {self.outage.location} is unreachable"
                    ) from error
        if not self.falls_back:
            raise CacheUnavailable(f"Redis {self.outage.location} is down (breaker open)")
        version = kwargs.get("version")
        # Made before taking the outage lock: the key function may read a generation through us.
        self.outage.served_locally([self._fallback.make_key(key, version) for key in written])
        return getattr(self._fallback, name)(*args, **kwargs)

    def _end_outage(self) -> None:
        """Before Redis serves again, delete from it the keys this process wrote locally meanwhile."""
        keys = self.outage.dirty_keys()
        client = self.client.get_client(write=True)
        client.ping()
        _delete_in_chunks(client, keys)
        if self.outage.recovered(keys):
            self._fallback.clear()

    def get(self, key, default=None, version=None):
        return self._call("get", key, default, version=version)

    def get_many(self, keys, version=None):
        return self._call("get_many", keys, version=version)

    def has_key(self, key, version=None):
        return self._call("has_key", key, version=version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("set", key, value, timeout, version=version, written=[key])

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        if self._seen is None:
            return self._call("add", key, value, timeout, version=version, written=[key])
        full_key = self.make_key(key, version=version)
        if self._seen.exists(full_key):
            return False
        added = self._call("add", key, value, timeout, version=version, written=[key])
        self._seen.remember(
            full_key, self.default_timeout if timeout is DEFAULT_TIMEOUT else timeout
        )
        return added

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("set_many", data, timeout, version=version, written=list(data))

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("touch", key, timeout, version=version, written=[key])

    def delete(self, key, version=None):
        self._forget([key], version)
        return self._call("delete", key, version=version, written=[key])

    def delete_many(self, keys, version=None):
        keys = list(keys)
        self._forget(keys, version)
        return self._call("delete_many", keys, version=version, written=keys)

    def incr(self, key, delta=1, version=None):
        try:
            return self._call("incr", key, delta, version=version, written=[key])
        except ValueError:  # no such key: if we remembered it, it is gone
            self._forget([key], version)
            raise

    def _forget(self, keys: list, version) -> None:
        if self._seen is not None:
            self._seen.forget(self.make_key(key, version=version) for key in keys)

    def decr(self, key, delta=1, version=None):
        return self._call("decr", key, delta, version=version, written=[key])

    def clear(self):
        """Deletes this alias's keys from Redis and empties the local cache (while Redis is down: the
        local cache only)."""
        self._fallback.clear()
        if self._seen is not None:
            self._seen.clear()
        return self._call("clear")


def cache_status(alias: str = "default") -> str:
    """``"degraded"`` while the cache serves from its local fallback, else ``"ok"``."""
    backend = caches[alias]
    if isinstance(backend, ResilientRedisCache) and backend.outage.degraded:
        return "degraded"
    return "ok"


def outage_counters() -> dict[str, dict[str, Any]]:
    """Per Redis location (password removed): degraded, errors, fallback_calls, outages."""
    with _outages_lock:
        outages = list(_outages.values())
    return {outage.location: outage.counters() for outage in outages}
