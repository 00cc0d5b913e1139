"""The job table on RabbitMQ: ``CELERY_BROKER_URL=amqp://...`` works as the Redis broker does.

The machine's RabbitMQ (``RABBITMQ_URL``, default ``amqp://guest:guest@127.0.0.1:5672//``), a
real ``celery worker`` on it, and a separate process that enqueues as the web would (this test
process's Celery app is bound to another broker by the Redis tests). Each job's side effect is an
invitation row, counted in the database.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from queues.models import Job
from tests.factories import TenantFactory, plan
from tests.integration.test_celery_worker import _settled, _wait_for
from tests.live import live_database_url, stop_process
from tests.queues.kinds import side_effects

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
PYTHON, CELERY = sys.executable, str(Path(sys.executable).parent / "celery")
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
#: The queue of the ``tests.side_effect`` kind; the worker purges it first (``--purge``): the
#: server is the machine's, and a message left there by an earlier run must not be counted.
QUEUE = "email"


def _rabbitmq_reachable() -> bool:
    address = urlsplit(RABBITMQ_URL)
    try:
        with socket.create_connection((address.hostname, address.port or 5672), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def rabbitmq():
    if not _rabbitmq_reachable():
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 and no RabbitMQ at {RABBITMQ_URL}")
        pytest.skip(f"no RabbitMQ at {RABBITMQ_URL}")
    return RABBITMQ_URL


ENQUEUE = """
import django, sys
django.setup()
import tests.queues.kinds  # the test kinds, as the worker loads them
from queues import services
from tenants.models import Tenant
tenant = Tenant.objects.get(pk=int(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    print(services.job_enqueue(tenant=tenant, kind="tests.side_effect").job.pk)
"""


def test_jobs_run_once_on_rabbitmq(rabbitmq, tmp_path):
    tenant = TenantFactory(plan=plan("pro"), limit_overrides={"jobs_per_day": None})
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": live_database_url(),
        "CELERY_BROKER_URL": rabbitmq,
        "JOBS_DIAGNOSTIC_KINDS": "true",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [CELERY, "-A", "config", "worker", "-Q", QUEUE, "-c", "1", "--include",
             "tests.queues.kinds", "-n", f"rabbitmq-{os.getpid()}@%h", "--purge", "--without-gossip",
             "--without-mingle",
             "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=output, stderr=output,
        )  # fmt: skip
    try:
        _wait_for(lambda: b"ready." in log.read_bytes() or worker.poll() is not None, "ready")
        assert worker.poll() is None, log.read_text()
        made = subprocess.run(
            [PYTHON, "-c", ENQUEUE, str(tenant.pk), "5"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        jobs = list(Job.all_tenants.filter(pk__in=[int(x) for x in made.stdout.split()]))
        assert len(jobs) == 5
        _wait_for(_settled(jobs), "the jobs ran on RabbitMQ")
    finally:
        stop_process(worker)

    assert (
        sorted(Job.all_tenants.filter(tenant=tenant).values_list("status", flat=True))
        == ["succeeded"] * 5
    )
    assert all(job.queue == QUEUE for job in Job.all_tenants.filter(tenant=tenant))
    assert [side_effects(job.pk) for job in jobs] == [1] * 5
