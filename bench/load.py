"""Throughput and latency of GET /api/v1/tenant/ over real HTTP, served by gunicorn.

Run it on real services (a throwaway PostgreSQL and Redis unless the environment names others):

    .venv/bin/python -m scripts.services run -- .venv/bin/python bench/load.py \\
        [--seconds 10] [--concurrency 8] [--workers 2]

It migrates the database, creates (or reuses) the tenant "bench-load" and issues it a fresh API key,
then for each scenario starts ``gunicorn config.wsgi:application`` (sync workers, ``--workers N``)
on a spare port of 127.0.0.1 with this process's environment plus the scenario's variables, waits
for ``/health/live``, sends warm-up requests, and drives GET /api/v1/tenant/ with ``--concurrency``
client threads for ``--seconds`` (or until ``--max-requests``, whichever comes first). Each request
opens a new connection (gunicorn's sync workers close it after every answer). Scenarios:

- ``cached``: ``ENABLE_CACHING`` default (true): key/tenant/plan resolution and the answer come from
  the cache (one Redis round trip for the generation, one for the answer);
- ``answer recomputed``: ``CACHE_DEFAULT_TIMEOUT=0``: resolution stays cached, but the view's answer
  is stored with no life, so every request recomputes it with SQL;
- ``uncached``: ``ENABLE_CACHING=false`` (a DummyCache): every request resolves the key, tenant and
  plan and computes the answer with SQL.

Every answer must be a 200: other statuses and connection failures are counted as errors and shown
in the table, and the run aborts (exit status 1) when more than 1% of a scenario's requests fail.

Prints a header (CPUs, memory, gunicorn workers, client concurrency, duration, database vendor and
cache backend) and per scenario: requests, errors, throughput (req/s), mean, p50, p95 and p99
latency in ms (measured by the client: connect, request, full response).

Caveat: the client threads, the gunicorn workers, PostgreSQL and Redis all share this machine's
CPUs (2 cores on the reference box), so the numbers are a relative comparison of the scenarios on
one machine, not the capacity of a deployment; the Python client itself takes a noticeable share.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import django

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402

from bench.report import total_memory_gib  # noqa: E402
from scripts.services import free_port  # noqa: E402
from tenants import services  # noqa: E402
from tenants.cache import tenant_cache_invalidate  # noqa: E402
from tenants.context import tenant_scope  # noqa: E402
from tenants.models import ApiKey, Plan, Tenant  # noqa: E402

#: The bench tenant's overrides: no rate limit, no monthly cap (API calls are still counted).
UNLIMITED_REQUESTS = {"requests_per_minute": None, "api_calls_per_month": None}

HOST = "127.0.0.1"
PATH = "/api/v1/tenant/"
SLUG = "bench-load"
KEY_NAME = "bench-load"
MAX_ERROR_RATE = 0.01
REQUEST_TIMEOUT = 10.0
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class Scenario:
    name: str
    env: dict[str, str]


SCENARIOS = (
    Scenario("cached", {}),
    Scenario("answer recomputed", {"CACHE_DEFAULT_TIMEOUT": "0"}),
    Scenario("uncached", {"ENABLE_CACHING": "false"}),
)


@dataclass
class Result:
    """What the client threads saw: latencies of the 200 answers, and the failures by kind."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, latencies_ms: list[float], errors: Counter[str]) -> None:
        with self._lock:
            self.latencies_ms.extend(latencies_ms)
            self.errors.update(errors)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + self.errors.total()

    @property
    def error_rate(self) -> float:
        return self.errors.total() / self.requests if self.requests else 1.0


class Budget:
    """A shared, thread-safe limit on the number of requests and on the time to send them."""

    def __init__(self, max_requests: int, seconds: float) -> None:
        self._left = max_requests
        self._deadline = time.monotonic() + seconds
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0 or time.monotonic() >= self._deadline:
                return False
            self._left -= 1
            return True


# --- Setup ------------------------------------------------------------------------------------


def setup() -> tuple[Tenant, str]:
    """Migrate, get the bench tenant, revoke its earlier bench keys and issue a new one."""
    call_command("migrate", verbosity=0)
    tenant = Tenant.objects.filter(slug=SLUG).first() or services.tenant_create(
        slug=SLUG, name="Bench load", plan=Plan.objects.get(code="pro")
    )
    # This bench measures caching, not limits (bench/ratelimit.py does): never refuse a request.
    tenant.limit_overrides = UNLIMITED_REQUESTS
    tenant.save(update_fields=["limit_overrides", "updated_at"])
    with tenant_scope(tenant):  # the plan caps active keys: do not pile them up across runs
        for old in ApiKey.objects.filter(name=KEY_NAME, revoked_at__isnull=True):
            services.api_key_revoke(api_key=old)
    return tenant, services.api_key_create(tenant=tenant, name=KEY_NAME).secret


def describe(args: argparse.Namespace) -> str:
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    return (
        f"machine: {os.cpu_count()} CPUs, {total_memory_gib():.1f} GiB; "
        f"gunicorn: {args.workers} sync workers; client: {args.concurrency} threads, "
        f"new connection per request; duration: {args.seconds:g}s per scenario "
        f"(cap {args.max_requests} requests); database: {connection.vendor}; "
        f"cache: {backend} (uncached: DummyCache)"
    )


# --- The server -------------------------------------------------------------------------------


def get(port: int, path: str, headers: dict[str, str]) -> int:
    """One GET on a new connection; returns the status once the whole body is read."""
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_until_live(process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {process.returncode} while starting")
        try:
            if get(port, "/health/live", {}) == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"/health/live did not answer 200 within {STARTUP_TIMEOUT:.0f}s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def gunicorn(workers: int, extra_env: dict[str, str], log: IO[bytes]) -> Iterator[int]:
    """A gunicorn serving the project on a spare port of 127.0.0.1; yields the port."""
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "config.wsgi:application",
        f"--bind={HOST}:{port}",
        f"--workers={workers}",
        "--log-level=warning",
    ]
    env = {**os.environ, **extra_env}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)  # noqa: S603
    try:
        wait_until_live(process, port)
        yield port
    finally:
        stop(process)


# --- The client -------------------------------------------------------------------------------


def client_thread(port: int, headers: dict[str, str], budget: Budget, result: Result) -> None:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    while budget.take():
        started = time.perf_counter()
        try:
            status = get(port, PATH, headers)
        except OSError as error:
            errors[type(error).__name__] += 1
            continue
        if status == 200:
            latencies.append((time.perf_counter() - started) * 1000)
        else:
            errors[f"HTTP {status}"] += 1
    result.add(latencies, errors)


def drive(port: int, secret: str, concurrency: int, seconds: float, max_requests: int) -> Result:
    """Send GET /api/v1/tenant/ from ``concurrency`` threads until the budget is spent."""
    headers = {"Authorization": f"Bearer {secret}", "Host": "localhost"}
    budget, result = Budget(max_requests, seconds), Result()
    threads = [
        threading.Thread(target=client_thread, args=(port, headers, budget, result))
        for _ in range(concurrency)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.elapsed_s = time.perf_counter() - started
    return result


def run_scenario(
    scenario: Scenario, tenant: Tenant, secret: str, args: argparse.Namespace
) -> Result:
    tenant_cache_invalidate(tenant)  # no answer cached by an earlier scenario is reachable
    connections.close_all()  # hold no database connection while the server runs
    with tempfile.TemporaryFile() as log:
        try:
            with gunicorn(args.workers, scenario.env, log) as port:
                drive(port, secret, args.concurrency, STARTUP_TIMEOUT, args.warmup)
                result = drive(port, secret, args.concurrency, args.seconds, args.max_requests)
        except RuntimeError as error:
            sys.exit(f"{scenario.name}: {error}\n--- gunicorn log ---\n{tail(log)}")
        if result.error_rate > MAX_ERROR_RATE:
            print(f"--- {scenario.name}: gunicorn log ---\n{tail(log)}", file=sys.stderr)
    return result


def tail(log: IO[bytes], size: int = 4000) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-size:]


# --- Report -----------------------------------------------------------------------------------


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


COLUMNS = f"{'scenario':<20}{'requests':>10}{'errors':>8}{'req/s':>10}{'mean ms':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  error kinds"


def row(name: str, result: Result) -> str:
    ordered = sorted(result.latencies_ms)
    mean = statistics.fmean(ordered) if ordered else float("nan")
    kinds = ", ".join(f"{kind} x{count}" for kind, count in result.errors.most_common()) or "-"
    return (
        f"{name:<20}{result.requests:>10}{result.errors.total():>8}"
        f"{result.requests / result.elapsed_s:>10.1f}{mean:>10.2f}"
        f"{percentile(ordered, 0.50):>9.2f}{percentile(ordered, 0.95):>9.2f}"
        f"{percentile(ordered, 0.99):>9.2f}  {kinds}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each scenario")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap per scenario")
    parser.add_argument("--warmup", type=int, default=100, help="requests before measuring")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    tenant, secret = setup()
    print(describe(args), flush=True)
    print(COLUMNS, flush=True)
    for scenario in SCENARIOS:
        result = run_scenario(scenario, tenant, secret, args)
        print(row(scenario.name, result), flush=True)
        if result.error_rate > MAX_ERROR_RATE:
            sys.exit(
                f"ABORTED: {result.error_rate:.1%} of the {scenario.name!r} requests failed "
                f"(more than {MAX_ERROR_RATE:.0%})"
            )


if __name__ == "__main__":
    main()
