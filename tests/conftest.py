"""Test harness: real PostgreSQL and Redis (started by ``scripts/services.py`` under ``make test``).

With ``REQUIRE_SERVICES=1`` (CI) the run fails at once unless the database is PostgreSQL and the
cache is Redis; otherwise tests marked ``postgres`` or ``redis`` are skipped when theirs is missing.
"""

from __future__ import annotations

import os
import types
from contextlib import suppress

import pytest
from django.conf import settings
from django.core.cache import cache, caches
from django.db import connection
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework.test import APIClient

from degradation.breakers.storage import KEY_PREFIX as BREAKER_KEY_PREFIX
from tenants import resolution
from tenants.cache import clear_local_answers
from tenants.limits import api_calls
from tenants.mirror import global_mirror

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def _on_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def _on_redis() -> bool:
    backend = settings.CACHES["default"]["BACKEND"]
    return backend.startswith("django_redis") or backend == "degradation.cache.ResilientRedisCache"


def pytest_sessionstart(session):
    if REQUIRE_SERVICES and not (_on_postgres() and _on_redis()):
        pytest.exit(
            "REQUIRE_SERVICES=1 but the tests are not on PostgreSQL and Redis "
            f"(DATABASE_URL set: {bool(os.environ.get('DATABASE_URL'))}, "
            f"REDIS_URL set: {bool(os.environ.get('REDIS_URL'))}). Run them with `make test`.",
            returncode=3,
        )


def pytest_runtest_setup(item):
    for marker, available in (("postgres", _on_postgres), ("redis", _on_redis)):
        if item.get_closest_marker(marker) and not available():
            pytest.skip(f"needs {marker}; run with `make test`")


def _clear_breaker_state() -> None:
    """The breakers' shared state lives in the suite's Redis beside the cache, not in it."""
    if settings.CIRCUIT_BREAKER_REDIS_URL:
        client = Redis.from_url(settings.CIRCUIT_BREAKER_REDIS_URL, socket_timeout=1)
        with client, suppress(RedisConnectionError):
            stale = list(client.scan_iter(match=f"{BREAKER_KEY_PREFIX}*"))
            if stale:
                client.delete(*stale)


def _clear_caches() -> None:
    cache.clear()
    caches["global"].clear()
    resolution.clear_process_memory()
    clear_local_answers()
    api_calls.forget_held_back()
    global_mirror.clear()
    caches["flags"].clear()
    with suppress(RedisConnectionError):  # the counters have no fallback while Redis is stopped
        caches["ratelimit"].clear()
    _clear_breaker_state()


@pytest.fixture(autouse=True)
def _clean_cache():
    """Cached resolutions, flags, rate-limit counters and shared breaker states must not outlive
    the test that made them."""
    _clear_caches()
    yield
    _clear_caches()


@pytest.fixture(autouse=True)
def _metrics_without_their_threads(settings):
    """The flush threads of the query monitor and the per-tenant usage would write outside the
    test's transaction: tests flush by hand (``store.flush()``, ``usage.table.flush()``)."""
    settings.QUERY_MONITOR_FLUSH_SECONDS = 0
    settings.TENANT_METRICS_FLUSH_SECONDS = 0


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Factories hash a password per user; the production hasher is slow on purpose."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def db_vendor() -> str:
    return connection.vendor


class PinnedClock:
    """django-ratelimit's clock, pinned: windows never end mid-test; move ``now`` to end one."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def ratelimit_clock(monkeypatch) -> PinnedClock:
    pinned = PinnedClock(1_800_000_000.0)
    monkeypatch.setattr("django_ratelimit.core.time", types.SimpleNamespace(time=pinned.time))
    return pinned


@pytest.fixture(scope="session", autouse=True)
def _files_in_a_temporary_folder(tmp_path_factory):
    """Tenants' files on local disk go to a folder of this run, never into var/."""
    from django.test import override_settings

    location = tmp_path_factory.mktemp("files")
    storages = {
        **settings.STORAGES,
        "local": {**settings.STORAGES["local"], "OPTIONS": {"location": location}},
    }
    with override_settings(STORAGES=storages):
        yield
