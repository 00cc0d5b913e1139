"""Recording a state change never fails the caller, even when the database write fails."""

from __future__ import annotations

import logging

import pytest

from degradation.breakers import OPEN, breaker, reset_registry
from tests.degradation.breaker_helpers import configure_breakers


@pytest.fixture(autouse=True)
def _fresh_breakers():
    reset_registry()
    yield
    reset_registry()


def test_a_failing_event_write_is_logged_and_never_reaches_the_caller(settings, caplog):
    # No database access is allowed in this test: the INSERT of the event fails for real.
    configure_breakers(settings, redis_url="", webhooks={"failures": 1, "reset_seconds": 60})

    def down():
        raise ConnectionError("webhook endpoint down")

    with (
        caplog.at_level(logging.ERROR, logger="degradation.breakers.core"),
        pytest.raises(ConnectionError),
    ):
        breaker("webhooks").call(down)
    assert breaker("webhooks").snapshot().state == OPEN
    assert any("could not record" in r.getMessage() for r in caplog.records)
