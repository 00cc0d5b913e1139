"""Embedded mode end to end: with no service variables, the `make run` steps give a working server.

Runs the same management commands as `make run` in subprocesses with a clean environment (SQLite
and the local-memory cache under a temporary VAR_DIR), serves on a spare port, and checks that
/health/ready answers 200, the admin login page is served with its static files, and a printed
demo key works against the tenant API.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from scripts.services import free_port

ROOT = Path(__file__).resolve().parents[2]
KEY_PATTERN = re.compile(r"ils_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")


@pytest.fixture
def embedded_env(tmp_path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SERVICE_VARIABLES and not k.startswith("DJANGO_")
    }
    env.update(VAR_DIR=str(tmp_path), ADMIN_PASSWORD="embedded-mode-test-password-81")
    return env


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _wait_until_serving(url: str, server: subprocess.Popen, deadline_seconds: float = 60) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read() if server.stderr else "server exited"
        try:
            _get(url)
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {deadline_seconds}s")


def test_make_run_steps_serve_health_admin_and_demo_keys(embedded_env):
    _manage(embedded_env, "migrate", "--noinput")
    _manage(embedded_env, "collectstatic", "--noinput", "--verbosity", "0")
    seeded = _manage(embedded_env, "seed_demo", "--rotate-demo-keys")
    _manage(embedded_env, "ensure_staff_user")
    keys = KEY_PATTERN.findall(seeded)
    assert len(keys) >= 4, seeded  # one per plan's showcase tenant

    assert (Path(embedded_env["VAR_DIR"]) / "db.sqlite3").exists()  # SQLite under VAR_DIR
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=embedded_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(f"{base}/health/live", server)
        status, body = _get(f"{base}/health/ready")
        assert status == 200, body
        assert b'"status": "ok"' in body

        status, body = _get(f"{base}/admin/login/")
        assert status == 200
        css = re.search(rb'href="(/static/admin/css/[^"]+\.css)"', body)
        assert css, body[:500]
        assert _get(base + css.group(1).decode())[0] == 200  # static files are served

        status, body = _get(f"{base}/api/v1/tenant/", {"Authorization": f"Bearer {keys[0]}"})
        assert status == 200, body
        assert b'"slug": "demo-' in body or b'"slug":"demo-' in body
    finally:
        server.terminate()
        server.wait(timeout=10)
