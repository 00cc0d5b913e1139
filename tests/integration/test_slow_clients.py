"""Slow clients cannot starve the web process: the Procfile's gunicorn (``config/gunicorn.py``).

Real gunicorn, real sockets: clients send a request's headers and then hold it open without its
body, as a slow upload or a slowloris does. With sync workers, two of them stop every worker (so
``/health/live`` stops answering until the worker timeout); with the threaded workers of
``config/gunicorn.py`` each holds one thread, and ``/health/live`` answers within a second.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from scripts.services import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def _serve(stack: ExitStack, *args: str) -> int:
    port = free_port()
    env = {**os.environ, "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "GUNICORN_ACCESS_LOG": ""}
    process = subprocess.Popen(
        [GUNICORN, "config.wsgi:application", "--bind", f"127.0.0.1:{port}", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.callback(lambda: (process.terminate(), process.wait(timeout=30)))
    wait_for_port(port)
    return port


def _hold_slow_clients(stack: ExitStack, port: int, count: int) -> None:
    """Open ``count`` connections that send headers promising a body, then send nothing more."""
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        stack.callback(sock.close)
        sock.sendall(
            b"POST /api/v1/api-keys/ HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: 50000\r\n\r\n{"
        )


def _health_seconds(port: int, timeout: float) -> float | None:
    """How long ``/health/live`` took to answer 200, or ``None`` if it did not within ``timeout``."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/health/live")
        status = connection.getresponse().status
    except (TimeoutError, OSError):
        return None
    finally:
        connection.close()
    return time.monotonic() - started if status == 200 else None


def _warm(port: int) -> None:
    assert _health_seconds(port, timeout=30) is not None  # the workers have loaded the app


def test_slow_clients_leave_the_procfile_server_answering():
    with ExitStack() as stack:
        port = _serve(stack, "-c", "python:config.gunicorn", "--workers", "2")
        _warm(port)
        _hold_slow_clients(stack, port, 6)
        seconds = _health_seconds(port, timeout=5)
        assert seconds is not None and seconds < 1.0, seconds


def test_with_sync_workers_two_slow_clients_stop_the_server():
    """The failure the threaded workers fix, shown on the old Procfile's worker class."""
    with ExitStack() as stack:
        port = _serve(stack, "--workers", "2", "--worker-class", "sync", "--timeout", "30")
        _warm(port)
        _hold_slow_clients(stack, port, 2)
        assert _health_seconds(port, timeout=2) is None
