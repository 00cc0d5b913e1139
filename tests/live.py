"""Helpers for tests that run real server processes (gunicorn, a Celery worker) on the test's data."""

from __future__ import annotations

import subprocess
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
