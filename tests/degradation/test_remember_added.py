"""``REMEMBER_ADDED`` (the rate-limit counters' alias): ``add`` of a key this process saw exist
answers without a round trip; a key that vanished behind its back is forgotten at the next ``incr``.
"""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django_redis import get_redis_connection

pytestmark = [pytest.mark.redis]

ALIAS = "ratelimit"


def _sets() -> int:
    stats = get_redis_connection(ALIAS).info("commandstats")
    return stats.get("cmdstat_set", {}).get("calls", 0)


@pytest.fixture
def counters():
    store = caches[ALIAS]
    store.delete("window")
    yield store
    store.delete("window")


def test_a_key_seen_to_exist_is_added_without_a_round_trip(counters):
    assert counters.add("window", 1, 65) is True
    before = _sets()
    assert [counters.add("window", 1, 65) for _ in range(5)] == [False] * 5
    assert _sets() == before  # answered from memory
    assert counters.incr("window") == 2


def test_a_key_that_vanished_is_forgotten_at_the_next_incr(counters):
    assert counters.add("window", 1, 65) is True
    get_redis_connection(ALIAS).delete(counters.make_key("window"))  # evicted, Redis restarted...

    assert counters.add("window", 1, 65) is False  # still remembered
    with pytest.raises(ValueError):
        counters.incr("window")  # django-ratelimit treats this as a lost count
    assert counters.add("window", 1, 65) is True  # forgotten: really added again
    assert counters.incr("window") == 2


def test_delete_and_clear_forget(counters):
    assert counters.add("window", 1, 65) is True
    counters.delete("window")
    assert counters.add("window", 1, 65) is True
    counters.clear()
    assert counters.add("window", 1, 65) is True
