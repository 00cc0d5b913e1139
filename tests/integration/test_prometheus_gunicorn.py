"""Prometheus under the Procfile's gunicorn: 4 workers restarted mid-run (``max_requests`` and a
SIGKILL), and every request appears exactly once in ``/metrics``; the directory keeps one set of
files per live worker plus the archive; the metrics token is not an API key."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from scripts.services import free_port, wait_for_port
from tests.factories import TenantFactory, issue_key
from tests.live import live_database_url, stop_process

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
TOKEN = "metrics-token-for-the-test-0123456789"
pytestmark = pytest.mark.django_db(transaction=True)


def _get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _sample(body: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in body.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def _worker_pids(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


def test_every_request_is_counted_once_across_worker_restarts():
    tenant = TenantFactory()
    _, secret = issue_key(tenant)
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="ils-test-prometheus-"))
    env = {
        **os.environ,
        "DATABASE_URL": live_database_url(),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "GUNICORN_ACCESS_LOG": "",
        "WEB_CONCURRENCY": "4",
        "GUNICORN_MAX_REQUESTS": "25",  # every worker restarts several times in the run
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "METRICS_TOKEN": TOKEN,
        "METRICS_ALLOWED_NETWORKS": "",  # the token only
        "PORT": str(port),
    }
    log = folder.parent / f"{folder.name}.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [GUNICORN, "config.wsgi:application", "-c", "python:config.gunicorn"],
            cwd=ROOT, env=env, stdout=output, stderr=output,
        )  # fmt: skip
    try:
        wait_for_port(port, timeout=60)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/tenant/")
        request.add_header("Authorization", f"Bearer {secret}")
        sent, killed = 0, []
        for number in range(300):
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200
            sent += 1
            if number in (100, 200):  # between two requests: none is in flight
                victim = min(_worker_pids(server.pid))
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
                deadline = time.monotonic() + 30
                while victim in _worker_pids(server.pid) or len(_worker_pids(server.pid)) < 4:
                    assert time.monotonic() < deadline, "gunicorn did not replace the worker"
                    time.sleep(0.05)

        status, body = _get(port, "/metrics", TOKEN)
        assert status == 200, body
        route = "tenant"
        assert _sample(body, "ils_http_requests_total", route=route, plan=tenant.plan.code,
                       status_class="2xx") == sent  # fmt: skip
        assert _sample(body, "django_http_requests_total_by_view_transport_method_total",
                       view=route) == sent  # fmt: skip
        assert _sample(body, "ils_http_request_duration_seconds_count", plan=tenant.plan.code) == (
            sent
        )
        booted = log.read_text().count("Booting worker")
        # the 4 first workers, the 2 killed ones' replacements, and restarts after 25 requests:
        # the 6 lifetimes that did not end by max_requests served at most 24 each, so at least
        # ceil((300 - 6 * 24) / 25) = 7 did
        assert booted >= 4 + 2 + 7, booted

        # one set of files per live worker, plus the archive: none of a dead worker is left
        pids = {name.rsplit("_", 1)[1][:-3] for name in os.listdir(folder) if name.endswith(".db")}
        live = {str(pid) for pid in _worker_pids(server.pid)}
        assert pids <= live | {"archive"}, (pids, live)
        assert not {str(pid) for pid in killed} & pids

        # the token is the metrics' own: without it, or with a wrong one, no metrics; and a wrong
        # one is not a failed API-key attempt (30 of them leave a bad key's answer at 401, not 429)
        assert _get(port, "/metrics")[0] == 403
        for _ in range(30):
            assert _get(port, "/metrics", "wrong-token")[0] == 401
        assert _get(port, "/api/v1/tenant/", "ils_bad_key")[0] == 401
    finally:
        stop_process(server)
