"""Shared by the in-process benches: time requests through Django's test client, count their cost.

Each request is timed alone; around it the SQL queries it ran are captured and the Redis round trips
it made are counted (every command or pipeline a redis-py connection sends is one; a Lua script run
by ``EVAL`` is one, however many commands it runs inside Redis). Counting costs a few hundred
nanoseconds per round trip and happens in every scenario alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from redis.connection import AbstractConnection

TABLE_COLUMNS = ("mean ms", "p50 ms", "p95 ms", "SQL/request", "Redis round trips/request")


_round_trips = 0
_send = AbstractConnection.send_packed_command


def _counted_send(redis_connection, command, check_health=True):
    global _round_trips
    _round_trips += 1
    return _send(redis_connection, command, check_health)


AbstractConnection.send_packed_command = _counted_send  # every redis-py connection, from import on


def measure(
    client: Client,
    secret: str,
    requests: int,
    *,
    before: Callable[[], object] = lambda: None,
) -> dict[str, list[float]]:
    """GET /api/v1/tenant/ ``requests`` times with the key; every answer must be a 200.

    Returns the raw samples (ms, SQL queries, Redis round trips) so callers can pool rounds.
    """
    samples: dict[str, list[float]] = {"ms": [], "queries": [], "redis": []}
    for _ in range(requests):
        before()
        connection.queries_log.clear()  # a bounded deque: once full, captures would read as empty
        sent_before = _round_trips
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(
                "/api/v1/tenant/", HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_HOST="localhost"
            )
            samples["ms"].append((time.perf_counter() - started) * 1000)
        sent = _round_trips - sent_before
        assert response.status_code == 200, response.content
        samples["queries"].append(len(captured.captured_queries))
        samples["redis"].append(sent)
    return samples


def merge(into: dict[str, list[float]], samples: dict[str, list[float]]) -> None:
    for name, values in samples.items():
        into.setdefault(name, []).extend(values)


def _line(first: str, width: int, cells: tuple[str, ...]) -> str:
    return f"{first:<{width}}" + "".join(
        f"{cell:>{len(column) + 3}}" for cell, column in zip(cells, TABLE_COLUMNS, strict=True)
    )


def print_table(title: str, rows: dict[str, dict[str, list[float]]]) -> None:
    """One line per scenario: latency mean/p50/p95, mean SQL queries and Redis round trips."""
    width = max(len(title), *(len(label) for label in rows)) + 2
    print(_line(title, width, TABLE_COLUMNS))
    for label, samples in rows.items():
        timings = sorted(samples["ms"])
        cells = (
            f"{statistics.fmean(timings):.2f}",
            f"{timings[len(timings) // 2]:.2f}",
            f"{timings[int(len(timings) * 0.95)]:.2f}",
            f"{statistics.fmean(samples['queries']):.1f}",
            f"{statistics.fmean(samples['redis']):.1f}",
        )
        print(_line(label, width, cells))
