"""What the metrics features cost per request: the tenant API's cached read, feature by feature.

Run it on real services (a throwaway PostgreSQL and Redis unless the environment names others):

    .venv/bin/python -m scripts.services run -- .venv/bin/python bench/metrics.py \\
        [--rounds 3] [--seconds 8] [--workers 2] [--connections 32] [--tenants 4] [--threads 2]

(``make bench-metrics`` runs exactly that with the defaults.) Everything but the servers' variants
is bench/ceiling.py's, imported from it: the set-up (``setup_project``: the tenants
``bench-ceiling-1..N`` on "pro" with ``limit_overrides`` that never refuse, a fresh "ceiling" key
each), wrk (``ensure_wrk``, ``bench/ceiling_wrk.lua``: the key rotating over the tenants per
request), the gunicorn servers (``--workers W --worker-class sync``, a spare port of 127.0.0.1, no
access log), the warm-up (``--warmup`` GETs, every answer a 200), the server-side counters (SQL
transactions from ``pg_stat_database`` read 11 s after a run that had a database, Redis commands
and round trips from ``INFO``, each minus the probe's own) and the machine line. Read its
docstring for what each column measures.

Servers: six gunicorns of ``config.wsgi:application`` (the project, with this process's
environment, DJANGO_DEBUG removed, DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost), which differ only in
the metrics switches they are given (the settings read them at start; any of them in this process's
environment is dropped first), each step adding one feature to the one before:

- ``all off``: METRICS_ENABLED=false (no metrics middleware, no django-prometheus middleware, so
  no query monitor and no per-tenant usage either);
- ``+ request metrics``: METRICS_ENABLED=true, METRICS_DJANGO_PROMETHEUS=false,
  QUERY_MONITOR_ENABLED=false, TENANT_METRICS_ENABLED=false (the request counter and latency
  histogram of ``metrics.middleware``);
- ``+ django-prometheus``: the above and METRICS_DJANGO_PROMETHEUS=true;
- ``+ per-tenant usage``: the above and TENANT_METRICS_ENABLED=true;
- ``+ query monitor 10%``: the above and QUERY_MONITOR_ENABLED=true, QUERY_MONITOR_SAMPLE_RATE=0.1
  (everything on: the defaults);
- ``+ query monitor 100%``: the above with QUERY_MONITOR_SAMPLE_RATE=1.0;

and bench/ceiling.py's bare project (``bench/bare/``) for the ceilings ``bare DRF`` (``GET /drf/``)
and ``bare Django`` (``GET /django/``). Every project variant is measured on ``GET
/api/v1/tenant/`` with the rotating key, exactly as ceiling.py's ``project`` target.

Prometheus multiprocess mode: ``config/gunicorn.py`` (the Procfile's ``-c python:config.gunicorn``)
gives a server its own PROMETHEUS_MULTIPROC_DIR, but these servers are started with ceiling.py's
flags, not that config; so every variant with METRICS_ENABLED=true is given PROMETHEUS_MULTIPROC_DIR
naming a new empty folder of its own (under this run's temporary folder), and what is measured is
the production mode: each worker's counters in memory-mapped files. After its warm-up, each such
variant must have written ``*.db`` files there and answer ``GET /metrics`` (loopback is allowed)
with a 200 in which django-prometheus's ``django_http_requests_before_middlewares_total`` is
positive exactly when METRICS_DJANGO_PROMETHEUS is on: the switches took effect, or the run stops.

Rounds: every target once per round, interleaved as in ceiling.py; round r starts r targets
further down the list (a rotation), so no target is always first or always after the same idle
wait. Each run is ``wrk -t T -c C -d S --latency -s bench/ceiling_wrk.lua URL``.

Table, one line per target: ``requests`` (the sum over rounds), ``req/s``, ``p50 ms``, ``p99 ms``
(medians over rounds), ``errors`` (the sum: non-2xx answers and socket errors; it must be 0),
``SQL/request``, ``Redis cmds/request``, ``Redis round trips/request`` (medians of the rounds'
figures; ceiling.py's definitions), ``x bare DRF`` (req/s over bare DRF's req/s) and ``us/request
vs all off``: ``1e6 / req/s(target) - 1e6 / req/s(all off)``, microseconds. On a machine this small
wrk, the workers, PostgreSQL and Redis share the CPUs, and the workers (2 by default) do not use
all of them, so this is a cost in throughput (machine time per request), not a latency: the p50
column is the latency. Below the table: req/s of every round (the spread says which differences
are noise), SQL transactions and Redis commands of every round, and Redis commands per request by
name.

Background work: the per-tenant usage table and the query monitor's sums are flushed by a thread
of each worker (TENANT_METRICS_FLUSH_SECONDS, 10 s; QUERY_MONITOR_FLUSH_SECONDS, 30 s), off the
request path; their transactions land in the SQL counts of the run during or after which they ran
(a few per run: about 0.001 per request at these request counts). The per-round SQL counts show
them. The metrics features must add nothing to a request's own SQL or Redis round trips.

Runtime with the defaults, on 2 CPUs: 8 targets x 3 rounds x 8 s of wrk, plus 11 s after each of the
18 project runs for the SQL counters, plus start-up and warm-ups: about 7 minutes.

Then bench/metrics_inprocess.py (its docstring): the same steps in one process, serially, through
Django's test client, where the per-tenant counters' and the query monitor's costs are not lost in
the noise; about 2 more minutes.

Exit status 1 when a target had any error (or the in-process part failed), a warm-up answer was not a 200, a server did not start
(its gunicorn log is shown) or a variant's switches did not take effect. Every request goes to
127.0.0.1; every gunicorn is stopped on the way out, whatever happened.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ceiling import (  # noqa: E402
    BENCH,
    PG_SETTLE_SECONDS,
    Probes,
    Target,
    command_breakdown,
    describe,
    ensure_wrk,
    error_cell,
    get,
    gunicorn,
    load_arguments,
    measure,
    median_rps,
    setup_project,
    warm_up,
)
from bench.report import print_table  # noqa: E402

PATH = "/api/v1/tenant/"
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
SWITCHES = (
    "METRICS_ENABLED",
    "METRICS_DJANGO_PROMETHEUS",
    "QUERY_MONITOR_ENABLED",
    "QUERY_MONITOR_SAMPLE_RATE",
    "TENANT_METRICS_ENABLED",
    MULTIPROC_DIR,
)
DJANGO_PROMETHEUS_COUNTER = "django_http_requests_before_middlewares_total"


@dataclass(frozen=True)
class Variant:
    name: str
    slug: str
    env: dict[str, str]

    @property
    def metrics(self) -> bool:
        return self.env["METRICS_ENABLED"] == "true"

    @property
    def django_prometheus(self) -> bool:
        return self.metrics and self.env["METRICS_DJANGO_PROMETHEUS"] == "true"


_REQUEST_METRICS = {
    "METRICS_ENABLED": "true",
    "METRICS_DJANGO_PROMETHEUS": "false",
    "QUERY_MONITOR_ENABLED": "false",
    "TENANT_METRICS_ENABLED": "false",
}
_DJANGO_PROMETHEUS = {**_REQUEST_METRICS, "METRICS_DJANGO_PROMETHEUS": "true"}
_USAGE = {**_DJANGO_PROMETHEUS, "TENANT_METRICS_ENABLED": "true"}
_MONITOR = {**_USAGE, "QUERY_MONITOR_ENABLED": "true", "QUERY_MONITOR_SAMPLE_RATE": "0.1"}
VARIANTS = (
    Variant("all off", "all-off", {"METRICS_ENABLED": "false"}),
    Variant("+ request metrics", "request-metrics", _REQUEST_METRICS),
    Variant("+ django-prometheus", "django-prometheus", _DJANGO_PROMETHEUS),
    Variant("+ per-tenant usage", "tenant-usage", _USAGE),
    Variant("+ query monitor 10%", "query-monitor-10", _MONITOR),
    Variant(
        "+ query monitor 100%",
        "query-monitor-100",
        {**_MONITOR, "QUERY_MONITOR_SAMPLE_RATE": "1.0"},
    ),
)
REFERENCE = "all off"
CEILING = "bare DRF"


def check_variant(variant: Variant, target: Target, multiproc_dir: Path | None) -> None:
    """After the warm-up: the multiprocess files exist and /metrics shows the switches took effect."""
    if not variant.metrics:
        return
    files = sorted(path.name for path in multiproc_dir.glob("*.db"))
    if not files:
        raise RuntimeError(f"{variant.name}: no *.db file in {MULTIPROC_DIR}={multiproc_dir}")
    status, body = get(target.server.port, "/metrics", {})
    if status != 200:
        raise RuntimeError(f"{variant.name}: GET /metrics answered {status}: {body[:500]!r}")
    counted = 0.0
    for line in body.decode(errors="replace").splitlines():
        name, _, value = line.partition(" ")
        if name == DJANGO_PROMETHEUS_COUNTER:
            counted += float(value)
    if (counted > 0) != variant.django_prometheus:
        raise RuntimeError(
            f"{variant.name}: METRICS_DJANGO_PROMETHEUS={variant.env['METRICS_DJANGO_PROMETHEUS']}"
            f" but /metrics shows {DJANGO_PROMETHEUS_COUNTER} = {counted:g}"
        )


COLUMNS = (
    "target",
    "requests",
    "req/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "SQL/request",
    "Redis cmds/request",
    "Redis round trips/request",
    f"x {CEILING}",
    f"us/request vs {REFERENCE}",
)


def summary_cells(target: Target, reference: Target, ceiling: Target) -> list[str]:
    rounds = target.rounds
    sockets: Counter[str] = Counter()
    for r in rounds:
        sockets.update(r.wrk.socket_errors)
    rps = median_rps(target)
    cost = 1e6 / rps - 1e6 / median_rps(reference)
    return [
        target.name,
        str(target.requests),
        f"{rps:.1f}",
        f"{statistics.median(r.wrk.p50_ms for r in rounds):.2f}",
        f"{statistics.median(r.wrk.p99_ms for r in rounds):.2f}",
        error_cell(target.errors, dict(sockets), sum(r.wrk.non_2xx for r in rounds)),
        f"{statistics.median(r.per_request(r.sql) for r in rounds):.4f}",
        f"{statistics.median(r.per_request(r.redis['commands']) for r in rounds):.2f}",
        f"{statistics.median(r.per_request(r.redis['round trips']) for r in rounds):.2f}",
        f"{rps / median_rps(ceiling):.2f}",
        "(reference)" if target is reference else f"{cost:+.0f}",
    ]


def report(targets: list[Target]) -> None:
    by_name = {target.name: target for target in targets}
    reference, ceiling = by_name[REFERENCE], by_name[CEILING]
    print(f"\n### GET {PATH} by metrics feature, against the bare ceilings\n")
    print_table(COLUMNS, [summary_cells(target, reference, ceiling) for target in targets])
    print(
        f"\nus/request vs {REFERENCE} = 1e6/req_s(target) - 1e6/req_s({REFERENCE}), from the "
        "median req/s: machine time per request (throughput), not latency, since wrk, the "
        "workers, PostgreSQL and Redis share this machine's CPUs."
    )
    print("\nPer round (in the order measured within each round, see the docstring):")
    for target in targets:
        rps = ", ".join(f"{r.wrk.requests_per_second:.1f}" for r in target.rounds)
        sql = ", ".join(str(r.sql) for r in target.rounds)
        redis = ", ".join(str(r.redis["commands"]) for r in target.rounds)
        requests = ", ".join(str(r.wrk.requests) for r in target.rounds)
        print(
            f"- {target.name}: req/s {rps}; requests {requests}; SQL transactions {sql}; "
            f"Redis commands {redis}"
        )
    print("\nRedis commands per request by name:")
    for target in targets:
        print(f"- {target.name}: {command_breakdown(target)}")


def command_line() -> str:
    python = Path(sys.executable)
    if python.is_relative_to(ROOT):
        python = python.relative_to(ROOT)
    return shlex.join([str(python), *sys.argv])


def main() -> int:
    args = load_arguments(__doc__.splitlines()[0], seconds=8)
    started = time.monotonic()
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not (database_url and redis_url):
        sys.exit(
            "DATABASE_URL and REDIS_URL must name PostgreSQL and Redis: run it under "
            "`python -m scripts.services run -- ...`"
        )
    wrk = ensure_wrk()
    keys = setup_project(args.tenants)

    base_env = {k: v for k, v in os.environ.items() if k != "DJANGO_DEBUG"}
    project_env = {k: v for k, v in base_env.items() if k not in SWITCHES}
    project_env["DJANGO_ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    bare_env = {**base_env, "DJANGO_SETTINGS_MODULE": "bare.settings"}

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ils-metrics-")))
        probes = Probes(database_url, redis_url)
        stack.callback(probes.close)
        try:
            targets: list[Target] = []
            multiproc_dirs: dict[str, Path | None] = {}
            for variant in VARIANTS:
                env = {**project_env, **variant.env}
                multiproc_dirs[variant.name] = None
                if variant.metrics:
                    folder = work / f"prometheus-{variant.slug}"
                    folder.mkdir()
                    multiproc_dirs[variant.name] = folder
                    env[MULTIPROC_DIR] = str(folder)
                server = stack.enter_context(
                    gunicorn(
                        f"project {variant.slug}",
                        "config.wsgi:application",
                        ROOT,
                        env,
                        "/health/live",
                        args.workers,
                        work,
                    )
                )
                targets.append(Target(variant.name, server, PATH, keys, uses_database=True))
            bare = stack.enter_context(
                gunicorn(
                    "bare", "bare.wsgi:application", BENCH, bare_env, "/django/", args.workers, work
                )
            )
            targets += [
                Target("bare DRF", bare, "/drf/", [], uses_database=False),
                Target("bare Django", bare, "/django/", [], uses_database=False),
            ]
            for target in targets:
                warm_up(target, args.warmup)
                for variant in VARIANTS:
                    if variant.name == target.name:
                        check_variant(variant, target, multiproc_dirs[variant.name])
                if target.uses_database:
                    probes.database_until = time.monotonic() + PG_SETTLE_SECONDS
            print(describe(args, wrk, probes.versions()))
            print(f"command: {command_line()}", flush=True)
            for number in range(args.rounds):
                shift = number % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    target.rounds.append(measure(target, wrk, probes, args))
                    result = target.rounds[-1].wrk
                    print(
                        f"[metrics] round {number + 1}/{args.rounds} {target.name}: "
                        f"{result.requests_per_second:.1f} req/s, {result.errors} errors",
                        file=sys.stderr,
                        flush=True,
                    )
        except RuntimeError as error:
            print(f"ABORTED: {error}", file=sys.stderr)
            return 1

        report(targets)
        print(f"\nruntime: {time.monotonic() - started:.0f} s")
        # the same steps without wrk and HTTP, where the smaller costs rise above the noise
        print("\n--- bench/metrics_inprocess.py ---", flush=True)
        inprocess = subprocess.run(  # noqa: S603  (this interpreter, our script)
            [sys.executable, str(BENCH / "metrics_inprocess.py"), "--tenants", str(args.tenants)],
            cwd=ROOT,
            check=False,
        )
        failed = [target for target in targets if target.errors]
        for target in failed:
            print(
                f"FAILED: {target.errors} of {target.name}'s {target.requests} requests failed\n"
                f"--- {target.server.name}: gunicorn log ---\n{target.server.tail()}",
                file=sys.stderr,
            )
        return 1 if failed or inprocess.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
