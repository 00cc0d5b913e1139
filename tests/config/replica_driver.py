"""Runs the real settings against a primary + replica and answers one JSON command per line.

Started by ``test_replicas.py`` with ``DATABASE_URL``, ``DATABASE_READ_REPLICAS``,
``USE_READ_REPLICAS=1`` and the ``REPLICA_*`` variables of the scenario, so the settings, router,
middleware and monitor thread are wired exactly as in production. The test breaks the servers
between commands. Answers are printed as ``@@{json}`` lines (logging goes to stderr).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import close_old_connections  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

from config.db_router import PIN_KEY_PREFIX  # noqa: E402
from config.replicas import monitor  # noqa: E402
from tenants import services  # noqa: E402
from tenants.cache import global_cache  # noqa: E402
from tenants.context import tenant_scope  # noqa: E402
from tenants.limits.registry import API_CALLS_PER_MONTH  # noqa: E402
from tenants.models import ApiKey, Plan, Tenant, TenantUsage  # noqa: E402

PROBE_URLS = "tests.config.urls_replicas"


def _client() -> Client:
    return Client(SERVER_NAME="localhost", raise_request_exception=False)


def _request(send) -> dict:
    """One request, with the connection handling of a real server that the test client skips.

    Like ``WSGIHandler``, close (return to the pool) the connections before and after, so the next
    request checks a connection out of the pool as it would in production.
    """
    close_old_connections()
    try:
        return _answer(send())
    finally:
        close_old_connections()


def _answer(response) -> dict:
    is_json = response.headers.get("Content-Type", "").startswith("application/json")
    return {"status": response.status_code, "body": response.json() if is_json else None}


def setup(_: dict) -> dict:
    plan, _ = Plan.objects.get_or_create(code="pro", defaults={"name": "Pro"})
    slug = f"t{uuid.uuid4().hex[:12]}"
    tenant = services.tenant_create(slug=slug, name=slug, plan=plan)
    with tenant_scope(tenant):
        issued = services.api_key_create(tenant=tenant, name="driver")
    _wait_until_replicated(tenant.pk)
    return {"key": issued.secret, "tenant_id": tenant.pk}


def _wait_until_replicated(tenant_id: int) -> None:
    """Replication is asynchronous: a scenario starts once the replica has the new tenant."""
    deadline = time.monotonic() + 20
    while not Tenant.objects.using("replica_1").filter(pk=tenant_id).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the replica did not receive the new tenant")
        time.sleep(0.05)


def read(command: dict) -> dict:
    path = "/probe/read-in-transaction" if command.get("in_transaction") else "/probe/read"
    return _request(lambda: _client().get(path, HTTP_AUTHORIZATION=f"Bearer {command['key']}"))


def _reads_by_alias() -> dict[str, int]:
    return {row["alias"]: row["reads"] for row in monitor.snapshot()}


def keyed_reads(command: dict) -> list[dict]:
    """``count`` sequential keyed GETs of ``path`` through the whole middleware chain.

    Per request: its status, ``in_recovery`` when the answer carries it, and how many routed reads
    each database served (the monitor's counters; only reads this process routes are counted).
    """
    answers = []
    for _ in range(command["count"]):
        before = _reads_by_alias()
        answer = _request(
            lambda: _client().get(command["path"], HTTP_AUTHORIZATION=f"Bearer {command['key']}")
        )
        after = _reads_by_alias()
        body = answer["body"] if isinstance(answer["body"], dict) else {}
        answers.append(
            {
                "status": answer["status"],
                "in_recovery": body.get("in_recovery"),
                "reads": {
                    alias: count - before.get(alias, 0)
                    for alias, count in after.items()
                    if count != before.get(alias, 0)
                },
            }
        )
    return answers


def bookkeeping(command: dict) -> dict:
    """What the request path recorded for the tenant, read on the primary: the key's
    ``last_used_at``, the durable API-call count, and whether the tenant is pinned."""
    tenant_id = command["tenant_id"]
    last_used = (
        ApiKey.all_tenants.using("default")
        .filter(tenant_id=tenant_id)
        .values_list("last_used_at", flat=True)
        .get()
    )
    api_calls = sum(
        TenantUsage.all_tenants.using("default")
        .filter(tenant_id=tenant_id, resource=API_CALLS_PER_MONTH)
        .values_list("used", flat=True)
    )
    return {
        "last_used_at": last_used.isoformat() if last_used else None,
        "api_calls": api_calls,
        "pinned": global_cache().get(f"{PIN_KEY_PREFIX}:tenant:{tenant_id}") is not None,
    }


def read_outside_request(command: dict) -> dict:
    """A read with no request or task scope, as in a management command."""
    queryset = Tenant.objects.filter(pk=command["tenant_id"])
    queryset.get()
    return {"alias": queryset.db}


def write(command: dict) -> dict:
    return _request(
        lambda: _client().post(
            "/probe/write",
            json.dumps({"name": command["name"]}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {command['key']}",
        )
    )


_user_clients: dict[str, Client] = {}


def user_setup(_: dict) -> dict:
    """A signed-in user (session cookie), member of no tenant; ``user`` names its client."""
    user = get_user_model().objects.create_user(username=f"u{uuid.uuid4().hex[:12]}")
    client = _client()
    client.force_login(user)
    deadline = time.monotonic() + 20
    while not get_user_model().objects.using("replica_1").filter(pk=user.pk).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the replica did not receive the new user")
        time.sleep(0.05)
    _user_clients[user.username] = client
    return {"user": user.username}


def user_read(command: dict) -> dict:
    return _request(lambda: _user_clients[command["user"]].get("/probe/user/read"))


def user_write(command: dict) -> dict:
    return _request(
        lambda: _user_clients[command["user"]].post(
            "/probe/user/write",
            json.dumps({"first_name": command["first_name"]}),
            content_type="application/json",
        )
    )


def status(_: dict) -> dict:
    return {row["alias"]: row for row in monitor.snapshot()}


def ops(command: dict) -> dict:
    client = _client()
    if command["user"] != "anonymous":
        user = get_user_model().objects.create_user(
            username=f"u{uuid.uuid4().hex[:12]}", is_staff=command["user"] == "staff"
        )
        client.force_login(user)
    return _request(lambda: client.get("/api/ops/replicas"))


def fork(_: dict) -> dict:
    """What the monitor of a forked child (a prefork worker) answers first, and on what grounds.

    The child must not trust the parent's states: its first answer waits for a check of its own,
    so the check time it shows then is after the fork.
    """
    monitor.readable_aliases()  # the parent's monitor is running and has seen the replica
    forked_at = time.time()
    pid = os.fork()
    if pid == 0:
        first = monitor.readable_aliases()
        checked_at = next(r for r in monitor.snapshot() if r["alias"] == "replica_1")["checked_at"]
        own_check = checked_at is not None and checked_at >= forked_at
        os._exit(10 * (first == ["replica_1"]) + own_check)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return {"first_answer_healthy": code // 10 == 1, "decided_by_its_own_check": code % 10 == 1}


OPS = {
    "user_setup": user_setup,
    "user_read": user_read,
    "user_write": user_write,
    "fork": fork,
    "setup": setup,
    "read_outside_request": read_outside_request,
    "read": read,
    "keyed_reads": keyed_reads,
    "bookkeeping": bookkeeping,
    "write": write,
    "status": status,
    "ops": ops,
}


def main() -> None:
    with override_settings(ROOT_URLCONF=PROBE_URLS):
        for line in sys.stdin:
            command = json.loads(line)
            try:
                answer = {"ok": True, "result": OPS[command["op"]](command)}
            except Exception as error:  # reported to the test, which fails with it
                answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            print("@@" + json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
