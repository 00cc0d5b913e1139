"""``ResilientRedisCache`` against real Redis servers of the test's own that it stops and restarts.

The suite's Redis is left alone: each test points ``CACHES`` at a redis-server it started (or at a
socket it controls) with ``override_settings``, whose ``setting_changed`` signal makes
``django.core.cache.caches`` build the new backend. A fault is a stopped process, not a patch.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from django.core.cache import cache, caches
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from redis import Redis

from degradation.cache import ResilientRedisCache, cache_status, outage_counters
from scripts.services import ServiceUnavailable, free_port, redis_server, wait_for_port
from tenants.cache import tenant_cache_invalidate
from tenants.context import tenant_scope
from tenants.models import Tenant
from tests.factories import TenantFactory, issue_key, key_client

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

URL = "/api/v1/tenant/"


def _resilient_caches(url: str, *, failures: int, cooldown: float) -> dict:
    """The tenant and global caches and the rate-limit counters (no fallback: they fail open) on
    ``url``."""
    redis = {
        "BACKEND": "degradation.cache.ResilientRedisCache",
        "LOCATION": url,
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": 0.2,
            "SOCKET_TIMEOUT": 0.2,
            "BREAKER_FAILURES": failures,
            "BREAKER_COOLDOWN": cooldown,
        },
    }
    return {
        "default": {**redis, "KEY_PREFIX": "ils", "KEY_FUNCTION": "tenants.cache.make_key"},
        "global": {**redis, "KEY_PREFIX": "ils-g"},
        "ratelimit": {
            **redis,
            "KEY_PREFIX": "ils-rl",
            "OPTIONS": {**redis["OPTIONS"], "FALLBACK": False, "REMEMBER_ADDED": True},
        },
    }


def _start_redis(port: int, data_dir: Path | None = None) -> subprocess.Popen:
    """A redis-server on ``port`` (the same port again after a stop); with ``data_dir`` it keeps
    its data across a restart (saved on SIGTERM, loaded at start)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable("redis-server not found on PATH")
    persistence = ["--save", "3600 1", "--dir", str(data_dir)] if data_dir else ["--save", ""]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--appendonly", "no", *persistence],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return process


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=10)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _counters(url: str) -> dict:
    return outage_counters()[url.removeprefix("redis://")]


@pytest.fixture
def tenant_and_client():
    tenant = TenantFactory(slug="acme", name="Acme Ltd")
    _, secret = issue_key(tenant)
    return tenant, key_client(secret)


def test_with_redis_stopped_the_api_answers_health_is_degraded_and_redis_is_used_once_back(
    tenant_and_client, client, caplog
):
    _, api = tenant_and_client
    with ExitStack() as first_server:
        url = first_server.enter_context(redis_server())
        with override_settings(CACHES=_resilient_caches(url, failures=2, cooldown=0)):
            assert isinstance(caches["default"], ResilientRedisCache)
            assert caches["default"]._server == url
            raw = Redis.from_url(url)
            assert api.get(URL).status_code == 200  # resolution and answer cached in Redis
            assert raw.dbsize() > 0
            assert client.get("/health/ready").json()["status"] == "ok"

            first_server.close()  # SIGTERM: the server process is gone
            with caplog.at_level(logging.WARNING, logger="degradation.cache"):
                down = api.get(URL)
                with CaptureQueriesContext(connection) as warm_on_fallback:
                    again = api.get(URL)
                ready = client.get("/health/ready")

            assert down.status_code == again.status_code == 200, down.content
            assert again.json()["name"] == "Acme Ltd"
            # The local cache serves it warm: no SQL but the `redis` breaker's own state-change
            # events (with a 0 s cool-down every call half-opens and re-opens it).
            assert [
                q["sql"]
                for q in warm_on_fallback.captured_queries
                if "degradation_breakerevent" not in q["sql"] and "SAVEPOINT" not in q["sql"]
            ] == []
            assert ready.status_code == 200
            assert ready.json() == {
                "status": "degraded",
                "checks": {"database": "ok", "cache": "degraded", "storage": "ok"},
                "down": [],
            }
            assert cache_status() == "degraded"
            outage = _counters(url)
            assert outage["degraded"] is True
            assert outage["outages"] == 1
            assert outage["errors"] >= 2
            assert outage["fallback_calls"] > 0
            unreachable = [
                r
                for r in caplog.records
                if r.name == "degradation.cache" and "unreachable" in r.getMessage()
            ]
            assert len(unreachable) == 1  # one line per outage, not one per call

            process = _start_redis(_port(url))  # a new server on the same port
            try:
                assert api.get(URL).status_code == 200
                assert cache_status() == "ok"
                assert _counters(url)["degraded"] is False
                assert Redis.from_url(url).dbsize() > 0  # written to the new server
                assert client.get("/health/ready").json()["status"] == "ok"
                caches["global"].set("after", "redis")
                assert Redis.from_url(url).exists(caches["global"].make_key("after")) == 1
            finally:
                _stop(process)


def test_invalidations_made_during_the_outage_hold_for_what_redis_kept(tenant_and_client, tmp_path):
    tenant, _ = tenant_and_client
    port = free_port()
    process = _start_redis(port, data_dir=tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        with override_settings(CACHES=_resilient_caches(url, failures=1, cooldown=0)):
            with tenant_scope(tenant):
                cache.set("answer", "before the outage")
            caches["global"].set("resolution", "before the outage")
            _stop(process)  # saves its data on the way down

            tenant_cache_invalidate(tenant)  # lands in the local cache only
            caches["global"].delete("resolution")
            assert cache_status() == "degraded"

            process = _start_redis(port, data_dir=tmp_path)
            assert Redis.from_url(url).dbsize() >= 3  # the old entries and generation are back

            with tenant_scope(Tenant.objects.get(pk=tenant.pk)):
                assert cache.get("answer") is None
            assert cache_status() == "ok"
            assert caches["global"].get("resolution") is None
    finally:
        _stop(process)


@contextmanager
def _silent_server() -> Iterator[tuple[int, list]]:
    """A port that accepts connections and never answers; yields it and the accepted sockets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []

    def accept_forever() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
        thread.join(timeout=5)


def test_while_the_breaker_is_open_calls_make_no_connection_attempt():
    with _silent_server() as (port, accepted):
        url = f"redis://127.0.0.1:{port}/0"
        with override_settings(CACHES=_resilient_caches(url, failures=2, cooldown=600)):
            store = caches["global"]
            assert store.get("a") is None  # attempt 1: read timeout, served locally
            assert len(accepted) == 1
            store.set("a", "local")  # attempt 2: the breaker opens
            assert len(accepted) == 2

            for n in range(50):
                store.set(f"k{n}", n)
                assert store.get(f"k{n}") == n
            assert store.get("a") == "local"
            assert store.get_many(["k1", "k2"]) == {"k1": 1, "k2": 2}
            assert store.incr("k3") == 4

            assert len(accepted) == 2  # 103 calls later, still two connection attempts
            assert cache_status() == "degraded"
            assert _counters(url)["errors"] == 2


def test_cache_status_is_ok_for_other_backends(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert cache_status() == "ok"
