"""Circuit breakers against real dependencies made to fail (a TCP server the test controls, a
stopped Redis) and state shared between processes through the suite's Redis."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches
from django.test import override_settings
from redis import Redis

from degradation.breakers import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitOpen,
    UnknownBreaker,
    breaker,
    breaker_counters,
    reset_registry,
)
from degradation.models import BreakerEvent
from scripts.services import free_port
from tests.child_process import run_django
from tests.degradation.breaker_helpers import configure_breakers, counting_server, wait_until
from tests.degradation.test_resilient_cache import _resilient_caches, _start_redis, _stop

pytestmark = [pytest.mark.django_db, pytest.mark.redis]


@pytest.fixture(autouse=True)
def _fresh_breakers():
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def shared(settings):
    configure_breakers(
        settings,
        redis_url=django_settings.REDIS_URL,
        storage={"failures": 3, "reset_seconds": 0.5},
        email={"failures": 2, "reset_seconds": 600.0},
    )


def test_opens_after_the_threshold_fails_fast_without_connecting_then_half_opens_and_closes(shared):
    storage = breaker("storage")
    assert storage.storage.__class__.__name__ == "SharedRedisStorage"
    with counting_server() as dependency:
        for _ in range(2):
            with pytest.raises(ConnectionError):
                storage.call(dependency.call)
        assert storage.snapshot().state == CLOSED
        with pytest.raises(ConnectionError):
            storage.call(dependency.call)
        assert storage.snapshot().state == OPEN
        assert dependency.accepted == 3

        for _ in range(20):
            with pytest.raises(CircuitOpen) as refused:
                storage.call(dependency.call)
        assert dependency.accepted == 3  # 20 calls, no connection attempt
        assert refused.value.status_code == 503
        assert refused.value.details["breaker"] == "storage"
        assert refused.value.wait == 1
        assert storage.call(dependency.call, fallback=lambda error: "fallback") == "fallback"
        assert dependency.accepted == 3

        wait_until(lambda: storage.retry_after(storage.snapshot()) == 0)
        with pytest.raises(ConnectionError):  # the trial call fails: open again
            storage.call(dependency.call)
        assert dependency.accepted == 4
        assert storage.snapshot().state == OPEN

        dependency.healthy = True
        wait_until(lambda: storage.retry_after(storage.snapshot()) == 0)
        assert storage.call(dependency.call) == b"ok"
        assert dependency.accepted == 5
        assert storage.snapshot().state == CLOSED
        assert storage.snapshot().failures == 0

    transitions = list(
        BreakerEvent.objects.filter(breaker="storage")
        .order_by("id")
        .values_list("from_state", "to_state", "actor")
    )
    assert transitions == [
        (CLOSED, OPEN, None),
        (OPEN, HALF_OPEN, None),
        (HALF_OPEN, OPEN, None),
        (OPEN, HALF_OPEN, None),
        (HALF_OPEN, CLOSED, None),
    ]
    counters = breaker_counters()["storage"]
    assert counters["failures"] >= 4 and counters["rejected"] >= 20 and counters["to_open"] >= 2


def test_decorator_and_context_manager(shared):
    email = breaker("email")
    with counting_server() as dependency:

        @email.guard(fallback=lambda error: "queued for later")
        def send():
            return dependency.call()

        assert send() == "queued for later"  # failure 1, answered by the fallback
        with pytest.raises(ConnectionError), email.calling():
            dependency.call()  # failure 2: opens
        assert email.snapshot().state == OPEN
        with pytest.raises(CircuitOpen), email.calling():
            dependency.call()
        assert send() == "queued for later"
        assert dependency.accepted == 2


def test_non_system_errors_do_not_count(settings):
    configure_breakers(settings, redis_url="", webhooks={"failures": 1, "reset_seconds": 60})
    webhooks = breaker("webhooks")
    webhooks.pybreaker.add_excluded_exception(ValueError)
    with pytest.raises(ValueError):
        webhooks.call(int, "not a number")
    assert webhooks.snapshot().state == CLOSED


def test_unknown_breaker_name_raises():
    with pytest.raises(UnknownBreaker):
        breaker("nope")


_READ_STATE = """
import json
from degradation.breakers import breaker
b = breaker("storage")
print(json.dumps({"state": b.snapshot().state, "forced": b.snapshot().forced,
                  "shared": b.storage.shared}))
"""

_FAIL_EMAIL_TWICE = """
import json
from degradation.breakers import breaker
def down():
    raise ConnectionError("nothing there")
for _ in range(2):
    try:
        breaker("email").call(down)
    except ConnectionError:
        pass
print(json.dumps(breaker("email").snapshot().state))
"""


def test_two_processes_see_the_same_state(shared):
    breaker("storage").force("open")
    child = run_django(_READ_STATE, CIRCUIT_BREAKER_STORAGE_RESET_SECONDS="600")
    assert child == {"state": OPEN, "forced": True, "shared": True}

    breaker("storage").force("close")
    assert run_django(_READ_STATE)["state"] == CLOSED

    email = breaker("email")
    assert email.snapshot().state == CLOSED
    assert run_django(_FAIL_EMAIL_TWICE, CIRCUIT_BREAKER_EMAIL_FAILURES="2") == OPEN
    assert email.snapshot().state == OPEN  # opened by the other process
    with pytest.raises(CircuitOpen):
        email.call(lambda: pytest.fail("the dependency must not be called"))


def test_with_redis_stopped_breakers_work_per_process_and_resync(settings):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    process = _start_redis(port)
    configure_breakers(
        settings,
        redis_url=url,
        retry=0.05,
        storage={"failures": 1, "reset_seconds": 600},
        email={"failures": 1, "reset_seconds": 600},
    )
    try:
        breaker("storage").force("open")
        assert Redis.from_url(url).hget("ils:breaker:storage", "state") == b"open"
        _stop(process)

        assert breaker("storage").snapshot().state == OPEN  # last known state, from memory
        assert breaker("storage").storage.shared is False
        with pytest.raises(CircuitOpen):
            breaker("storage").call(lambda: pytest.fail("must not be called"))

        def down():
            raise ConnectionError("mail relay down")

        with pytest.raises(ConnectionError):
            breaker("email").call(down)
        assert breaker("email").snapshot().state == OPEN  # decided in this process
        with pytest.raises(CircuitOpen):
            breaker("email").call(down)

        process = _start_redis(port)  # empty: it kept nothing
        wait_until(lambda: breaker("email").storage.shared)
        assert breaker("email").snapshot().state == OPEN
        assert Redis.from_url(url).hget("ils:breaker:email", "state") == b"open"  # resynced
        breaker("email").force("close")
        assert Redis.from_url(url).hget("ils:breaker:email", "state") == b"closed"
    finally:
        _stop(process)


_START_WITH_REDIS_DOWN = """
import json, time
from django.core.cache import caches
from degradation.breakers import CircuitOpen, breaker
b = breaker("storage")
def down():
    raise ConnectionError("storage down")
outcomes = []
for _ in range(4):
    try:
        b.call(down)
    except CircuitOpen:
        outcomes.append("fast")
    except ConnectionError:
        outcomes.append("failed")
caches["global"].set("k", "v")
print(json.dumps({"outcomes": outcomes, "state": b.snapshot().state,
                  "shared": b.storage.shared, "cache": caches["global"].get("k")}))
"""


def test_start_up_with_redis_down_gives_per_process_breakers():
    dead = f"redis://127.0.0.1:{free_port()}/0"
    result = run_django(
        _START_WITH_REDIS_DOWN, REDIS_URL=dead, CIRCUIT_BREAKER_STORAGE_FAILURES="2"
    )
    assert result == {
        "outcomes": ["failed", "failed", "fast", "fast"],
        "state": OPEN,
        "shared": False,
        "cache": "v",
    }


def test_the_cache_backend_uses_the_process_local_redis_breaker():
    dead = f"redis://127.0.0.1:{free_port()}/0"
    caches_setting = _resilient_caches(dead, failures=2, cooldown=600)
    with override_settings(CACHES=caches_setting):
        store = caches["global"]
        assert store.get("a") is None  # served by the local fallback
        store.set("a", "local")
        assert breaker("redis").snapshot().state == OPEN
        assert store.get("a") == "local"
        with pytest.raises(CircuitOpen):
            breaker("redis").call(lambda: pytest.fail("must not be called"))
    event = BreakerEvent.objects.get(breaker="redis")
    assert (event.from_state, event.to_state, event.actor) == (CLOSED, OPEN, None)
    assert Redis.from_url(django_settings.REDIS_URL).exists("ils:breaker:redis") == 0
