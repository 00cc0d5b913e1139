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

from config.replicas import monitor  # noqa: E402
from tenants import services  # noqa: E402
from tenants.context import tenant_scope  # noqa: E402
from tenants.models import Plan, Tenant  # noqa: E402

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
    """What the monitor of a forked child (a prefork worker) says at once, and a moment later."""
    monitor.readable_aliases()  # the parent's monitor is running
    pid = os.fork()
    if pid == 0:
        first = monitor.readable_aliases()
        deadline = time.monotonic() + 20
        while not (later := monitor.readable_aliases()) and time.monotonic() < deadline:
            time.sleep(0.05)
        os._exit(10 * bool(first) + (0 if later == ["replica_1"] else 1))
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return {"trusted_parent_state": code >= 10, "checked_on_its_own": code % 10 == 0}


OPS = {
    "user_setup": user_setup,
    "user_read": user_read,
    "user_write": user_write,
    "fork": fork,
    "setup": setup,
    "read_outside_request": read_outside_request,
    "read": read,
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
