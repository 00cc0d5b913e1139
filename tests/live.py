"""Helpers for tests that run real server processes (gunicorn, a Celery worker) on the test's data."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

from django.db import connection


def live_database_url() -> str:
    """This test's database (not the one DATABASE_URL names), so another process sees its rows.

    The test must commit them: ``pytest.mark.django_db(transaction=True)``.
    """
    settings = connection.settings_dict
    user = quote(settings["USER"] or "", safe="")
    password = f":{quote(settings['PASSWORD'], safe='')}" if settings["PASSWORD"] else ""
    host = settings["HOST"] or "127.0.0.1"
    port = f":{settings['PORT']}" if settings["PORT"] else ""
    return f"postgres://{user}{password}@{host}{port}/{quote(settings['NAME'], safe='')}"


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def child_pids(parent: int) -> set[int]:
    """The processes ``parent`` started (a gunicorn master's workers, a Celery pool)."""
    return {int(pid) for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()}


def http_get(url: str, token: str | None = None) -> tuple[int, str]:
    """GET ``url`` (with a bearer token); the status and the body, also of an error answer."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def prometheus_sample(body: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` in a Prometheus exposition whose labels include ``labels``."""
    total = 0.0
    for line in body.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def multiprocess_pids(folder: Path) -> set[str]:
    """The pids (and ``archive``) that have files in a Prometheus multiprocess directory."""
    return {name.rsplit("_", 1)[1][:-3] for name in os.listdir(folder) if name.endswith(".db")}
