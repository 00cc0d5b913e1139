"""Read replicas on a real primary + streaming replica (``scripts.services``).

Each scenario runs the real settings in a subprocess (``replica_driver.py``) pointed at the
cluster with ``USE_READ_REPLICAS=1``, and the test breaks the replica between commands: it stops
the process, pauses its WAL replay, promotes it. Which server answered a read is proved by
``pg_is_in_recovery()`` selected through the query the router routed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from scripts.services import PrimaryWithReplica, ServiceUnavailable, postgres_primary_with_replica
from tests.conftest import REQUIRE_SERVICES

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 20.0


@contextmanager
def _migrated_cluster() -> Iterator[PrimaryWithReplica]:
    try:
        with postgres_primary_with_replica() as servers:
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=ROOT,
                env=_env(servers),
                check=True,
                capture_output=True,
            )
            yield servers
    except ServiceUnavailable as error:
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 and no primary + replica: {error}")
        pytest.skip(f"no primary + replica: {error}")


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrimaryWithReplica]:
    with _migrated_cluster() as servers:
        yield servers


@pytest.fixture
def own_cluster() -> Iterator[PrimaryWithReplica]:
    """A cluster for a test that cannot mend what it breaks (a promotion)."""
    with _migrated_cluster() as servers:
        yield servers


def _env(servers: PrimaryWithReplica, **variables: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=servers.primary_url,
        DATABASE_READ_REPLICAS=servers.replica_url,
        USE_READ_REPLICAS="1",
        DATABASE_POOL_MIN="0",
        DATABASE_POOL_TIMEOUT="2",
        CACHE_KEY_PREFIX=f"replica-test-{uuid.uuid4().hex[:8]}",
        REPLICA_HEALTH_INTERVAL_SECONDS="0.2",
    )
    env.update({name: str(value) for name, value in variables.items()})
    return env


class Driver:
    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("replica_driver.py"))],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __call__(self, op: str, **arguments: Any) -> Any:
        self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith("@@"):
                answer = json.loads(line[2:])
                assert answer["ok"], answer["error"]
                return answer["result"]
        raise AssertionError(f"the driver exited with {self.process.wait()}")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture
def driver(cluster) -> Iterator[Callable[..., Driver]]:
    """Start drivers with given REPLICA_* settings; the replica is mended after the test."""
    drivers: list[Driver] = []

    def start(servers: PrimaryWithReplica = cluster, **variables: Any) -> Driver:
        drivers.append(Driver(_env(servers, **variables)))
        return drivers[-1]

    yield start
    for started in drivers:
        started.close()
    try:
        cluster.resume_replay()
    except psycopg.OperationalError:  # the test stopped it
        cluster.start_replica()


def _poll(check: Callable[[], Any], what: str) -> Any:
    """Call ``check`` until it returns something truthy, failing after the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {DEADLINE_SECONDS:.0f}s: {what}")


def _read(drive: Driver, key: str) -> dict:
    answer = drive("read", key=key)
    assert answer["status"] == 200, answer
    return answer["body"]


def _read_from_replica(drive: Driver, key: str) -> dict:
    return _poll(
        lambda: (body := _read(drive, key))["in_recovery"] and body, "a read served by the replica"
    )


def test_reads_go_to_the_replica_and_a_write_pins_its_tenant_for_the_window(driver):
    drive = driver(REPLICA_PIN_SECONDS=3)
    writer, other = drive("setup")["key"], drive("setup")["key"]

    body = _read_from_replica(drive, writer)
    assert body["alias"] == "replica_1"

    written = drive("write", key=writer, name="renamed")
    assert written["status"] == 200
    assert written["body"] == {"alias": "default", "name": "renamed", "in_recovery": False}

    next_request = _read(drive, writer)  # a new request, within the pin window
    assert next_request == {"alias": "default", "name": "renamed", "in_recovery": False}
    assert _read(drive, other)["in_recovery"] is True  # the pin is the writer's tenant only

    after_window = _read_from_replica(drive, writer)
    assert after_window["name"] == "renamed"


def test_reads_in_a_transaction_or_outside_any_scope_go_to_the_primary(driver):
    drive = driver()
    tenant = drive("setup")
    key = tenant["key"]
    _read_from_replica(drive, key)

    assert drive("read_outside_request", tenant_id=tenant["tenant_id"]) == {"alias": "default"}

    answer = drive("read", key=key, in_transaction=True)
    assert answer["status"] == 200
    assert answer["body"]["alias"] == "default" and answer["body"]["in_recovery"] is False


#: A tenant endpoint that runs SQL on every request (no cached answer), and the read probe mounted
#: under the tenant API, so the limits count it (rate windows, the API-call count) like any other.
MEMBERS = "/api/v1/members/"
TENANT_READ = "/api/v1/probe/read"


def _tenant_made_elsewhere(driver) -> dict:
    """A tenant and its key, made (and its resolution cached) by another, earlier process."""
    earlier = driver()
    tenant = earlier("setup")
    assert earlier("keyed_reads", key=tenant["key"], path=MEMBERS, count=1)[0]["status"] == 200
    return tenant


def _served_by_primary(answers: list[dict]) -> list[int]:
    """The requests (by position) any of whose reads the primary served."""
    return [
        position
        for position, answer in enumerate(answers)
        if answer["reads"].get("default") or answer["in_recovery"] is False
    ]


def test_right_after_start_up_the_first_keyed_reads_go_to_the_replica(driver):
    """The process's very first routed read waits for the monitor's first check (bounded), so it
    does not go to the primary merely because the replica was not checked yet."""
    tenant = _tenant_made_elsewhere(driver)
    started = driver(REPLICA_HEALTH_INTERVAL_SECONDS=3600)  # only the first check can decide

    answers = started("keyed_reads", key=tenant["key"], path=MEMBERS, count=40)
    answers += started("keyed_reads", key=tenant["key"], path=TENANT_READ, count=40)

    assert [answer["status"] for answer in answers] == [200] * 80
    assert _served_by_primary(answers) == []
    assert all(answer["reads"].get("replica_1", 0) >= 1 for answer in answers)
    assert [answer["in_recovery"] for answer in answers[40:]] == [True] * 40


def test_right_after_start_up_with_the_replica_stopped_reads_go_to_the_primary(driver, cluster):
    tenant = _tenant_made_elsewhere(driver)
    cluster.stop_replica()
    started = driver(REPLICA_COOLDOWN_SECONDS=3600)

    answers = started("keyed_reads", key=tenant["key"], path=TENANT_READ, count=5)

    assert [(answer["status"], answer["in_recovery"]) for answer in answers] == [(200, False)] * 5
    assert _state(started) == "down"  # decided by the first check, before the first read


def test_bookkeeping_writes_never_pin_the_tenants_reads(driver):
    """Every request here writes ``last_used_at`` and the API-call count (interval 0, flush every
    call), before and after its read-your-writes scope: its reads stay on the replica and the tenant
    is never pinned, even with a pin window longer than the test."""
    drive = driver(
        API_KEY_LAST_USED_INTERVAL_SECONDS=0,
        API_CALLS_FLUSH_EVERY=1,
        API_CALLS_BATCH=1,
        REPLICA_PIN_SECONDS=3600,
    )
    tenant = drive("setup")
    key, tenant_id = tenant["key"], tenant["tenant_id"]
    _poll(
        lambda: drive("keyed_reads", key=key, path=TENANT_READ, count=1)[0]["in_recovery"],
        "a keyed read served by the replica",
    )
    before = drive("bookkeeping", tenant_id=tenant_id)

    answers = drive("keyed_reads", key=key, path=TENANT_READ, count=40)
    answers += drive("keyed_reads", key=key, path=MEMBERS, count=40)

    after = drive("bookkeeping", tenant_id=tenant_id)
    assert after["last_used_at"] > before["last_used_at"]  # the writes did happen
    assert after["api_calls"] == before["api_calls"] + 80
    assert [answer["status"] for answer in answers] == [200] * 80
    assert _served_by_primary(answers) == []
    assert after["pinned"] is False


def _user_read(drive: Driver, user: str) -> dict:
    answer = drive("user_read", user=user)
    assert answer["status"] == 200, answer
    return answer["body"]


def test_a_session_user_without_tenant_is_pinned_after_a_write(driver):
    drive = driver(REPLICA_PIN_SECONDS=3)
    writer, other = drive("user_setup")["user"], drive("user_setup")["user"]
    _poll(lambda: _user_read(drive, writer)["in_recovery"], "a user read served by the replica")

    written = drive("user_write", user=writer, first_name="Ada")
    assert written["body"] == {"alias": "default", "first_name": "Ada", "in_recovery": False}
    assert _user_read(drive, writer) == written["body"]  # the next request, within the window
    assert _user_read(drive, other)["in_recovery"] is True

    after_window = _poll(
        lambda: (body := _user_read(drive, writer))["in_recovery"] and body,
        "the writer's reads back on the replica after the window",
    )
    assert after_window["first_name"] == "Ada"


def _state(drive: Driver) -> str:
    return drive("status")["replica_1"]["state"]


def _read_from_primary(drive: Driver, key: str) -> None:
    body = _read(drive, key)
    assert body["alias"] == "default" and body["in_recovery"] is False, body


def test_a_stopped_replica_is_taken_out_and_reads_keep_working(driver, cluster):
    drive = driver(REPLICA_COOLDOWN_SECONDS=60)
    key = drive("setup")["key"]
    _read_from_replica(drive, key)

    cluster.stop_replica()
    _poll(lambda: _state(drive) == "down", "the monitor sees the replica down")
    for _ in range(5):
        _read_from_primary(drive, key)


def test_a_replica_back_after_its_cool_down_serves_reads_again_without_errors(driver, cluster):
    drive = driver(REPLICA_COOLDOWN_SECONDS=1)
    key = drive("setup")["key"]
    _read_from_replica(drive, key)

    cluster.stop_replica()
    _poll(lambda: _state(drive) == "down", "the monitor sees the replica down")
    _read_from_primary(drive, key)
    cluster.start_replica()
    _read_from_replica(drive, key)  # every read on the way answers 200


def test_a_query_that_loses_its_replica_takes_it_out_at_once(driver, cluster):
    """Between two checks, the one request that meets the dead replica fails; the next ones don't."""
    drive = driver(REPLICA_HEALTH_INTERVAL_SECONDS=3600, REPLICA_COOLDOWN_SECONDS=3600)
    key = drive("setup")["key"]
    _read_from_replica(drive, key)

    cluster.stop_replica()
    assert drive("read", key=key)["status"] in (500, 503)
    assert _state(drive) == "down"
    _read_from_primary(drive, key)


def test_a_replica_lagging_beyond_the_limit_gets_no_reads(driver, cluster):
    drive = driver(REPLICA_MAX_LAG_SECONDS=1)
    key = drive("setup")["key"]
    _read_from_replica(drive, key)

    cluster.pause_replay()
    with psycopg.connect(cluster.primary_url, autocommit=True) as primary:
        primary.execute("CREATE TABLE lag_probe (at timestamptz DEFAULT now())")
        primary.execute("INSERT INTO lag_probe DEFAULT VALUES")
    lagging = _poll(
        lambda: (row := drive("status")["replica_1"])["state"] == "lagging" and row,
        "the monitor sees the replica lagging",
    )
    assert lagging["lag_seconds"] > 1
    for _ in range(5):
        _read_from_primary(drive, key)

    cluster.resume_replay()
    _read_from_replica(drive, key)


def test_a_promoted_replica_gets_no_reads(driver, own_cluster):
    drive = driver(own_cluster)
    key = drive("setup")["key"]
    _read_from_replica(drive, key)

    own_cluster.promote_replica()
    _poll(lambda: _state(drive) == "promoted", "the monitor sees the replica promoted")
    for _ in range(5):
        assert _read(drive, key)["alias"] == "default"


def test_a_forked_child_checks_the_replicas_itself(driver):
    drive = driver()
    _read_from_replica(drive, drive("setup")["key"])

    assert drive("fork") == {"first_answer_healthy": True, "decided_by_its_own_check": True}


def test_ops_endpoint_shows_each_replica_to_staff_only(driver):
    drive = driver()
    _read_from_replica(drive, drive("setup")["key"])

    staff = drive("ops", user="staff")
    assert staff["status"] == 200
    databases = {row["alias"]: row for row in staff["body"]["databases"]}
    assert databases["replica_1"]["state"] == "healthy"
    assert databases["replica_1"]["reads"] >= 1
    assert databases["default"]["state"] == "primary"

    member = drive("ops", user="member")
    assert member["status"] == 403
    assert member["body"]["error"]["code"] == "permission_denied"
    assert drive("ops", user="anonymous")["status"] in (401, 403)


def test_replicas_command_prints_each_replica_state(cluster):
    result = subprocess.run(
        [sys.executable, "manage.py", "replicas"],
        cwd=ROOT,
        env=_env(cluster),
        check=True,
        capture_output=True,
        text=True,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("replica_1"))
    assert "healthy" in line.split()
    assert f":{urlsplit(cluster.replica_url).port}" in line
