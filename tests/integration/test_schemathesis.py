"""Schemathesis against the live tenant API: every ``/api/v1/`` operation, every check, every phase.

Real gunicorn (``config/gunicorn.py``) on this test's database and the suite's Redis; two tenants
with committed rows. The schemathesis CLI runs as a subprocess on the schema the server serves,
with ``--checks all``, the phases examples, coverage, fuzzing and stateful, deterministic
generation (the same cases every run) and ``MAX_EXAMPLES`` cases per operation and phase.

Authentication: the run's tenant-API key comes from a key dispenser this test serves (what a login
endpoint is to schemathesis, in a Web Fuzzing Commons auth file), not from a fixed header. The
stateful phase revokes keys it finds in ``GET /api/v1/api-keys/``, the run's own among them (it did
on its first runs: every later request was a 401 and then a 429, so the rest of the run tested
nothing). On a 401 schemathesis now fetches a new key and replays the request. The second tenant is
the peer of the first for ``object_level_authorization``: what one tenant reads, schemathesis reads
again with the other's key, which must not get it.

Not every operation can be reached with a key: ``POST /api/v1/invitations/accept/`` is for a
signed-in invitee only, so the run sees only its refusals (schemathesis warns ``missing_auth``; a
warning, not a failure). No check is excluded.

Output under ``var/schemathesis/``: the JSON, JUnit and NDJSON reports, the CLI's output, the
server's log, and ``summary.txt`` with the counts (also printed, for ``pytest -s``/``-rA``).

The test fails when schemathesis reports a failure or an error, when it tested fewer operations
than the schema has under ``/api/v1/`` (a broken filter must not pass by testing nothing), or when
a phase other than examples was skipped (the schema has no examples, so that one is).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from django.db import connections

from scripts.services import free_port, redis_server, wait_for_port
from tenants.models import ApiKey
from tests.factories import MembershipFactory, TenantFactory, issue_key, plan
from tests.live import live_database_url, stop_process

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OUT = ROOT / "var" / "schemathesis"

#: Cases per operation and phase: the whole run takes about 20 s on two cores.
MAX_EXAMPLES = 15
RUN_TIMEOUT = 600
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
#: As bench/ceiling.py: the per-minute limiter and the monthly API-call count run but never refuse
#: (how many requests a phase sends is not a contract), and keys never run out. ``max_members``
#: stays the plan's: members join only by accepting an invitation, which takes a signed-in
#: invitee (not a key), so the run cannot fill it by chance.
OVERRIDES = {
    "requests_per_minute": 10**9,
    "api_calls_per_month": None,
    "max_api_keys": None,
    "jobs_per_day": None,
}
TENANTS = ("tenant-a", "tenant-b")  # the first is the run's identity, the second its peer

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]


def _serve(stack: ExitStack, log: Path) -> str:
    """The Procfile's gunicorn on a spare port, its log in ``log``; stopped when ``stack`` closes.

    In full mode for jobs: a throwaway broker and no worker, so a job the run creates (a
    ``diagnostics.sleep`` of ten minutes among them) waits in the table instead of running inside
    the request, as it would in embedded mode."""
    port = free_port()
    env = {
        **os.environ,
        "CELERY_BROKER_URL": stack.enter_context(redis_server()),
        "JOBS_DIAGNOSTIC_KINDS": "true",
        "DATABASE_URL": live_database_url(),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_DEBUG": "false",
        "GUNICORN_ACCESS_LOG": "",
        # Bad keys are what ignored_auth sends, all from one address; past this budget they get a
        # 429 instead of a 401 for the rest of a clock minute, so the answer would depend on how
        # many land in one minute. tests/tenants covers that limiter.
        "RATELIMIT_AUTH_FAILURES_PER_MINUTE": str(10**6),
    }
    stderr = stack.enter_context(log.open("wb"))
    process = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "config.wsgi:application",
            "-c",
            "python:config.gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )

    stack.callback(stop_process, process)
    wait_for_port(port, timeout=30)
    return f"http://127.0.0.1:{port}"


def _dispense_keys(stack: ExitStack, tenants: dict) -> tuple[str, dict[str, list[int]]]:
    """A login endpoint for schemathesis: ``POST /<name>`` answers ``{"key": <a new API key of
    that tenant>}``. Returns its URL and the ids of the keys it issued, per tenant."""
    issued: dict[str, list[int]] = collections.defaultdict(list)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            tenant = tenants.get(self.path.strip("/"))
            if tenant is None:
                self.send_error(404)
                return
            try:
                key, secret = issue_key(tenant, name="schemathesis")
            finally:
                connections.close_all()  # this thread's; the test's own stay open
            issued[self.path.strip("/")].append(key.pk)
            body = json.dumps({"key": secret}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args) -> None:  # quiet
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stack.callback(lambda: (server.shutdown(), server.server_close(), thread.join(timeout=10)))
    return f"http://127.0.0.1:{server.server_port}", issued


def _auth_files(dispenser: str) -> Path:
    """The WFC auth document (one login per tenant) and the config file that names it."""
    token = {
        "extractFrom": "body",
        "extractSelector": "/key",
        "sendIn": "header",
        "sendName": "Authorization",
        "sendTemplate": "Bearer {token}",
    }
    document = {
        "auth": [
            {
                "name": name,
                "loginEndpointAuth": {
                    "verb": "POST",
                    "externalEndpointURL": f"{dispenser}/{name}",
                    "token": token,
                },
            }
            for name in TENANTS
        ]
    }
    (OUT / "auth.json").write_text(json.dumps(document, indent=2))
    config = OUT / "schemathesis.toml"
    peers = ", ".join(f'"{name}"' for name in TENANTS)
    config.write_text(
        f'[auth.wfc]\npath = "{OUT / "auth.json"}"\nuser = "{TENANTS[0]}"\npeers = [{peers}]\n'
    )
    return config


def _v1_operations(base_url: str) -> list[str]:
    with urllib.request.urlopen(f"{base_url}/api/schema/?format=json", timeout=30) as answer:
        schema = json.load(answer)
    return sorted(
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method in operations
        if method in HTTP_METHODS
    )


def _schemathesis(base_url: str, config: Path) -> subprocess.CompletedProcess:
    command = [
        str(BIN / "schemathesis"),
        "--no-color",
        "--config-file",
        str(config),
        "run",
        f"{base_url}/api/schema/?format=json",
        "--url",
        base_url,
        "--include-path-regex",
        "^/api/v1/",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",  # the same cases every run (a --seed is then not used)
        "--workers",
        "1",  # one request at a time: the stateful phase's order does not vary either
        "--continue-on-failure",
        "--request-timeout",
        "10",
        "--report",
        "json,junit,ndjson",
        "--report-json-path",
        str(OUT / "report.json"),
        "--report-junit-path",
        str(OUT / "junit.xml"),
        "--report-ndjson-path",
        str(OUT / "events.ndjson"),
    ]
    return subprocess.run(
        command,
        cwd=OUT,  # its .hypothesis/ and .schemathesis/ folders land here, not in the tree
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def _check_outcomes(events: Path) -> tuple[dict[str, collections.Counter], dict[str, str]]:
    """Per check, how many times it passed and failed; and which check each failure code is."""
    outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    codes: dict[str, str] = {}
    with events.open() as lines:
        for line in lines:
            event = json.loads(line)
            finished = event.get("ScenarioFinished")
            if not finished:
                continue
            for checks in finished.get("recorder", {}).get("checks", {}).values():
                for check in checks:
                    outcomes[check["name"]][check["status"]] += 1
                    failure = (check.get("failure_info") or {}).get("failure") or {}
                    if failure.get("code"):
                        codes[failure["code"]] = check["name"]
    return outcomes, codes


def _summary(report: dict, events: Path, expected: list[str], issued, seconds: float) -> str:
    outcomes, codes = _check_outcomes(events)
    ids = [pk for pks in issued.values() for pk in pks]
    revoked = ApiKey.all_tenants.filter(pk__in=ids, revoked_at__isnull=False).count()
    operations, cases = report["operations"], report["test_cases"]
    lines = [
        f"schemathesis {report['schemathesis_version']}: {report['command']}",
        f"exit code {report['exit_code']}, {seconds:.0f} s in all "
        f"(schemathesis {report['running_time']:.0f} s), {MAX_EXAMPLES} examples per operation",
        f"operations: {operations['tested']} tested of {operations['selected']} selected "
        f"({len(expected)} under /api/v1/ in the schema), {operations['errored']} errored, "
        f"{operations['skipped']} skipped",
        "phases: "
        + ", ".join(f"{name} {phase['status']}" for name, phase in report["phases"].items()),
        f"test cases: {cases['generated']} generated, {cases['with_failures']} with failures, "
        f"{cases['unique_failures']} unique failures, {cases['errored']} errored",
        "keys issued by the dispenser: "
        + ", ".join(f"{name} {len(pks)}" for name, pks in sorted(issued.items()))
        + f"; {revoked} of them revoked by the run, "
        f"{report['auth']['reauth_count']} re-authentications",
        "checks (passed / failed runs):",
        *(
            f"  {name}: {counts['success']} / {counts['failure']}"
            for name, counts in sorted(outcomes.items())
        ),
        "unique failures:",
        *(
            f"  {failure['code']} {codes.get(failure['code'], '?')} ({failure['title']}): "
            f"{failure['count']} in {', '.join(failure['operations'])}"
            for failure in report["failures"]
        ),
        *(f"error: {error}" for error in report["errors"]),
        *(f"warning {name}: {items}" for name, items in report["warnings"].items() if items),
    ]
    return "\n".join(lines) + "\n"


def _tenant(name: str, members: int):
    tenant = TenantFactory(slug=name, plan=plan("pro"), limit_overrides=OVERRIDES)
    MembershipFactory(tenant=tenant, role="owner")
    for _ in range(members):
        MembershipFactory(tenant=tenant, role="member")
    return tenant


def test_schemathesis_finds_nothing_on_the_tenant_api():
    shutil.rmtree(OUT, ignore_errors=True)  # no report of an earlier run is read by mistake
    OUT.mkdir(parents=True)
    tenants = {TENANTS[0]: _tenant(TENANTS[0], members=3), TENANTS[1]: _tenant(TENANTS[1], 1)}
    log = OUT / "gunicorn.log"
    started = time.monotonic()
    with ExitStack() as stack:
        base_url = _serve(stack, log)
        dispenser, issued = _dispense_keys(stack, tenants)
        expected = _v1_operations(base_url)
        run = _schemathesis(base_url, _auth_files(dispenser))
    seconds = time.monotonic() - started
    (OUT / "output.txt").write_text(run.stdout + run.stderr)
    report_file = OUT / "report.json"
    assert report_file.exists(), f"no report; schemathesis said:\n{run.stdout}\n{run.stderr}"
    report = json.loads(report_file.read_text())
    summary = _summary(report, OUT / "events.ndjson", expected, issued, seconds)
    (OUT / "summary.txt").write_text(summary)
    print(f"\n{summary}")
    if run.returncode != 0:
        print(run.stdout[-30000:], run.stderr[-5000:], sep="\n")
        print("gunicorn's log (last 5000 characters):", log.read_text()[-5000:], sep="\n")

    assert report["operations"]["tested"] >= len(expected), summary
    assert report["operations"]["errored"] == 0, summary
    skipped = [name for name, phase in report["phases"].items() if phase["status"] == "skip"]
    assert set(skipped) <= {"examples"}, summary
    assert run.returncode == 0, summary
