"""Compaction of dead processes' metric files (``metrics.multiprocess``), with real processes:
each child writes its metrics to the directory as a gunicorn worker does, then exits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from metrics import multiprocess

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from prometheus_client import Counter, Gauge, Histogram
hits = Counter("t_hits", "hits", ["kind"])
took = Histogram("t_seconds", "took", buckets=(0.1, 1.0))
live = Gauge("t_live", "live", multiprocess_mode="livesum")
every = Gauge("t_every", "every", multiprocess_mode="all")
total = Gauge("t_total", "total", multiprocess_mode="sum")
count = int(sys.argv[1])
for _ in range(count):
    hits.labels("a").inc()
    took.observe(0.5)
hits.labels("b").inc(0.5)
live.set(1)
every.set(count)
total.inc(count)
"""


def _run_child(folder: Path, count: int) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(count)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip


def _scrape(folder: Path) -> str:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return generate_latest(registry).decode()


def _pids(folder: Path) -> set[str]:
    return {name[:-3].rsplit("_", 1)[1] for name in os.listdir(folder) if name.endswith(".db")}


def test_dead_processes_are_folded_into_the_archive_and_nothing_is_lost(tmp_path):
    multiprocess.prepare(tmp_path)
    for count in (5, 7, 11):
        _run_child(tmp_path, count)
    before = _scrape(tmp_path)
    assert 't_hits_total{kind="a"} 23.0' in before
    assert len(_pids(tmp_path)) == 3
    kept = [n for n in os.listdir(tmp_path) if n.endswith(".db") and not n.startswith("gauge_live")]

    removed = multiprocess.sweep(tmp_path)  # all three children are gone

    assert removed == len(kept) == 3 * 4  # counter, histogram, gauge_all, gauge_sum each
    assert _pids(tmp_path) == {"archive"}
    after = _scrape(tmp_path)
    assert 't_hits_total{kind="a"} 23.0' in after
    assert 't_hits_total{kind="b"} 1.5' in after
    assert "t_seconds_count 23.0" in after
    assert 't_seconds_bucket{le="1.0"} 23.0' in after
    assert 't_seconds_bucket{le="0.1"} 0.0' in after
    assert "t_total 23.0" in after  # a sum gauge adds up
    assert not [line for line in after.splitlines() if line.startswith("t_live")]
    assert "t_every{" not in after  # one series per dead pid: dropped

    # more processes after a compaction add to the archive, and compacting again changes nothing
    _run_child(tmp_path, 2)
    multiprocess.sweep(tmp_path)
    multiprocess.sweep(tmp_path)
    assert 't_hits_total{kind="a"} 25.0' in _scrape(tmp_path)
    assert _pids(tmp_path) == {"archive"}


def test_a_live_process_is_left_alone(tmp_path):
    multiprocess.prepare(tmp_path)
    (tmp_path / f"counter_{os.getpid()}.db").write_bytes(b"")
    assert multiprocess.sweep(tmp_path) == 0
    assert _pids(tmp_path) == {str(os.getpid())}


def test_prepare_empties_the_folder_of_an_earlier_server(tmp_path):
    (tmp_path / "counter_1.db").write_bytes(b"x")
    (tmp_path / "histogram_archive.db").write_bytes(b"x")
    multiprocess.prepare(tmp_path)
    assert _pids(tmp_path) == set()


def test_a_child_forked_during_a_scrape_does_not_keep_the_lock(tmp_path):
    """A Celery pool child is forked by the process that scrapes: a copy of the lock's descriptor
    would hold the shared flock as long as the child lives and block every compaction. The child
    drops its copy as it starts (a moment after the fork), so the lock is free long before the
    child ends."""
    import fcntl
    import time

    with multiprocess.locked(tmp_path, exclusive=False):
        child = os.fork()
        if child == 0:  # the child outlives the scrape by far; it touches nothing
            time.sleep(6)
            os._exit(0)
    try:
        probe = os.open(tmp_path / multiprocess.LOCK_NAME, os.O_RDWR)
        deadline = time.monotonic() + 2
        try:
            while True:
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    assert time.monotonic() < deadline, "the forked child holds the lock"
                    time.sleep(0.01)
        finally:
            os.close(probe)
        assert os.waitpid(child, os.WNOHANG) == (0, 0)  # the child was alive all along
    finally:
        os.waitpid(child, 0)
