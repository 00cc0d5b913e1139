"""Prometheus under the Procfile's gunicorn: 4 workers restarted mid-run (``max_requests`` and a
SIGKILL), and every request appears exactly once in ``/metrics``; the directory keeps one set of
files per live worker plus the archive; the metrics token is not an API key."""

from __future__ import annotations

import os
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
from tests.live import (
    child_pids,
    http_get,
    live_database_url,
    multiprocess_pids,
    prometheus_sample,
    stop_process,
)

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
TOKEN = "metrics-token-for-the-test-0123456789"
pytestmark = pytest.mark.django_db(transaction=True)


def _get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    return http_get(f"http://127.0.0.1:{port}{path}", token)


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
                victim = min(child_pids(server.pid))
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
                deadline = time.monotonic() + 30
                while victim in child_pids(server.pid) or len(child_pids(server.pid)) < 4:
                    assert time.monotonic() < deadline, "gunicorn did not replace the worker"
                    time.sleep(0.05)

        status, body = _get(port, "/metrics", TOKEN)
        assert status == 200, body
        route = "tenant"
        assert prometheus_sample(body, "ils_http_requests_total", route=route, plan=tenant.plan.code,
                       status_class="2xx") == sent  # fmt: skip
        assert prometheus_sample(body, "django_http_requests_total_by_view_transport_method_total",
                       view=route) == sent  # fmt: skip
        assert prometheus_sample(body, "ils_http_request_duration_seconds_count",
                                 plan=tenant.plan.code) == sent  # fmt: skip
        # django-prometheus's database metrics, through its engine (Django's, with counting
        # cursors): the keyed requests were served from the cache, so these are the scrape's own
        # queries (the job gauges)
        assert prometheus_sample(body, "django_db_new_connections_total", alias="default") >= 1
        assert prometheus_sample(body, "django_db_execute_total", alias="default") > 0
        # a worker logs this as it takes its 25th request, before it answers, so the count is
        # complete once the last answer is in (its replacement's "Booting worker" may not be).
        # The 6 lifetimes that did not end by max_requests (the 2 killed, the 4 alive) served at
        # most 24 each, so at least ceil((300 - 6 * 24) / 25) = 7 did
        restarted = log.read_text().count("Autorestarting worker after current request")
        assert restarted >= 7, restarted

        # one set of files per live worker, plus the archive: none of a dead worker is left
        pids = multiprocess_pids(folder)
        live = {str(pid) for pid in child_pids(server.pid)}
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
