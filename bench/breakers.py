"""Cost of a call through a circuit breaker, closed and open, with Redis-backed and in-process state.

    .venv/bin/python -m scripts.services run -- .venv/bin/python bench/breakers.py [--calls 20000]

Prints a table in microseconds per call: a plain call of a trivial function; the same call through
a closed breaker (shared state: one HGETALL to the cache Redis per call; in-process state: no I/O);
and the time to fail fast (``CircuitOpen``) while open. Breakers are opened through their storage,
so no ``BreakerEvent`` row is written and no database is needed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

from degradation.breakers import CLOSED, OPEN, CircuitOpen, breaker  # noqa: E402
from degradation.breakers.storage import SharedRedisStorage  # noqa: E402


def work() -> int:
    return 1


def per_call_us(function, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls * 1e6


def fail_fast(guard):
    def attempt():
        try:
            guard.call(work)
        except CircuitOpen:
            return
        raise AssertionError("the breaker should be open")

    return attempt


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    calls = parser.parse_args().calls

    shared, local = breaker("storage"), breaker("redis")
    if not isinstance(shared.storage, SharedRedisStorage):
        sys.exit("REDIS_URL is not set: run through `python -m scripts.services run -- ...`")
    for guard in (shared, local):
        guard.storage.transition(CLOSED, force=True)
    shared.storage.client.ping()

    rows = [("plain call (no breaker)", per_call_us(work, calls))]
    rows.append(("closed, shared state (Redis)", per_call_us(lambda: shared.call(work), calls)))
    rows.append(("closed, in-process state", per_call_us(lambda: local.call(work), calls)))
    for guard in (shared, local):
        guard.storage.transition(OPEN, force=True)
    rows.append(
        ("open -> CircuitOpen, shared state (Redis)", per_call_us(fail_fast(shared), calls))
    )
    rows.append(("open -> CircuitOpen, in-process state", per_call_us(fail_fast(local), calls)))
    for guard in (shared, local):
        guard.storage.transition(CLOSED, force=True)

    print(f"calls per row: {calls}; state Redis: {settings.CIRCUIT_BREAKER_REDIS_URL}")
    print(f"{'case':<44} {'µs/call':>10}")
    print("-" * 55)
    for label, micros in rows:
        print(f"{label:<44} {micros:>10.2f}")


if __name__ == "__main__":
    main()
