"""End to end with a real broker and a real ``celery worker`` process: nothing lost, nothing twice.

A throwaway redis-server is the broker (stopped and started again by the fault test: the process,
not a mock); the worker is ``celery -A config worker`` on this test's database, loading the test
kinds (``tests.queues.kinds``) besides the app's. This process enqueues, as the web would, and
runs the dispatcher rounds that beat would run. Each job's side effect is an invitation row made in
the job's transaction, so "exactly once" is counted in the database, not inferred.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from celery import current_app
from redis import Redis

from queues import dispatcher, services
from queues.models import Job
from scripts.services import ServiceUnavailable, free_port, wait_for_port
from tests.factories import TenantFactory, plan
from tests.live import (
    child_pids,
    http_get,
    live_database_url,
    multiprocess_pids,
    prometheus_sample,
    stop_process,
)
from tests.queues.kinds import side_effects

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).parent / "celery")
#: Short leases, so a killed worker's job is rescued within seconds.
LEASE_SECONDS = 2
DEADLINE = 60


class Broker:
    """A redis-server on a fixed port that can be stopped and started again (the same URL)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = folder
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = "redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> Iterator[Broker]:
    server = Broker(tmp_path_factory.mktemp("broker"))
    try:
        server.start()
    except (FileNotFoundError, ServiceUnavailable) as error:
        pytest.skip(f"no redis-server for the broker: {error}")
    # This process publishes as the web would. Its Celery app read an empty broker URL from the
    # settings (embedded mode); the broker is set on the app's configuration (its public conf)
    # before this process opens any broker connection, and for this module only.
    previous = current_app.conf.broker_url
    current_app.conf.broker_url = server.url
    yield server
    current_app.conf.broker_url = previous
    server.stop()


@pytest.fixture
def full_mode(broker, settings):
    """Jobs go through the broker (not run in this process); a broker breaker that recovers fast."""
    from degradation.breakers import reset_registry

    Redis.from_url(broker.url).flushdb()  # no message of an earlier test is left on it
    settings.CELERY_BROKER_URL = broker.url
    settings.CIRCUIT_BREAKERS = {
        **settings.CIRCUIT_BREAKERS,
        "broker": {"failures": 3, "reset_seconds": 1.0},
    }
    reset_registry()
    yield broker
    reset_registry()


@contextmanager
def worker(
    broker: Broker,
    log: Path,
    *,
    queues: str = "default,email",
    concurrency: int = 1,
    options: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen]:
    """``celery -A config worker`` with ``concurrency`` prefork children, until the block ends."""
    env = {
        **os.environ,
        "DATABASE_URL": live_database_url(),
        "CELERY_BROKER_URL": broker.url,
        "JOBS_DIAGNOSTIC_KINDS": "true",
        "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        **(env or {}),
    }
    command = [
        CELERY,
        "-A",
        "config",
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "-P",
        "prefork",
        "--include",
        "tests.queues.kinds",
        "-n",
        f"test-{broker.port}@%h",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
        *options,
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)
    try:
        _wait_for(
            lambda: b"ready." in log.read_bytes() or process.poll() is not None, "worker ready"
        )
        assert process.poll() is None, log.read_text()
        yield process
    finally:
        stop_process(process)


def _wait_for(condition: Callable[[], bool], what: str, *, dispatching: bool = False) -> None:
    """Poll ``condition`` (running dispatcher rounds between polls, as beat would) until true."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE} s: {what}")
        if dispatching:
            dispatcher.dispatch()
        time.sleep(0.2)


def _statuses(jobs: list[Job]) -> list[str]:
    return list(
        Job.all_tenants.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True)
    )


def _settled(jobs: list[Job]) -> Callable[[], bool]:
    return lambda: all(status in Job.FINISHED for status in _statuses(jobs))


@pytest.fixture
def tenant():
    return TenantFactory(plan=plan("pro"), limit_overrides={"jobs_per_day": None})


def test_a_job_runs_on_the_worker_and_records_its_result(full_mode, tenant, tmp_path):
    with worker(full_mode, tmp_path / "worker.log"):
        job = services.job_enqueue(
            tenant=tenant, kind="diagnostics.echo", payload={"message": "over the wire"}
        ).job
        _wait_for(_settled([job]), "the echo job finished")

    job.refresh_from_db()
    assert (job.status, job.result, job.attempts) == ("succeeded", {"message": "over the wire"}, 1)
    assert job.worker.startswith(f"test-{full_mode.port}@") and job.published_at


def test_a_failing_job_is_retried_with_backoff_ends_dead_and_a_retry_runs_it(
    full_mode, tenant, tmp_path
):
    with worker(full_mode, tmp_path / "worker.log"):
        job = services.job_enqueue(
            tenant=tenant, kind="diagnostics.fail", payload={"times": 10}
        ).job
        _wait_for(_settled([job]), "the failing job settled", dispatching=True)
        job.refresh_from_db()
        assert (job.status, job.attempts) == ("dead", 3)
        assert "attempt 3 of 10 failing" in job.last_error

        services.job_retry(job=job, payload={"times": 0})
        _wait_for(_settled([job]), "the retried job finished")

    job.refresh_from_db()
    assert (job.status, job.attempts, job.result) == ("succeeded", 1, {"attempts": 1})


def test_with_the_broker_down_jobs_wait_in_the_table_and_each_runs_once_after(
    full_mode, tenant, tmp_path
):
    full_mode.stop()
    started = time.monotonic()
    jobs = [services.job_enqueue(tenant=tenant, kind="tests.side_effect").job for _ in range(6)]
    enqueue_seconds = time.monotonic() - started

    assert _statuses(jobs) == ["queued"] * 6  # answered, written, waiting
    assert not Job.all_tenants.filter(pk__in=[j.pk for j in jobs], published_at__isnull=False)
    full_mode.start()
    with worker(full_mode, tmp_path / "worker.log"):
        _wait_for(_settled(jobs), "every job ran after the broker came back", dispatching=True)
        for _ in range(5):  # more rounds: a job republished now would run twice if it could
            dispatcher.dispatch()

    assert _statuses(jobs) == ["succeeded"] * 6
    assert [side_effects(job.pk) for job in jobs] == [1] * 6
    assert enqueue_seconds < 30, enqueue_seconds  # the breaker stops paying a timeout per job


def test_a_worker_killed_mid_job_is_rescued_and_a_job_that_always_kills_it_ends_dead(
    full_mode, tenant, tmp_path, settings
):
    settings.JOB_MAX_RESCUES = 2
    with worker(full_mode, tmp_path / "worker.log"):
        once = services.job_enqueue(tenant=tenant, kind="tests.kill_worker_once").job
        always = services.job_enqueue(tenant=tenant, kind="tests.kill_worker_always").job
        _wait_for(_settled([once, always]), "both settled", dispatching=True)

    once.refresh_from_db()
    always.refresh_from_db()
    assert (once.status, once.rescues, once.result) == ("succeeded", 1, {"attempt": 2})
    assert side_effects(once.pk) == 1
    assert (always.status, always.rescues) == ("dead", 3)
    assert "quarantined after 3 rescues" in always.last_error


def _backlog(tenant, count: int, kind: str = "diagnostics.echo") -> list[int]:
    """``count`` due jobs of ``tenant`` written at once (a backlog, as after an import)."""
    from tenants.context import tenant_scope

    with tenant_scope(tenant):
        rows = Job.objects.bulk_create(
            Job(kind=kind, payload={"message": None}, queue="default", max_attempts=5)
            for _ in range(count)
        )
    return [row.pk for row in rows]


def test_a_round_hands_out_each_tenants_share_round_robin(full_mode):
    """No worker: what one dispatcher round publishes, in which order."""
    big = TenantFactory(plan=plan("pro"))  # jobs_in_flight 10
    small = TenantFactory(plan=plan("free"))  # jobs_in_flight 2
    big_jobs, small_jobs = _backlog(big, 100), _backlog(small, 5)

    assert dispatcher.dispatch_due() == 12
    published = list(
        Job.all_tenants.filter(published_at__isnull=False).order_by("published_at", "id")
    )
    assert sorted(j.pk for j in published if j.tenant_id == big.pk) == big_jobs[:10]
    assert sorted(j.pk for j in published if j.tenant_id == small.pk) == small_jobs[:2]
    assert dispatcher.in_flight([big.pk, small.pk]) == {big.pk: 10, small.pk: 2}
    assert dispatcher.dispatch_due() == 0  # both shares are out; the rest waits in the table


def test_one_tenants_backlog_does_not_starve_another_tenants_jobs(full_mode, tmp_path):
    """Tenant A has 10,000 jobs waiting, then tenant B enqueues 10: B's jobs all start after at
    most A's share (10 in flight) plus B's own 10 of A's jobs, not after A's backlog."""
    a = TenantFactory(plan=plan("pro"), limit_overrides={"jobs_per_day": None})
    b = TenantFactory(plan=plan("pro"), limit_overrides={"jobs_per_day": None})
    _backlog(a, 10_000)
    with worker(full_mode, tmp_path / "worker.log"):
        dispatcher.dispatch()
        _wait_for(
            lambda: Job.all_tenants.filter(tenant=a, status="succeeded").count() >= 20,
            "A's jobs are running",
            dispatching=True,
        )
        b_jobs = [services.job_enqueue(tenant=b, kind="diagnostics.echo").job for _ in range(10)]
        _wait_for(_settled(b_jobs), "B's jobs finished", dispatching=True)

    last_b_start = max(Job.all_tenants.filter(tenant=b).values_list("started_at", flat=True))
    first_b_enqueued = min(job.created_at for job in b_jobs)
    a_started_between = Job.all_tenants.filter(
        tenant=a, started_at__gt=first_b_enqueued, started_at__lte=last_b_start
    ).count()
    bound = 10 + 10  # A's share in flight when B came, then one A job per B job at most
    assert a_started_between <= bound, (a_started_between, bound)
    assert Job.all_tenants.filter(tenant=a, status="queued").count() > 9_000  # A's backlog waits


def test_the_console_sees_the_broker_depth_and_the_workers_heartbeat(full_mode, tenant, tmp_path):
    from queues.models import Worker
    from queues.selectors import queue_stats

    _backlog(tenant, 3)
    dispatcher.dispatch_due()
    default = next(q for q in queue_stats().queues if q.name == "default")
    assert (default.broker_depth, default.queued) == (3, 3)
    assert queue_stats().health == "degraded"  # no worker alive: the jobs wait

    with worker(full_mode, tmp_path / "worker.log"):
        _wait_for(lambda: Worker.objects.exists(), "the worker's heartbeat")
        _wait_for(lambda: not Job.all_tenants.exclude(status="succeeded").exists(), "jobs ran")
        stats = queue_stats()
        (seen,) = stats.workers
        assert seen.alive and seen.name.startswith(f"test-{full_mode.port}@")
        assert seen.queues == "default,email" and seen.concurrency == 1
        assert stats.health == "ok" and stats.broker_up

    assert not Worker.objects.exists()  # a worker that stops says so


def test_through_the_api_with_the_broker_down_a_job_is_accepted_and_says_it_waits(
    full_mode, tenant
):
    from tests.factories import issue_key, key_client

    client = key_client(issue_key(tenant)[1])
    full_mode.stop()
    try:
        response = client.post("/api/v1/jobs/", {"kind": "diagnostics.echo"}, format="json")
    finally:
        full_mode.start()

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["waiting_for_broker"]) == ("queued", True)
    dispatcher.dispatch()  # the broker is back: the dispatcher sends it
    job = Job.all_tenants.get(pk=body["id"])
    assert job.published_at is not None
    assert client.get(f"/api/v1/jobs/{job.pk}/").json()["waiting_for_broker"] is False


METRICS_TOKEN = "worker-metrics-token-0123456789abcdef"


def test_the_workers_metrics_count_every_job_once_across_pool_restarts(full_mode, tenant, tmp_path):
    """``WORKER_METRICS_PORT``: the worker's own /metrics counts each job once by outcome, with its
    queue time and duration, while the pool replaces its children every 3 jobs (their files are
    compacted, none left behind); the web's access rule; no scrape-time gauges (the web's)."""
    port = free_port()
    folder = tmp_path / "prometheus"
    url = f"http://127.0.0.1:{port}/metrics"
    env = {
        "WORKER_METRICS_PORT": str(port),
        "WORKER_METRICS_ADDRESS": "127.0.0.1",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "METRICS_TOKEN": METRICS_TOKEN,
        "METRICS_ALLOWED_NETWORKS": "",  # the token only
    }
    options = ("--max-tasks-per-child", "3")
    with worker(
        full_mode, tmp_path / "worker.log", concurrency=2, options=options, env=env
    ) as pool:
        wait_for_port(port)
        echoes = [
            services.job_enqueue(tenant=tenant, kind="diagnostics.echo", payload={"message": n}).job
            for n in range(10)
        ]
        failures = [
            services.job_enqueue(tenant=tenant, kind="tests.not_retried").job for _ in range(2)
        ]
        _wait_for(_settled(echoes + failures), "every job finished", dispatching=True)
        assert _statuses(echoes) == ["succeeded"] * 10 and _statuses(failures) == ["failed"] * 2

        status, body = http_get(url, METRICS_TOKEN)
        assert status == 200, body
        assert prometheus_sample(body, "ils_jobs_total", kind="diagnostics.echo",
                                 outcome="succeeded") == 10  # fmt: skip
        assert prometheus_sample(body, "ils_jobs_total", kind="tests.not_retried",
                                 outcome="failed") == 2  # fmt: skip
        assert prometheus_sample(body, "ils_jobs_total") == 12
        assert prometheus_sample(body, "ils_job_queue_seconds_count", queue="default") == 12
        assert prometheus_sample(body, "ils_job_duration_seconds_count",
                                 kind="diagnostics.echo") == 10  # fmt: skip
        assert "ils_breaker_state" not in body and "ils_queue_jobs" not in body

        # 12 jobs at 3 per child: children came and went (their files are in the archive); the
        # files left are the live processes' (the children and the main one)
        live = {str(pid) for pid in child_pids(pool.pid) | {pool.pid}}
        assert "archive" in multiprocess_pids(folder)
        assert multiprocess_pids(folder) <= live | {"archive"}

        assert http_get(url)[0] == 403
        assert http_get(url, "wrong-token")[0] == 401
        status, body = http_get(f"http://127.0.0.1:{port}/api/v1/tenant/", METRICS_TOKEN)
        assert (status, json.loads(body)["error"]["code"]) == (404, "not_found")
