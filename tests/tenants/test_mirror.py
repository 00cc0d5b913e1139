"""The process mirror of the global cache (``tenants.mirror``), on a real Redis.

Warm reads cost no round trip; a change announced by another process (or this one) is seen on the
next read; a broken subscription (its connection killed in Redis) drops every copy, so a change
that was never announced is still seen; a copy never outlives ``GLOBAL_MIRROR_SECONDS``.
"""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django_redis import get_redis_connection

from tenants import resolution
from tenants.mirror import GLOBAL_ALIAS, global_mirror
from tests.factories import TenantFactory, issue_key

pytestmark = [pytest.mark.django_db, pytest.mark.redis]


def _reads() -> int:
    stats = get_redis_connection(GLOBAL_ALIAS).info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("get", "mget"))


@pytest.fixture
def key_secret() -> str:
    _, secret = issue_key(TenantFactory())
    return secret


def test_a_warm_resolution_reads_nothing_from_redis(key_secret):
    assert resolution.resolve_api_key(key_secret).error is None  # cold: reads and keeps copies
    assert resolution.resolve_api_key(key_secret).error is None

    before = _reads()
    for _ in range(5):
        found = resolution.resolve_api_key(key_secret)
        assert found.error is None and found.resolved.tenant.plan is not None
    assert _reads() == before


def test_each_caller_gets_its_own_tenant_object(key_secret):
    first = resolution.resolve_api_key(key_secret)
    second = resolution.resolve_api_key(key_secret)
    assert first.resolved.tenant is not second.resolved.tenant
    first.resolved.tenant.name = "changed by a caller"
    assert resolution.resolve_api_key(key_secret).resolved.tenant.name != "changed by a caller"


def test_an_announced_change_is_seen_on_the_next_read():
    store = caches[GLOBAL_ALIAS]
    store.set("mirror:probe", "before")
    assert global_mirror.get_many(["mirror:probe"]) == {"mirror:probe": "before"}

    store.set("mirror:probe", "after")
    assert global_mirror.get_many(["mirror:probe"]) == {"mirror:probe": "before"}  # the copy
    global_mirror.changed(["mirror:probe"])  # what every writer of mirrored data does
    assert global_mirror.get_many(["mirror:probe"]) == {"mirror:probe": "after"}


def test_a_killed_subscription_drops_every_copy_so_unannounced_changes_are_seen():
    store = caches[GLOBAL_ALIAS]
    store.set("mirror:probe", "before")
    assert global_mirror.get_many(["mirror:probe"])["mirror:probe"] == "before"
    assert global_mirror.live

    killed = get_redis_connection(GLOBAL_ALIAS).client_kill_filter(_type="pubsub")
    assert killed >= 1
    store.set("mirror:probe", "after")  # never announced

    assert global_mirror.get_many(["mirror:probe"])["mirror:probe"] == "after"
    assert not global_mirror.live  # reads Redis until it subscribes again


def test_a_copy_never_outlives_global_mirror_seconds(settings):
    settings.GLOBAL_MIRROR_SECONDS = 0
    store = caches[GLOBAL_ALIAS]
    store.set("mirror:probe", "before")
    assert global_mirror.get_many(["mirror:probe"])["mirror:probe"] == "before"
    store.set("mirror:probe", "after")  # a hand-made change nobody announced
    assert global_mirror.get_many(["mirror:probe"])["mirror:probe"] == "after"
