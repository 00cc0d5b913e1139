"""End-to-end background-job throughput: enqueue to ``succeeded``, on 1 and N Celery workers.

Run it on real services (a throwaway PostgreSQL and Redis unless the environment names others):

    .venv/bin/python -m scripts.services run -- .venv/bin/python bench/jobs.py \\
        [--jobs 2000] [--workers 1,4] [--variants processes,concurrency] [--warmup 5]

(``make bench-jobs`` runs exactly that with the defaults.) DATABASE_URL is the job table's
database, REDIS_URL the cache (quota counters, breakers). The broker is a redis-server of its own
(``scripts.services.redis_server()``, never the cache's, as docs/JOBS.md requires), started here:
its URL is put in CELERY_BROKER_URL before ``django.setup()`` (the settings read it at import), so
this process publishes as the web would. JOBS_DIAGNOSTIC_KINDS=true (the ``diagnostics.echo``
kind) and no DJANGO_DEBUG, here and in the workers.

Set-up: migrates the database, creates (or reuses) the tenant ``bench-jobs`` on the "pro" plan with
``limit_overrides = {"jobs_in_flight": None, "jobs_per_day": None}``: the fair-share cap (pro: 10
jobs handed to workers at once) and the daily quota are off, so the figures are the machinery's,
not the cap's. Every job is then published by its own ``job_enqueue``, right after its commit.

Runs, one per worker set-up, each with workers of its own (stopped at its end):

- ``processes``: N separate ``celery -A config worker -Q default -c 1 -P prefork`` processes;
- ``concurrency``: one ``celery -A config worker -Q default -c N -P prefork``;

for each N of ``--workers`` (N = 1 is the same in both: run once). Each worker also gets
``-n bench-jobs-<i>@%h`` (distinct node names) and ``--loglevel INFO`` (``--worker-loglevel``):
its log then says "ready.", and it also logs a "received" and a "succeeded" line per task, a cost
the Procfile's workers (Celery's default WARNING) do not pay; with ``--worker-loglevel WARNING`` a
worker is ready when its heartbeat row (``queues.models.Worker``, written on ``worker_ready``)
appears instead. Celery's defaults otherwise (gossip, mingle, heartbeats on), and the project's:
late acks, prefetch multiplier 1. Once every worker is ready:

1. the tenant's job rows are deleted;
2. warm-up: ``--warmup`` jobs per worker child (each child opens its database connection and
   imports on its first task), waited for, then deleted;
3. measured: ``--jobs`` calls of ``queues.services.job_enqueue(tenant=..., kind="diagnostics.echo",
   payload={})`` (cleaned to ``{"message": None}``) in a loop in this process (the real path: the
   row and its quota counter in one transaction, then after the commit the tenant's slot refill:
   3 queries, the marking of the job, one publish), while the workers already run them; then wait until every row is finished.

While a run's workers are up, a thread of this process runs ``queues.dispatcher.dispatch()``
(rescue expired leases, publish due jobs) every ``--dispatch-seconds`` (1 s, beat's
JOB_DISPATCH_SECONDS), as beat would: no ``celery beat`` process. With the cap off it finds little
to do: now and then a job committed a moment before its own refill runs, which the round then
publishes (the refill may publish it too; the second message claims nothing). Its rounds and
counts during the measured part are printed under the table.

Columns (times from the ``queues.models.Job`` rows, all stamped by ``timezone.now()`` in this
process or a worker on this machine's clock):

- ``enqueue s``, ``enqueue jobs/s``: the enqueue loop's duration (perf counter) and rate;
- ``seconds``: from just before the first ``job_enqueue`` to the last ``finished_at``;
  ``jobs/s`` = jobs / seconds: the end-to-end throughput (enqueue included, since workers run
  jobs while the loop still enqueues). A run whose seconds are within 10% of its enqueue loop's
  is flagged under the table as enqueue-bound: one loop in one process fed the workers no faster
  than that, so its jobs/s is a lower bound on what those workers can do;
- ``queue p50/p95 ms``: ``started_at - created_at`` (commit, publish, broker, a free worker, the
  claim). When the workers are slower than the enqueue loop a backlog builds up, and these
  measure the backlog, not a job's latency on an idle system;
- ``run p50/p95 ms``: ``finished_at - started_at`` (the row read, the handler, the success mark's
  commit; not the tenant's slot refill after it, which is still the worker's time).

Exit status 1 when a run's jobs do not all succeed within ``--timeout`` seconds or a worker exits.
Workers are stopped on the way out, whatever happened: SIGTERM (Celery's warm shutdown), then
SIGKILL to the worker's process group (its own session: the main process and its pool children).

Caveat: this process (enqueue and dispatcher), the workers, PostgreSQL and both Redis servers share
this machine's CPUs, so the figures are this machine's, not a deployment's capacity.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import print_table, total_memory_gib  # noqa: E402
from scripts.services import ServiceUnavailable, redis_server  # noqa: E402

CELERY = str(Path(sys.executable).parent / "celery")
SLUG = "bench-jobs"
KIND = "diagnostics.echo"
PAYLOAD: dict = {}  # cleans to {"message": None}; an explicit null is refused ("may not be null")
OVERRIDES = {"jobs_in_flight": None, "jobs_per_day": None}
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
POLL_SECONDS = 0.1
#: A run whose seconds are within 10% of its enqueue loop's was paced by the loop.
ENQUEUE_BOUND = 1.1


def log(message: str) -> None:
    print(f"[jobs] {message}", file=sys.stderr, flush=True)


# --- Worker set-ups and processes -------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    processes: int
    concurrency: int

    @property
    def children(self) -> int:
        return self.processes * self.concurrency

    @property
    def label(self) -> str:
        return f"{self.processes} x -c {self.concurrency}"


def setups(counts: list[int], variants: list[str]) -> list[Setup]:
    """``processes``: N workers of -c 1; ``concurrency``: 1 worker of -c N (N = 1: once)."""
    chosen: list[Setup] = []
    for count in counts:
        for variant in variants:
            setup = Setup(count, 1) if variant == "processes" else Setup(1, count)
            if setup not in chosen:
                chosen.append(setup)
    return chosen


def node_name(number: int) -> str:
    return f"bench-jobs-{number}@%h"


def worker_command(number: int, concurrency: int, loglevel: str) -> list[str]:
    return [
        CELERY,
        "-A",
        "config",
        "worker",
        "-Q",
        "default",
        "-c",
        str(concurrency),
        "-P",
        "prefork",
        "-n",
        node_name(number),
        "--loglevel",
        loglevel,
    ]


def display(command: list[str]) -> str:
    return shlex.join([os.path.relpath(command[0], ROOT), *command[1:]])


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (warm shutdown), then SIGKILL to its process group (the pool children too)."""
    if process.poll() is None:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # its own session: pool children left, if any
    process.wait()


@dataclass
class Worker:
    number: int
    process: subprocess.Popen
    log: Path

    def ready(self) -> bool:
        """Its log says "ready." (INFO), or its heartbeat row is written (on ``worker_ready``)."""
        from queues.models import Worker as WorkerRow

        if b"ready." in self.log.read_bytes():
            return True
        prefix = node_name(self.number).split("@")[0] + "@"
        return WorkerRow.objects.filter(name__startswith=prefix).exists()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def workers(setup: Setup, env: dict[str, str], logs: Path, loglevel: str) -> Iterator[list[Worker]]:
    """The set-up's worker processes, once each one is ready; stopped at the end."""
    from queues.models import Worker as WorkerRow

    # Rows a killed worker left behind would pass for the new workers' heartbeats.
    WorkerRow.objects.filter(name__startswith="bench-jobs-").delete()
    with ExitStack() as stack:
        started = []
        for number in range(1, setup.processes + 1):
            path = logs / f"worker-{setup.processes}x{setup.concurrency}-{number}.log"
            with path.open("wb") as output:
                process = subprocess.Popen(  # noqa: S603
                    worker_command(number, setup.concurrency, loglevel),
                    cwd=ROOT,
                    env=env,
                    stdout=output,
                    stderr=output,
                    start_new_session=True,
                )
            stack.callback(stop, process)
            started.append(Worker(number, process, path))
        deadline = time.monotonic() + READY_TIMEOUT
        waiting = list(started)
        while waiting:
            for worker in list(waiting):
                if worker.process.poll() is not None:
                    raise RuntimeError(
                        f"worker exited with status {worker.process.returncode} before it was "
                        f"ready\n--- {worker.log.name} ---\n{worker.tail()}"
                    )
                if worker.ready():
                    waiting.remove(worker)
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(
                    f"worker not ready within {READY_TIMEOUT:.0f}s\n"
                    f"--- {waiting[0].log.name} ---\n{waiting[0].tail()}"
                )
            time.sleep(POLL_SECONDS)
        yield started


# --- The dispatcher, as beat would run it -----------------------------------------------------


@dataclass
class DispatchTotals:
    rounds: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


@contextmanager
def dispatching(every: float) -> Iterator[DispatchTotals]:
    """``queues.dispatcher.dispatch()`` every ``every`` seconds in a thread, until the block ends."""
    from django.db import connection

    from queues import dispatcher

    totals = DispatchTotals()
    stop_event = threading.Event()

    def loop() -> None:
        try:
            while not stop_event.wait(every):
                try:
                    totals.counts.update(dispatcher.dispatch())
                    totals.rounds += 1
                except Exception as error:  # a round that fails is reported, the next one runs
                    totals.errors.append(repr(error))
        finally:
            connection.close()

    thread = threading.Thread(target=loop, name="dispatcher", daemon=True)
    thread.start()
    try:
        yield totals
    finally:
        stop_event.set()
        thread.join()


# --- The project ------------------------------------------------------------------------------


def setup_project():
    """Migrate, get or create the bench tenant and switch its fair-share cap and quota off."""
    import django

    django.setup()

    from django.conf import settings
    from django.core.management import call_command

    from tenants import services
    from tenants.models import Plan, Tenant

    if settings.DEBUG:
        sys.exit("DEBUG is on (it keeps every query in memory): unset DJANGO_DEBUG")
    call_command("migrate", interactive=False, verbosity=0)
    tenant = Tenant.objects.filter(slug=SLUG).first() or services.tenant_create(
        slug=SLUG, name=SLUG, plan=Plan.objects.get(code="pro")
    )
    tenant.limit_overrides = OVERRIDES
    tenant.full_clean()
    tenant.save(update_fields=["limit_overrides", "updated_at"])
    return tenant


def delete_jobs(tenant) -> None:
    from queues.models import Job

    Job.all_tenants.filter(tenant_id=tenant.pk).delete()


def enqueue(tenant, count: int) -> float:
    """``count`` echo jobs through the real path, one transaction each; returns the seconds."""
    from queues.services import job_enqueue

    started = time.perf_counter()
    for _ in range(count):
        job_enqueue(tenant=tenant, kind=KIND, payload=PAYLOAD)
    return time.perf_counter() - started


def wait_finished(tenant, count: int, timeout: float, running: list[Worker]) -> Counter[str]:
    """Poll the tenant's rows until ``count`` are finished; returns the statuses."""
    from django.db.models import Count

    from queues.models import Job

    deadline = time.monotonic() + timeout
    while True:
        statuses = Counter(
            dict(
                Job.all_tenants.filter(tenant_id=tenant.pk)
                .values("status")
                .annotate(n=Count("id"))
                .values_list("status", "n")
            )
        )
        if sum(statuses[status] for status in Job.FINISHED) >= count:
            return statuses
        for worker in running:
            if worker.process.poll() is not None:
                raise RuntimeError(
                    f"worker exited with status {worker.process.returncode} during the run "
                    f"({dict(statuses)})\n--- {worker.log.name} ---\n{worker.tail()}"
                )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{count} jobs not finished within {timeout:.0f}s: {dict(statuses)}\n"
                f"--- {running[0].log.name} ---\n{running[0].tail()}"
            )
        time.sleep(POLL_SECONDS)


# --- A run --------------------------------------------------------------------------------------


@dataclass
class Result:
    setup: Setup
    jobs: int
    enqueue_seconds: float
    seconds: float
    queue_ms: list[float]
    run_ms: list[float]
    dispatch: DispatchTotals


def measure(setup: Setup, tenant, env: dict[str, str], logs: Path, args) -> Result:
    from django.utils import timezone

    from queues.models import Job

    delete_jobs(tenant)
    with (
        workers(setup, env, logs, args.worker_loglevel) as running,
        dispatching(args.dispatch_seconds) as dispatch,
    ):
        warmup = args.warmup * setup.children
        if warmup:
            enqueue(tenant, warmup)
            wait_finished(tenant, warmup, args.timeout, running)
            delete_jobs(tenant)
        dispatch.rounds, dispatch.counts = 0, Counter()  # count the measured part only
        began: datetime = timezone.now()
        enqueue_seconds = enqueue(tenant, args.jobs)
        statuses = wait_finished(tenant, args.jobs, args.timeout, running)
    if statuses[Job.Status.SUCCEEDED] != args.jobs:
        raise RuntimeError(f"not every job succeeded: {dict(statuses)}")
    rows = list(
        Job.all_tenants.filter(tenant_id=tenant.pk).values_list(
            "created_at", "started_at", "finished_at"
        )
    )
    delete_jobs(tenant)
    last = max(finished for _, _, finished in rows)
    return Result(
        setup=setup,
        jobs=len(rows),
        enqueue_seconds=enqueue_seconds,
        seconds=(last - began).total_seconds(),
        queue_ms=[(started - created).total_seconds() * 1000 for created, started, _ in rows],
        run_ms=[(finished - started).total_seconds() * 1000 for _, started, finished in rows],
        dispatch=dispatch,
    )


# --- Report -----------------------------------------------------------------------------------

COLUMNS = (
    "workers",
    "children",
    "jobs",
    "enqueue s",
    "enqueue jobs/s",
    "seconds",
    "jobs/s",
    "queue p50 ms",
    "queue p95 ms",
    "run p50 ms",
    "run p95 ms",
)


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def result_cells(result: Result) -> list[str]:
    return [
        result.setup.label,
        str(result.setup.children),
        str(result.jobs),
        f"{result.enqueue_seconds:.2f}",
        f"{result.jobs / result.enqueue_seconds:.1f}",
        f"{result.seconds:.2f}",
        f"{result.jobs / result.seconds:.1f}",
        f"{percentile(result.queue_ms, 50):.1f}",
        f"{percentile(result.queue_ms, 95):.1f}",
        f"{percentile(result.run_ms, 50):.1f}",
        f"{percentile(result.run_ms, 95):.1f}",
    ]


def versions(broker_url: str) -> str:
    import celery
    import redis
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0].split()[0]
    client = redis.Redis.from_url(broker_url, socket_timeout=5)
    try:
        broker = client.info("server")["redis_version"]
    finally:
        client.close()
    return f"PostgreSQL {postgres}, broker Redis {broker} (its own server), Celery {celery.__version__}"


def describe(args: argparse.Namespace, broker_url: str) -> str:
    command = shlex.join(
        [os.path.relpath(sys.executable, ROOT), os.path.relpath(__file__, ROOT), *sys.argv[1:]]
    )
    return "\n".join(
        [
            f"machine: {os.cpu_count()} CPUs, {total_memory_gib():.1f} GiB; {versions(broker_url)}",
            f"command: {command}",
            f"workers: {display(worker_command(1, 1, args.worker_loglevel))} "
            "(-c N for one worker of N children)",
            f"jobs: {args.jobs} x {KIND} {PAYLOAD} per run, job_enqueue in a loop in this process; "
            f"warm-up {args.warmup} per worker child first",
            f"tenant: {SLUG} (pro) with limit_overrides={OVERRIDES}: fair-share cap and daily "
            "quota off, so this measures the machinery, not the cap",
            f"dispatcher: a thread of this process runs queues.dispatcher.dispatch() every "
            f"{args.dispatch_seconds:g} s, as beat would (no celery beat process)",
        ]
    )


def print_results(results: list[Result]) -> None:
    print()
    print_table(COLUMNS, [result_cells(result) for result in results])
    print()
    for result in results:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(result.dispatch.counts.items()))
        errors = f"; errors: {result.dispatch.errors}" if result.dispatch.errors else ""
        print(
            f"dispatcher during {result.setup.label}: {result.dispatch.rounds} rounds, "
            f"{counts or 'nothing'}{errors}"
        )
    for result in results:
        if result.seconds < result.enqueue_seconds * ENQUEUE_BOUND:
            print(
                f"note: {result.setup.label} was enqueue-bound (the last job finished within "
                f"{ENQUEUE_BOUND - 1:.0%} of the enqueue loop's end): its jobs/s is the one "
                "enqueue loop's rate, a lower bound on what those workers can do"
            )


# --- Main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="measured jobs per run")
    parser.add_argument(
        "--workers", default="1,4", help="comma-separated worker counts N (default 1,4)"
    )
    parser.add_argument(
        "--variants",
        default="processes,concurrency",
        help="processes (N workers of -c 1), concurrency (1 worker of -c N), or both",
    )
    parser.add_argument("--warmup", type=int, default=5, help="warm-up jobs per worker child")
    parser.add_argument(
        "--worker-loglevel",
        default="INFO",
        help="the workers' --loglevel (INFO logs two lines per task; the Procfile's: WARNING)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to finish a run")
    parser.add_argument(
        "--dispatch-seconds", type=float, default=1.0, help="dispatcher round interval"
    )
    args = parser.parse_args()
    try:
        args.counts = [int(part) for part in args.workers.split(",") if part.strip()]
    except ValueError:
        parser.error("--workers must be comma-separated integers, e.g. 1,4")
    args.variant_list = [part.strip() for part in args.variants.split(",") if part.strip()]
    if not args.counts or min(args.counts) < 1:
        parser.error("--workers must name at least one count, each at least 1")
    if not args.variant_list or set(args.variant_list) - {"processes", "concurrency"}:
        parser.error("--variants takes processes, concurrency or both")
    if args.jobs < 1 or args.warmup < 0 or args.timeout <= 0 or args.dispatch_seconds <= 0:
        parser.error("--jobs must be at least 1, --warmup at least 0, the seconds positive")
    return args


def main() -> int:
    args = parse_args()
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        sys.exit(
            "DATABASE_URL and REDIS_URL must name PostgreSQL and Redis: run it under "
            "`python -m scripts.services run -- ...`"
        )
    with ExitStack() as stack:
        try:
            broker_url = stack.enter_context(redis_server())
        except ServiceUnavailable as error:
            sys.exit(f"no broker: {error}")
        os.environ.pop("DJANGO_DEBUG", None)
        os.environ["CELERY_BROKER_URL"] = broker_url  # before django.setup(): read at import
        os.environ["JOBS_DIAGNOSTIC_KINDS"] = "true"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        tenant = setup_project()
        env = dict(os.environ)  # DATABASE_URL, REDIS_URL, CELERY_BROKER_URL, JOBS_DIAGNOSTIC_KINDS
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ils-jobs-")))
        print(describe(args, broker_url), flush=True)
        results = []
        try:
            for setup in setups(args.counts, args.variant_list):
                log(f"{setup.label}: starting workers, {args.jobs} jobs")
                results.append(measure(setup, tenant, env, logs, args))
                result = results[-1]
                log(f"{setup.label}: {result.jobs / result.seconds:.1f} jobs/s")
        except RuntimeError as error:
            print_results(results)
            print(f"ABORTED: {error}", file=sys.stderr)
            return 1
        print_results(results)
        return 0


if __name__ == "__main__":
    sys.exit(main())
