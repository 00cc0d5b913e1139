"""``global_mirror``: this process's copy of global entries that are read on every request and
change rarely (cached resolutions of keys, tenants, plans, slugs and memberships; tenant cache
generations), kept fresh by Redis pub/sub.

A warm request then finds its key, tenant, plan and generation in process memory: no round trip,
no unpickling. Every change to a mirrored entry is made through ``global_changed`` (the signals
that drop resolutions, ``tenant_cache_invalidate``), which writes Redis first and then publishes
the changed keys on ``<KEY_PREFIX>:mirror``; every process subscribes and drops its copies.

Invariant (as fresh as reading Redis on each request): before a request uses a copy, the process
drains its subscription without blocking (one ``poll`` of a socket, no round trip). Redis writes the
reply to a ``PUBLISH`` and the subscribers' copies of the message in the same pass of its event loop,
the publisher's first: so the publisher follows it with a ``PING`` (one more round trip, on writes
only), answered in a later pass, after every copy was written to its subscriber's socket. A change
whose ``changed`` returned is then seen by the next request of every process, as a read of Redis
would see it (unless a subscriber's socket buffer was full: a subscriber that far behind is being
read by nobody).
A copy is also never kept longer than ``GLOBAL_MIRROR_SECONDS`` (a safety net for a writer that
bypassed ``global_changed``, such as a hand-made ``DEL``), and a value read from Redis is not kept
when an invalidation arrived while it was being read (threads).

Invariant (fails safe): the mirror serves copies only while its subscription is confirmed and
healthy. The subscription has its own connection without retries, pinged every few seconds; when it
breaks (Redis down or restarted, the connection killed), every copy is dropped and requests read
Redis (or the cache's local fallback) until a new subscription is confirmed: a lost message can
never leave a stale copy. In a forked child the mirror starts empty. Without Redis (embedded mode:
the global cache is already process memory) there is no mirror and reads go to the cache.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django_redis import get_redis_connection
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

logger = logging.getLogger(__name__)

GLOBAL_ALIAS = "global"
#: How often the subscription proves it is alive (a PING on its connection).
_HEALTH_CHECK_SECONDS = 5
#: After a failed subscription, how long requests read Redis before trying again.
_RETRY_SECONDS = 2.0
_ENTRIES_MAX = 100_000


_location: list = [None, None]  # [the CACHES setting it was read from, the location]


def _redis_location() -> str | None:
    """The global cache's Redis, or ``None`` when it is not on Redis (read once per setting)."""
    caches_setting = settings.CACHES
    if _location[0] is not caches_setting:
        config = caches_setting.get(GLOBAL_ALIAS, {})
        on_redis = config.get("BACKEND", "").endswith(("RedisCache", "ResilientRedisCache"))
        _location[:] = [caches_setting, (config.get("LOCATION") or None) if on_redis else None]
    return _location[1]


class GlobalMirror:
    """See the module docstring. One per process; safe to share between threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[Any, float]] = {}
        self.epoch = 0  # counts invalidations: a read that spans one is not kept
        self.pid = 0
        self.pubsub = None
        self.location: str | None = None  # the Redis the subscription is on
        self.live = False
        self.retry_at = 0.0
        self.next_full_read = 0.0

    @property
    def channel(self) -> str:
        return f"{caches[GLOBAL_ALIAS].key_prefix}:mirror"

    # --- subscription ----------------------------------------------------------------------
    def _subscribe(self, location: str) -> None:
        options = settings.CACHES[GLOBAL_ALIAS].get("OPTIONS", {})
        client = Redis.from_url(
            location,
            socket_connect_timeout=options.get("SOCKET_CONNECT_TIMEOUT", 0.5),
            socket_timeout=options.get("SOCKET_TIMEOUT", 0.5),
            retry=Retry(NoBackoff(), 0),  # a broken connection must raise, never reconnect quietly
            health_check_interval=_HEALTH_CHECK_SECONDS,
        )
        pubsub = client.pubsub()
        pubsub.subscribe(self.channel)
        confirmed = pubsub.get_message(timeout=options.get("SOCKET_TIMEOUT", 0.5))
        if not confirmed or confirmed.get("type") != "subscribe":
            pubsub.close()
            raise ConnectionError("the mirror's subscription was not confirmed")
        self.pubsub, self.location, self.live = pubsub, location, True
        self.entries, self.epoch = {}, self.epoch + 1

    def _stop(self) -> None:
        """Unsubscribe and drop every copy; the next read may subscribe again."""
        if self.pubsub is not None:
            with suppress(RedisError, OSError):
                self.pubsub.close()
        self.pubsub, self.live = None, False
        self.entries, self.epoch = {}, self.epoch + 1

    def _broken(self, error: Exception) -> None:
        logger.warning(
            "Global mirror off (%s: %s); reading Redis until a new subscription is confirmed",
            type(error).__name__,
            error,
        )
        self._stop()
        self.retry_at = time.monotonic() + _RETRY_SECONDS

    def _usable(self) -> bool:
        """Subscribed (in this process) and drained; call with the lock held."""
        if self.pid != os.getpid():  # a forked child: nothing of the parent's is ours
            self.pid, self.pubsub, self.live, self.retry_at = os.getpid(), None, False, 0.0
            self.entries, self.epoch = {}, self.epoch + 1
        location = _redis_location()
        if self.live and location != self.location:  # the cache moved (tests do; deploys don't)
            self._stop()
        if not self.live:
            if location is None or time.monotonic() < self.retry_at:
                return False
            try:
                self._subscribe(location)
            except (RedisError, OSError) as error:
                self._broken(error)
                return False
        try:
            # A poll of the socket when nothing waits; every few seconds a full read, which also
            # sends the subscription's health-check PING (redis-py's health_check_interval).
            now = time.monotonic()
            if now >= self.next_full_read or self.pubsub.connection.can_read(timeout=0):
                self.next_full_read = now + _HEALTH_CHECK_SECONDS
                while (message := self.pubsub.get_message(timeout=0)) is not None:
                    if message.get("type") == "message":
                        self._drop(message["data"].decode().split("\n"))
        except (RedisError, OSError, ValueError) as error:
            self._broken(error)
            return False
        return True

    def _drop(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.entries.pop(key, None)
        self.epoch += 1

    # --- reads and writes -----------------------------------------------------------------
    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The entries of ``keys`` that exist: this process's copies when fresh, else read from
        the cache.

        The values are shared with every later caller in this process: a caller copies an object
        before it changes it.
        """
        store = caches[GLOBAL_ALIAS]
        with self.lock:
            if not self._usable():
                return store.get_many(keys)
            now = time.monotonic()
            kept = {k: e[0] for k in keys if (e := self.entries.get(k)) and e[1] > now}
            epoch = self.epoch
        missing = [key for key in keys if key not in kept]
        fetched = store.get_many(missing) if missing else {}
        if fetched:
            with self.lock:
                if self.epoch == epoch and self.live:
                    if len(self.entries) >= _ENTRIES_MAX:
                        self.entries = {}
                    until = time.monotonic() + settings.GLOBAL_MIRROR_SECONDS
                    self.entries.update({k: (v, until) for k, v in fetched.items()})
        return {**kept, **fetched}

    def changed(self, keys: list[str]) -> None:
        """Tell every process that ``keys`` changed (after the change is written to Redis)."""
        with self.lock:
            self._drop(keys)
        if not keys or _redis_location() is None:
            return
        try:
            redis = get_redis_connection(GLOBAL_ALIAS)
            redis.publish(self.channel, "\n".join(keys))
            redis.ping()  # answered after the copies reach the subscribers' sockets (see above)
        except (RedisError, OSError) as error:
            logger.warning(
                "Global mirror: could not announce %d changed keys (%s); other processes keep "
                "their copies for at most GLOBAL_MIRROR_SECONDS",
                len(keys),
                error,
            )

    def delete_many(self, keys: list[str]) -> None:
        """Delete ``keys`` from the global cache and from every process's copies."""
        caches[GLOBAL_ALIAS].delete_many(keys)
        self.changed(keys)

    def clear(self) -> None:
        """Drop every copy of this process and try a broken subscription again at once (tests)."""
        with self.lock:
            self.entries, self.epoch, self.retry_at = {}, self.epoch + 1, 0.0


global_mirror = GlobalMirror()
