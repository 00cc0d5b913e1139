"""A TCP dependency the test controls, and helpers to point the breakers at a Redis of its own."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from degradation.breakers import reset_registry


class CountingServer:
    """Accepts connections and counts them; answers ``ok`` when healthy, else closes at once."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.healthy = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1  # counted before the client can see an answer
            with conn:
                if self.healthy:
                    conn.sendall(b"ok")

    def call(self) -> bytes:
        """The dependency call: connect, read the answer; an empty answer is a failure."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
            answer = conn.recv(16)
        if answer != b"ok":
            raise ConnectionError("dependency closed the connection")
        return answer

    def close(self) -> None:
        self.listener.close()
        self._thread.join(timeout=5)


@contextmanager
def counting_server() -> Iterator[CountingServer]:
    server = CountingServer()
    try:
        yield server
    finally:
        server.close()


def configure_breakers(settings, *, redis_url: str, retry: float = 2.0, **configs) -> None:
    """Point the breakers at ``redis_url`` with per-name ``{"failures", "reset_seconds"}``."""
    settings.CIRCUIT_BREAKER_REDIS_URL = redis_url
    settings.CIRCUIT_BREAKER_REDIS_RETRY_SECONDS = retry
    settings.CIRCUIT_BREAKERS = {**settings.CIRCUIT_BREAKERS, **configs}
    reset_registry()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.02)
