"""The tenant API's cached read against the ceiling: bare Django and bare DRF on the same server.

Run it on real services (a throwaway PostgreSQL and Redis unless the environment names others):

    .venv/bin/python -m scripts.services run -- .venv/bin/python bench/ceiling.py \\
        [--rounds 3] [--seconds 10] [--workers 2] [--connections 32] [--tenants 4] [--threads 2]

(``make bench`` runs exactly that with the defaults.) It needs ``wrk``: when it is missing and this
runs as root on a machine with apt-get, it runs ``apt-get install -y -qq wrk``; otherwise it stops
and says to.

Set-up: migrates the database, creates (or reuses) the tenants ``bench-ceiling-1..N`` on the "pro"
plan with ``limit_overrides = {"requests_per_minute": 10**9, "api_calls_per_month": None,
"max_api_keys": None}`` (the per-minute limiter and the monthly API-call count run but never refuse;
keys never run out over repeated runs), revokes their earlier "ceiling" keys and issues each a new
one with ``tenants.services.api_key_create``.

Servers: two gunicorns with the same flags (``--workers W --worker-class sync --log-level warning``,
a spare port of 127.0.0.1, no access log: gunicorn's default; ``--access-logfile None`` would log
every request to a file named "None"):

- the project, ``config.wsgi:application`` with this process's environment (DATABASE_URL,
  REDIS_URL, ...), DJANGO_DEBUG removed and DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost;
- the bare project, ``bare.wsgi:application`` from ``bench/`` (``bench/bare/``): what
  ``django-admin startproject`` and DRF give a new project (startproject's apps and middleware,
  DRF's default authentication, permission and renderers; no database touched, no cache), and no
  throttles. Its two views answer the same ~400-byte dict, shaped like the tenant answer.

Targets, each warmed up with ``--warmup`` requests (every answer must be a 200) and then measured in
interleaved rounds (round 1: project, bare DRF, bare Django; round 2: ...) so that drift on a shared
machine spreads over all of them:

- ``project``: ``GET /api/v1/tenant/`` with ``Authorization: Bearer <key>``, the key rotating over
  the N tenants per request (bench/ceiling_wrk.lua, keys passed in CEILING_KEYS): the warm, keyed,
  cached read of DESIGN.md's hot path budget;
- ``bare DRF``: ``GET /drf/``, an ``APIView`` answering a ``Response``;
- ``bare Django``: ``GET /django/``, a function view answering a ``JsonResponse``.

Each run is ``wrk -t T -c C -d S --latency -s bench/ceiling_wrk.lua URL``. Columns:

- ``requests``, ``req/s``: wrk's "N requests in ..." and "Requests/sec" (completed responses);
- ``p50 ms``, ``p99 ms``: wrk's latency distribution, measured from writing the request to reading
  the whole response (the TCP connect is not included; wrk's default 2 s timeout applies);
- ``errors``: "Non-2xx or 3xx responses" plus every socket error (connect, read, write, timeout).
  Gunicorn's sync workers answer ``Connection: close`` and close the socket after every response;
  wrk honours that header (it reconnects instead of counting an error: checked on this machine, the
  socket error counts are 0 with and without a ``Connection: close`` request header, so the script
  does not send one; CEILING_CONNECTION_CLOSE=1 adds it). A socket error here is a real failure;
- ``SQL/request``: transactions committed or rolled back in the database (``xact_commit +
  xact_rollback`` of ``pg_stat_database``) during the run, divided by the requests. Each autocommit
  query is one transaction (an atomic block of several queries is one), so 0 means no SQL at all
  and a non-zero figure is a lower bound on queries. PostgreSQL 15+ keeps these counters in shared
  memory, but a busy backend flushes its own at most once a second and, once idle, may hold them
  for up to 10 s (PGSTAT_IDLE_INTERVAL): so the "after" read of a target that has a database waits
  until 11 s after its load ended. The probe's own transactions (calibrated at start, 2 per
  interval: ``pg_stat_force_next_flush()`` so its own counts are flushed at once, then the read)
  are subtracted. Autovacuum in the bench database would be counted too (it is noise at these
  request counts);
- ``Redis cmds/request``: commands the Redis at REDIS_URL executed during the run (``INFO stats``
  ``total_commands_processed``, read right before and 0.2 s after wrk so in-flight requests land),
  minus the probe's own INFO, divided by the requests. Commands a Lua script runs inside Redis count
  too (django-redis runs ``incr`` as an ``EVAL`` of ``EXISTS`` + ``INCRBY``), so this is not the
  round-trip count;
- ``Redis round trips/request``: socket reads Redis served (``total_reads_processed``) during the
  run, minus the probe's own, divided by the requests: one per request/response exchange on an
  open connection, however many commands a pipeline or a script carries, which is what DESIGN.md's
  budget counts (opening a connection costs a few more; the workers keep theirs open). Equal to the
  commands column when every round trip carries one command. Both Redis columns are a little high
  (at most connections/requests, ~0.01 here): the requests wrk abandons at its deadline are served,
  and counted by Redis, but not by wrk.

After the tables: the project's commands per request by name, from ``INFO commandstats`` pooled
over its rounds (commands run by scripts are listed under their own names as well as the script's
``eval``), and the req/s ratios project/bare DRF and project/bare Django of the pooled medians. The
pooled line of a table is the median of its rounds, except ``requests`` and ``errors``: their sums.

Exit status 1 when a target's errors exceed 1% of its requests, or a warm-up answer is not a 200.
Every request goes to 127.0.0.1; gunicorn is stopped on the way out, whatever happened.

Caveat: wrk, the gunicorn workers, PostgreSQL and Redis share this machine's CPUs, so the figures
compare the targets on one machine; they are not a deployment's capacity.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
LUA_SCRIPT = BENCH / "ceiling_wrk.lua"
sys.path.insert(0, str(ROOT))

from bench.report import print_table, total_memory_gib  # noqa: E402
from scripts.services import free_port  # noqa: E402

HOST = "127.0.0.1"
SLUG = "bench-ceiling-{}"
KEY_NAME = "ceiling"
OVERRIDES = {"requests_per_minute": 10**9, "api_calls_per_month": None, "max_api_keys": None}
MAX_ERROR_RATE = 0.01
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 10.0
PG_SETTLE_SECONDS = 11.0  # PGSTAT_IDLE_INTERVAL (10 s) and a margin
REDIS_SETTLE_SECONDS = 0.2


# --- wrk --------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The path of wrk, installing the Debian package when this runs as root with apt-get."""
    found = shutil.which("wrk")
    if found:
        return found
    apt_get = shutil.which("apt-get")
    if os.geteuid() != 0 or apt_get is None:
        sys.exit("bench/ceiling.py needs wrk: install it (apt-get install wrk) and run again")
    print("[ceiling] wrk not found: apt-get install -y -qq wrk", file=sys.stderr, flush=True)
    install = [apt_get, "install", "-y", "-qq", "wrk"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, check=False).returncode != 0:  # noqa: S603
        subprocess.run([apt_get, "update", "-qq"], env=env, check=False)  # noqa: S603
        subprocess.run(install, env=env, check=False)  # noqa: S603
    found = shutil.which("wrk")
    if not found:
        sys.exit("apt-get could not install wrk: install it (apt-get install wrk) and run again")
    return found


@dataclass
class WrkResult:
    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int]

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _duration_ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    """Read wrk's summary: the request count, Requests/sec, the 50%/99% latencies and the errors."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"no {pattern!r} in wrk's output:\n{output}")
        return match

    p50, p99 = (find(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m|h)\s*$") for q in (50, 99))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests=int(find(r"^\s*(\d+) requests in ").group(1)),
        requests_per_second=float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=_duration_ms(*p50.groups()),
        p99_ms=_duration_ms(*p99.groups()),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(
            zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True)
        )
        if sockets
        else {},
    )


def run_wrk(wrk: str, url: str, keys: list[str], args: argparse.Namespace) -> WrkResult:
    command = [
        wrk,
        f"--threads={args.threads}",
        f"--connections={args.connections}",
        f"--duration={args.seconds}s",
        "--latency",
        f"--script={LUA_SCRIPT}",
        url,
    ]
    env = {**os.environ, "CEILING_KEYS": ",".join(keys)}
    done = subprocess.run(  # noqa: S603
        command, env=env, capture_output=True, text=True, timeout=args.seconds + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with status {done.returncode}: {done.stderr}")
    return parse_wrk(done.stdout)


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    return (done.stdout or done.stderr).split(" [", 1)[0].strip()


# --- The project: database set-up and the server-side counters --------------------------------


def setup_project(tenants: int) -> list[str]:
    """Migrate, get or create the bench tenants, and issue each a fresh key; returns the secrets."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()

    from django.core.management import call_command
    from django.db import connections

    from tenants import services
    from tenants.context import tenant_scope
    from tenants.models import ApiKey, Plan, Tenant

    call_command("migrate", interactive=False, verbosity=0)
    plan = Plan.objects.get(code="pro")
    secrets = []
    for number in range(1, tenants + 1):
        slug = SLUG.format(number)
        tenant = Tenant.objects.filter(slug=slug).first() or services.tenant_create(
            slug=slug, name=slug, plan=plan
        )
        tenant.limit_overrides = OVERRIDES
        tenant.full_clean()
        tenant.save(update_fields=["limit_overrides", "updated_at"])  # invalidates its cache entry
        with tenant_scope(tenant):
            for old in ApiKey.objects.filter(name=KEY_NAME, revoked_at__isnull=True):
                services.api_key_revoke(api_key=old)
        secrets.append(services.api_key_create(tenant=tenant, name=KEY_NAME).secret)
    connections.close_all()  # hold no database connection (nor its pending stats) while measuring
    return secrets


class Probes:
    """Server-side counters: PostgreSQL transactions and Redis commands/reads, minus our own."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        import psycopg
        import redis

        self._pg = psycopg.connect(database_url, autocommit=True, connect_timeout=5)
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5)
        self.database_until = 0.0  # monotonic time before which backends may hold pending stats
        self._own_sql = 0
        self._own_redis: Counter[str] = Counter()
        self._calibrate()

    def close(self) -> None:
        self._pg.close()
        self._redis.close()

    def _calibrate(self) -> None:
        """What two consecutive probes count of themselves, while nothing else runs."""
        sql = [self._sql_raw() for _ in range(4)]
        redis = [self._redis_raw() for _ in range(4)]
        self._own_sql = min(after - before for before, after in itertools.pairwise(sql))
        deltas = [after - before for before, after in itertools.pairwise(redis)]
        names = set().union(*deltas)
        self._own_redis = Counter({name: min(delta[name] for delta in deltas) for name in names})

    def versions(self) -> str:
        postgres = self._pg.execute("SHOW server_version").fetchone()[0].split()[0]
        redis = self._redis.info("server")["redis_version"]
        return f"PostgreSQL {postgres}, Redis {redis}"

    def _sql_raw(self) -> int:
        # Force this backend's next flush, when this statement ends; the scan of pg_database gives
        # it a pending entry, without which PostgreSQL 15 skips the flush and with it the counts
        # of its own earlier transactions.
        self._pg.execute(
            "SELECT pg_stat_force_next_flush() FROM pg_database WHERE datname = current_database()"
        )
        row = self._pg.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
        return int(row[0])

    def _redis_raw(self) -> Counter[str]:
        info = self._redis.execute_command("INFO", "stats", "commandstats")
        counts = Counter(
            {
                "commands": int(info["total_commands_processed"]),
                "round trips": int(info["total_reads_processed"]),
            }
        )
        for name, stats in info.items():
            if name.startswith("cmdstat_"):
                counts["cmd " + name.removeprefix("cmdstat_")] = int(stats["calls"])
        return counts

    def sql(self) -> int:
        """The database's transaction count, once every backend has flushed what it counted."""
        time.sleep(max(0.0, self.database_until - time.monotonic()))
        return self._sql_raw()

    def sql_delta(self, before: int, after: int) -> int:
        return after - before - self._own_sql

    def redis(self) -> Counter[str]:
        return self._redis_raw()

    def redis_delta(self, before: Counter[str], after: Counter[str]) -> Counter[str]:
        delta = Counter(after)
        delta.subtract(before)
        delta.subtract(self._own_redis)
        return Counter({name: count for name, count in delta.items() if count})


# --- The servers ------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    log: Path

    def tail(self, size: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """One GET on a new connection; returns the status and the whole body."""
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()  # the master stops its workers
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: the master and its workers
        process.wait()


@contextmanager
def gunicorn(
    name: str, app: str, cwd: Path, env: dict[str, str], ready_path: str, workers: int, logs: Path
) -> Iterator[Server]:
    """A gunicorn serving ``app`` on a spare port of 127.0.0.1, once ``ready_path`` answers 200."""
    port = free_port()
    log = logs / f"{name.replace(' ', '-')}.log"
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        app,
        f"--workers={workers}",
        "--worker-class=sync",
        f"--bind={HOST}:{port}",
        f"--error-logfile={log}",
        "--log-level=warning",
    ]
    with log.open("ab") as output:
        process = subprocess.Popen(  # noqa: S603
            command, cwd=cwd, env=env, stdout=output, stderr=output, start_new_session=True
        )
    server = Server(name, process, port, log)
    try:
        wait_until_ready(server, ready_path)
        yield server
    finally:
        stop(process)


def wait_until_ready(server: Server, path: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if server.process.poll() is not None:
            problem = f"gunicorn exited with status {server.process.returncode}"
            break
        try:
            if get(server.port, path, {})[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            problem = f"{path} did not answer 200 within {STARTUP_TIMEOUT:.0f}s"
            break
        time.sleep(0.1)
    raise RuntimeError(f"{server.name}: {problem}\n--- gunicorn log ---\n{server.tail()}")


# --- Targets and rounds -----------------------------------------------------------------------


@dataclass
class Round:
    wrk: WrkResult
    sql: int
    redis: Counter[str]

    def per_request(self, count: float) -> float:
        return count / self.wrk.requests if self.wrk.requests else float("nan")


@dataclass
class Target:
    name: str
    server: Server
    path: str
    keys: list[str]
    uses_database: bool
    rounds: list[Round] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.port}{self.path}"

    @property
    def requests(self) -> int:
        return sum(r.wrk.requests for r in self.rounds)

    @property
    def errors(self) -> int:
        return sum(r.wrk.errors for r in self.rounds)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 1.0


def warm_up(target: Target, requests: int) -> None:
    """``requests`` sequential GETs, rotating the keys; every answer must be a 200."""
    for number in range(requests):
        headers = {}
        if target.keys:
            headers["Authorization"] = f"Bearer {target.keys[number % len(target.keys)]}"
        status, body = get(target.server.port, target.path, headers)
        if status != 200:
            raise RuntimeError(
                f"{target.name}: warm-up GET {target.path} answered {status}: {body[:500]!r}\n"
                f"--- {target.server.name}: gunicorn log ---\n{target.server.tail()}"
            )


def measure(target: Target, wrk: str, probes: Probes, args: argparse.Namespace) -> Round:
    sql_before = probes.sql()
    redis_before = probes.redis()
    result = run_wrk(wrk, target.url, target.keys, args)
    time.sleep(REDIS_SETTLE_SECONDS)  # requests wrk abandoned at the deadline finish on the server
    redis_after = probes.redis()
    if target.uses_database:
        probes.database_until = time.monotonic() + PG_SETTLE_SECONDS
    sql_after = probes.sql()
    return Round(
        wrk=result,
        sql=probes.sql_delta(sql_before, sql_after),
        redis=probes.redis_delta(redis_before, redis_after),
    )


# --- Report -----------------------------------------------------------------------------------

COLUMNS = (
    "round",
    "requests",
    "req/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "SQL/request",
    "Redis cmds/request",
    "Redis round trips/request",
)


def round_cells(label: str, result: Round) -> list[str]:
    wrk = result.wrk
    return [
        label,
        str(wrk.requests),
        f"{wrk.requests_per_second:.1f}",
        f"{wrk.p50_ms:.2f}",
        f"{wrk.p99_ms:.2f}",
        error_cell(wrk.errors, wrk.socket_errors, wrk.non_2xx),
        f"{result.per_request(result.sql):.3f}",
        f"{result.per_request(result.redis['commands']):.2f}",
        f"{result.per_request(result.redis['round trips']):.2f}",
    ]


def error_cell(total: int, sockets: dict[str, int], non_2xx: int) -> str:
    if not total:
        return "0"
    kinds = [f"non-2xx {non_2xx}"] if non_2xx else []
    kinds += [f"{kind} {count}" for kind, count in sockets.items() if count]
    return f"{total} ({', '.join(kinds)})"


def pooled_cells(target: Target) -> list[str]:
    def median(values) -> float:
        return statistics.median(list(values))

    sockets: Counter[str] = Counter()
    for r in target.rounds:
        sockets.update(r.wrk.socket_errors)
    non_2xx = sum(r.wrk.non_2xx for r in target.rounds)
    rounds = target.rounds
    return [
        "**median**",
        str(target.requests),
        f"{median(r.wrk.requests_per_second for r in rounds):.1f}",
        f"{median(r.wrk.p50_ms for r in rounds):.2f}",
        f"{median(r.wrk.p99_ms for r in rounds):.2f}",
        error_cell(target.errors, dict(sockets), non_2xx),
        f"{median(r.per_request(r.sql) for r in rounds):.3f}",
        f"{median(r.per_request(r.redis['commands']) for r in rounds):.2f}",
        f"{median(r.per_request(r.redis['round trips']) for r in rounds):.2f}",
    ]


def print_target(target: Target) -> None:
    print(f"\n### {target.name}: GET {target.path}\n")
    rounds = [round_cells(str(number), result) for number, result in enumerate(target.rounds, 1)]
    print_table(COLUMNS, [*rounds, pooled_cells(target)])


def command_breakdown(target: Target) -> str:
    """Redis commands per request by name, pooled over the target's rounds."""
    calls: Counter[str] = Counter()
    for r in target.rounds:
        calls.update({k: v for k, v in r.redis.items() if k.startswith("cmd ")})
    if not target.requests or not calls:
        return "none"
    return ", ".join(
        f"{name.removeprefix('cmd ')} {count / target.requests:.3g}"
        for name, count in calls.most_common()
    )


def median_rps(target: Target) -> float:
    return statistics.median(r.wrk.requests_per_second for r in target.rounds)


def describe(args: argparse.Namespace, wrk: str, probes_info: str) -> str:
    return (
        f"machine: {os.cpu_count()} CPUs, {total_memory_gib():.1f} GiB; "
        f"gunicorn: {args.workers} sync workers per server; "
        f"{wrk_version(wrk)}: {args.threads} threads, {args.connections} connections, "
        f"{args.seconds}s per run; rounds: {args.rounds}; tenants: {args.tenants} "
        f"(key rotated per request); {probes_info}"
    )


# --- Main -------------------------------------------------------------------------------------


def load_arguments(description: str, *, seconds: int) -> argparse.Namespace:
    """The load options every server-against-ceiling bench takes (this one, bench/metrics.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every target")
    parser.add_argument("--seconds", type=int, default=seconds, help="duration of each wrk run")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers per server")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--tenants", type=int, default=4, help="tenants (one key each)")
    parser.add_argument("--warmup", type=int, default=300, help="requests before measuring")
    args = parser.parse_args()
    if min(args.rounds, args.seconds, args.workers, args.threads, args.tenants) < 1:
        parser.error("--rounds, --seconds, --workers, --threads and --tenants must be at least 1")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads (wrk's rule)")
    return args


def main() -> int:
    args = load_arguments(__doc__.splitlines()[0], seconds=10)
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not (database_url and redis_url):
        sys.exit(
            "DATABASE_URL and REDIS_URL must name PostgreSQL and Redis: run it under "
            "`python -m scripts.services run -- ...`"
        )
    wrk = ensure_wrk()
    keys = setup_project(args.tenants)

    base_env = {k: v for k, v in os.environ.items() if k != "DJANGO_DEBUG"}
    project_env = {**base_env, "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost"}
    bare_env = {**base_env, "DJANGO_SETTINGS_MODULE": "bare.settings"}

    with ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ils-ceiling-")))
        probes = Probes(database_url, redis_url)
        stack.callback(probes.close)
        try:
            project = stack.enter_context(
                gunicorn(
                    "project",
                    "config.wsgi:application",
                    ROOT,
                    project_env,
                    "/health/live",
                    args.workers,
                    logs,
                )
            )
            bare = stack.enter_context(
                gunicorn(
                    "bare", "bare.wsgi:application", BENCH, bare_env, "/django/", args.workers, logs
                )
            )
            targets = [
                Target("project", project, "/api/v1/tenant/", keys, uses_database=True),
                Target("bare DRF", bare, "/drf/", [], uses_database=False),
                Target("bare Django", bare, "/django/", [], uses_database=False),
            ]
            for target in targets:
                warm_up(target, args.warmup)
                if target.uses_database:
                    probes.database_until = time.monotonic() + PG_SETTLE_SECONDS
            print(describe(args, wrk, probes.versions()), flush=True)
            for number in range(1, args.rounds + 1):
                for target in targets:
                    target.rounds.append(measure(target, wrk, probes, args))
                    result = target.rounds[-1].wrk
                    print(
                        f"[ceiling] round {number}/{args.rounds} {target.name}: "
                        f"{result.requests_per_second:.1f} req/s, {result.errors} errors",
                        file=sys.stderr,
                        flush=True,
                    )
        except RuntimeError as error:
            print(f"ABORTED: {error}", file=sys.stderr)
            return 1

        for target in targets:
            print_target(target)
        print(f"\nRedis commands per request, {targets[0].name}: {command_breakdown(targets[0])}")
        for target in targets[1:]:
            print(f"Redis commands per request, {target.name}: {command_breakdown(target)}")
        project_rps = median_rps(targets[0])
        for target in targets[1:]:
            print(
                f"req/s {targets[0].name} / {target.name}: {project_rps / median_rps(target):.2f} "
                f"({project_rps:.1f} / {median_rps(target):.1f})"
            )

        failed = [t for t in targets if t.error_rate > MAX_ERROR_RATE]
        for target in failed:
            print(
                f"FAILED: {target.errors} of {target.name}'s {target.requests} requests "
                f"failed (more than {MAX_ERROR_RATE:.0%})\n--- {target.server.name}: "
                f"gunicorn log ---\n{target.server.tail()}",
                file=sys.stderr,
            )
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
