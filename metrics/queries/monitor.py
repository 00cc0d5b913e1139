"""The query monitor: what SQL a sample of requests and jobs run, slow queries and N+1s.

A monitored unit (a request: ``metrics.middleware.MetricsMiddleware``; a job: the ``queues`` job
signals: ``metrics.jobs``) runs
with ``connection.execute_wrapper(observe)`` on every database alias (Django's documented hook).
For each statement the wrapper times the call; in a sampled unit (``QUERY_MONITOR_SAMPLE_RATE``)
it also fingerprints it (``metrics.queries.fingerprint``, cached per statement) and counts it per
fingerprint in the unit. Outside the sample only the clock runs, so a slow query is caught in
every unit. At the end of a unit:

* its counts go into this process's table of fingerprints (count, total, max, per route or job
  kind, per tenant), flushed to ``QueryFingerprint`` every ``QUERY_MONITOR_FLUSH_SECONDS`` by a
  thread of the process (its own connection: the flush is not monitored);
* a fingerprint that ran ``QUERY_MONITOR_N_PLUS_ONE`` times or more is an N+1: logged with the
  line of our code that ran it (the stack is read once, when the count reaches the threshold);
* a statement over ``SLOW_QUERY_MS`` is logged at once (shape and time, no parameters), and its
  plan (``EXPLAIN``, run by the flush thread, literals masked unless
  ``QUERY_MONITOR_STORE_PARAMS``) is logged and kept on its fingerprint.

Parameters never leave the process unless ``QUERY_MONITOR_STORE_PARAMS`` is on; a slow query's
parameters are held in memory until its ``EXPLAIN`` has run. Cost: bench/metrics.py and
bench/metrics_inprocess.py (figures in docs/PERFORMANCE.md).
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from metrics import instruments
from metrics.flusher import Flusher
from metrics.queries.fingerprint import fingerprint, mask_literals
from tenants.context import current_tenant

logger = logging.getLogger(__name__)

ROOT = Path(settings.BASE_DIR).resolve()
_OWN_CODE_SKIPPED = (str(ROOT / ".venv"), str(Path(__file__).resolve().parent))
#: Routes and tenants kept per fingerprint (the rest is summed as "other").
MAX_ROUTES, MAX_TENANTS = 50, 10
#: Slow statements explained per flush, at most.
MAX_EXPLAINS = 10


@dataclass
class Seen:
    """One fingerprint within a unit, or summed in the process."""

    sql: str
    calls: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    slow_calls: int = 0
    callsite: str = ""
    n_plus_one_runs: int = 0
    n_plus_one_max: int = 0
    routes: Counter = field(default_factory=Counter)
    tenants: Counter = field(default_factory=Counter)

    @property
    def n_plus_one(self) -> bool:
        """An N+1 in its unit: the callsite is read when the count reaches the threshold."""
        return self.calls >= settings.QUERY_MONITOR_N_PLUS_ONE and bool(self.callsite)


@dataclass
class Unit:
    """A request or a job being monitored."""

    sampled: bool
    label: str = "unknown"
    seen: dict[str, Seen] = field(default_factory=dict)


@dataclass
class SlowSample:
    fingerprint: str
    sql: str
    params: object
    alias: str
    ms: float


_unit: contextvars.ContextVar[Unit | None] = contextvars.ContextVar("query_unit", default=None)


def _callsite() -> str:
    """The innermost frame of our own code (not a library's, not this module's)."""
    for frame in reversed(traceback.extract_stack()):
        name = frame.filename
        if name.startswith(str(ROOT)) and not name.startswith(_OWN_CODE_SKIPPED):
            return f"{Path(name).relative_to(ROOT)}:{frame.lineno} in {frame.name}"
    return ""


def observe(execute, sql, params, many, context):
    """The execute wrapper (Django's signature): time the statement, count it in the unit."""
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        ms = (time.perf_counter() - started) * 1000
        unit = _unit.get()
        if unit is not None:
            slow = ms >= settings.SLOW_QUERY_MS
            if unit.sampled or slow:
                _count(unit, sql, params, ms, slow, context["connection"].alias)


def _count(unit: Unit, sql: str, params, ms: float, slow: bool, alias: str) -> None:
    key, text = fingerprint(sql)
    seen = unit.seen.get(key)
    if seen is None:
        seen = unit.seen[key] = Seen(text)
    seen.calls += 1
    seen.total_ms += ms
    seen.max_ms = max(seen.max_ms, ms)
    tenant = current_tenant()
    if tenant is not None:
        seen.tenants[tenant.pk] += ms
    if seen.calls == settings.QUERY_MONITOR_N_PLUS_ONE and text.startswith("SELECT"):
        seen.callsite = _callsite()
    if slow:
        seen.slow_calls += 1
        logger.warning("slow query", extra={"fingerprint": key, "ms": round(ms, 1), "sql": text})
        store.add_slow(SlowSample(key, sql, params, alias, ms))


@contextmanager
def monitored(label: str = "unknown", *, sampled: bool | None = None) -> Iterator[Unit]:
    """Monitor the statements of the body on every database alias; ``label`` (the route or job
    kind) may be set on the unit until the body ends."""
    if not settings.QUERY_MONITOR_ENABLED:
        yield Unit(sampled=False, label=label)
        return
    if sampled is None:
        sampled = random.random() < settings.QUERY_MONITOR_SAMPLE_RATE
    unit = Unit(sampled=sampled, label=label)
    token = _unit.set(unit)
    try:
        with ExitStack() as stack:
            for connection in connections.all():
                stack.enter_context(connection.execute_wrapper(observe))
            yield unit
    finally:
        _unit.reset(token)
        store.add_unit(unit)


class Store:
    """This process's sums per fingerprint, and the slow samples waiting for their ``EXPLAIN``;
    flushed to ``QueryFingerprint`` by a thread of the process (started on first use, again in
    a forked child)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sums: dict[str, Seen] = {}
        self._slow: list[SlowSample] = []
        self.last_flush: float | None = None
        self.flusher = Flusher("query-monitor", self.flush, "QUERY_MONITOR_FLUSH_SECONDS")

    def add_unit(self, unit: Unit) -> None:
        if not unit.seen:
            return
        with self._lock:
            for key, seen in unit.seen.items():
                total = self._sums.get(key)
                if total is None:
                    total = self._sums[key] = Seen(seen.sql)
                total.calls += seen.calls
                total.total_ms += seen.total_ms
                total.max_ms = max(total.max_ms, seen.max_ms)
                total.slow_calls += seen.slow_calls
                total.routes[unit.label] += seen.calls
                total.tenants.update(seen.tenants)
                if seen.n_plus_one:
                    total.n_plus_one_runs += 1
                    total.n_plus_one_max = max(total.n_plus_one_max, seen.calls)
                    total.callsite = seen.callsite
        for key, seen in unit.seen.items():
            if seen.slow_calls:
                instruments.slow_queries.labels(unit.label).inc(seen.slow_calls)
            if seen.n_plus_one:
                instruments.n_plus_ones.labels(unit.label).inc()
                logger.warning(
                    "N+1 query",
                    extra={"fingerprint": key, "route": unit.label, "count": seen.calls,
                           "at": seen.callsite, "sql": seen.sql[:500]},
                )  # fmt: skip
        self.flusher.ensure_running()

    def add_slow(self, sample: SlowSample) -> None:
        with self._lock:
            if len(self._slow) < MAX_EXPLAINS:
                self._slow.append(sample)

    def take(self) -> tuple[dict[str, Seen], list[SlowSample]]:
        with self._lock:
            sums, self._sums = self._sums, {}
            slow, self._slow = self._slow, []
        return sums, slow

    def flush(self) -> int:
        """Write this process's sums into ``QueryFingerprint`` and explain the slow samples;
        returns how many fingerprints were written. Rows are locked in key order, so processes
        flushing at once wait for each other instead of deadlocking."""
        from metrics.models import QueryFingerprint

        sums, slow = self.take()
        plans = {sample.fingerprint: _explain(sample) for sample in slow}
        self.last_flush = time.time()
        if not sums:
            return 0
        QueryFingerprint.objects.bulk_create(
            [QueryFingerprint(fingerprint=key, sql=seen.sql) for key, seen in sums.items()],
            ignore_conflicts=True,
        )
        with transaction.atomic():
            rows = QueryFingerprint.objects.select_for_update().filter(fingerprint__in=sums)
            for row in rows.order_by("fingerprint"):
                _merge(row, sums[row.fingerprint], plans.get(row.fingerprint))
                row.save()
        return len(sums)


def _top(counts: dict, extra: Counter, keep: int) -> dict:
    merged = Counter({str(k): v for k, v in counts.items()})
    merged.update({str(k): v for k, v in extra.items()})
    top = dict(merged.most_common(keep))
    if rest := sum(merged.values()) - sum(top.values()):
        top["other"] = top.get("other", 0) + rest
    return top


def _merge(row, seen: Seen, plan) -> None:
    row.calls += seen.calls
    row.total_ms += seen.total_ms
    row.max_ms = max(row.max_ms, seen.max_ms)
    row.slow_calls += seen.slow_calls
    row.n_plus_one_runs += seen.n_plus_one_runs
    row.n_plus_one_max = max(row.n_plus_one_max, seen.n_plus_one_max)
    if seen.callsite:
        row.n_plus_one_at = seen.callsite[:500]
    row.routes = _top(row.routes, seen.routes, MAX_ROUTES)
    row.top_tenants = _top(row.top_tenants, Counter({k: round(v, 3) for k, v in seen.tenants.items()}), MAX_TENANTS)  # fmt: skip
    if plan is not None:
        row.plan, row.plan_at = plan["plan"], timezone.now()
        if plan.get("params") is not None:
            row.sample_params = plan["params"]


def _masked(node):
    if isinstance(node, dict):
        return {key: _masked(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_masked(value) for value in node]
    if isinstance(node, str):
        return mask_literals(node)
    return node


def _explain(sample: SlowSample) -> dict | None:
    """The plan of a slow SELECT (``EXPLAIN``, not ``ANALYZE``: nothing runs again)."""
    if not sample.sql.lstrip().upper().startswith("SELECT"):
        return None
    connection = connections[sample.alias]
    if connection.vendor != "postgresql":
        return None
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sample.sql}", sample.params)
            plan = cursor.fetchone()[0]
    except Exception as error:
        logger.warning("EXPLAIN of a slow query failed: %r", error)
        return None
    keep = settings.QUERY_MONITOR_STORE_PARAMS
    plan = plan if keep else _masked(plan)
    logger.warning(
        "slow query plan",
        extra={"fingerprint": sample.fingerprint, "ms": round(sample.ms, 1), "plan": plan},
    )
    params = list(sample.params) if keep and isinstance(sample.params, list | tuple) else None
    return {"plan": plan, "params": params}


store = Store()
