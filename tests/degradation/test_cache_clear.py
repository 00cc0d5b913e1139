"""``clear()`` of one Redis cache alias deletes that alias's keys only (degradation/cache.py).

On the suite's real Redis: the cache, flag, rate-limit aliases and the breakers share its database,
as they do in a default deployment. django-redis's own ``clear()`` is ``FLUSHDB``, which would
take the API calls counted since the last write to the database with it.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.cache import cache, caches
from django.test import override_settings
from redis import Redis

from tenants.context import tenant_scope
from tests.factories import TenantFactory

pytestmark = [pytest.mark.django_db, pytest.mark.redis]


@pytest.fixture
def redis() -> Redis:
    return Redis.from_url(settings.REDIS_URL)


def test_clearing_the_cache_keeps_counters_flags_breakers_and_other_apps_keys(redis):
    tenant = TenantFactory()
    with tenant_scope(tenant):
        cache.set("tenant-answer", 1)
        cache.set("old-version", 1, version=7)
    caches["global"].set("generation", 5)
    caches["ratelimit"].set("api-calls", 42)
    caches["flags"].set("flag", True)
    redis.set("ils:breaker:storage", "open")
    redis.set("another-app:1:session", "x")
    assert list(redis.scan_iter(match="ils:[0-9]*:t:*"))  # the tenant's entry is there to clear

    try:
        cache.clear()

        with tenant_scope(tenant):
            assert cache.get("old-version", version=7) is None
        assert list(redis.scan_iter(match="ils:[0-9]*:t:*")) == []  # every tenant's entries
        assert caches["global"].get("generation") == 5
        assert caches["ratelimit"].get("api-calls") == 42
        assert caches["flags"].get("flag") is True
        assert redis.get("ils:breaker:storage") == b"open"
        assert redis.get("another-app:1:session") == b"x"
    finally:
        redis.delete("ils:breaker:storage", "another-app:1:session")


def test_clearing_the_counters_keeps_the_cache(redis):
    caches["global"].set("answer", 1)
    caches["ratelimit"].set("window", 3)

    caches["ratelimit"].clear()

    assert caches["ratelimit"].get("window") is None
    assert caches["global"].get("answer") == 1


def test_a_prefix_with_glob_characters_matches_itself_only(redis):
    aliases = {
        name: {**settings.CACHES["default"], "KEY_PREFIX": prefix, "KEY_FUNCTION": None}
        for name, prefix in (("starred", "a*b"), ("plain", "aXb"))
    }
    aliases["default"] = settings.CACHES["default"]
    with override_settings(CACHES=aliases):
        caches["starred"].set("k", 1)
        caches["plain"].set("k", 2)

        caches["starred"].clear()

        assert caches["starred"].get("k") is None
        assert caches["plain"].get("k") == 2
        caches["plain"].clear()
