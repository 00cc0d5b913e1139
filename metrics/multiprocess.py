"""prometheus_client's multiprocess mode, kept exact and fast across worker restarts.

Under gunicorn every worker writes its metrics to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (``<type>_<pid>.db``), and a scrape merges them all, so the counters
are the server's, not one worker's. A dead worker's files must stay (its counts are part of the
totals), and that is how they pile up: every restart leaves a set, and a scrape reads them all
(prometheus_client#204: 5,414 files and a 10 s scrape). Here a dead process's files are merged into
one archive set (``counter_archive.db``, ``histogram_archive.db``, ...) and deleted, so the
directory holds one set per live process plus the archive, however many workers came and went.

Invariants:

* **Nothing counted is lost or counted twice.** Counters, histograms and summaries are sums, so
  a dead process's values are added to the archive's. A scrape and a compaction exclude each other
  (``flock``: the scrape shared, the compaction exclusive), so no scrape sees a value both in the
  dead file and in the archive, or in neither: the totals never go down (Prometheus would read
  that as a counter reset).
* **Gauges of a dead process** are dropped, but for ``sum`` (added): the ``live*`` modes by
  definition (prometheus_client's ``mark_process_dead``), ``all`` because a dead pid's series
  would never change again, and ``max``/``min``/``mostrecent`` because nothing here uses them
  (the platform's gauges are computed at scrape time: ``metrics.collectors``).
* Compaction runs in the gunicorn master (``child_exit``: ``config/gunicorn.py``) and before
  each scrape for any process found dead (``sweep``: a Celery pool process the pool replaced,
  one a hook never saw), one at a time.

There is no public API in prometheus_client to write merged values back (the maintainers' advice
in #204 is to do exactly this by hand); ``MmapedDict`` and ``mmap_key`` are its documented-by-use
building blocks of that format (``prometheus_client.mmap_dict``: public names, no underscore),
and the file names follow ``prometheus_client.values.MultiProcessValue``. This module imports no
Django so that gunicorn's master can use it before any app is loaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import mark_process_dead

ENV = "PROMETHEUS_MULTIPROC_DIR"
ARCHIVE = "archive"
LOCK_NAME = ".compaction.lock"
#: File prefixes whose values add up across processes.
SUMMED = ("counter", "histogram", "summary", "gauge_sum")


def directory() -> Path | None:
    """The multiprocess directory, or ``None`` when metrics are per process (no variable)."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


#: This process's open lock descriptors: a forked child closes its copies (see ``locked``).
_held: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in _held:
        os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


@contextlib.contextmanager
def locked(path: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold the directory's lock (shared for a scrape, exclusive for a compaction).

    An ``flock`` belongs to the open file, not the process: a child forked while it is held (a
    Celery pool process, forked by the main process that scrapes: ``metrics.worker``) would hold
    it as long as it lives. So the descriptor is a raw one, registered in ``_held``, closed in a
    forked child, and closed here only by the process that opened it."""
    owner = os.getpid()
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    _held.add(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        if os.getpid() == owner:
            _held.discard(fd)
            os.close(fd)  # releases the lock


def prepare(path: Path, *, keep: int | None = None) -> None:
    """Make the directory and delete what an earlier server left (a new server counts from 0:
    Prometheus sees one reset per server start, as with any process), but for the files of the
    process ``keep`` (a Celery worker's main process has made its own by then)."""
    path.mkdir(parents=True, exist_ok=True)
    with locked(path, exclusive=True):
        for stale in path.glob("*.db"):
            if keep is None or _prefix_and_pid(stale.name)[1] != str(keep):
                stale.unlink()


def _prefix_and_pid(filename: str) -> tuple[str, str]:
    """``counter_123.db`` → (``counter``, ``123``); ``gauge_max_123.db`` → (``gauge_max``, ...)."""
    stem = filename[: -len(".db")]
    prefix, _, pid = stem.rpartition("_")
    return prefix, pid


def _add_into(archive: MmapedDict, dead_file: str) -> None:
    dead = MmapedDict(dead_file, read_mode=True)
    try:
        for key, value, timestamp in dead.read_all_values():
            old_value, old_timestamp = archive.read_value(key)
            archive.write_value(key, old_value + value, max(old_timestamp, timestamp))
    finally:
        dead.close()


def compact(pid: int | str, path: Path | None = None) -> int:
    """Merge the files of the dead process ``pid`` into the archive and delete them; returns how
    many files went. Safe to repeat (a file merged is a file deleted, under the lock)."""
    path = path or directory()
    if path is None or not path.is_dir():
        return 0
    pid = str(pid)
    merged = 0
    with locked(path, exclusive=True):
        mark_process_dead(pid, str(path))  # the live gauges
        for dead_file in sorted(glob.glob(str(path / f"*_{pid}.db"))):
            prefix, _ = _prefix_and_pid(os.path.basename(dead_file))
            if prefix in SUMMED:
                archive = MmapedDict(str(path / f"{prefix}_{ARCHIVE}.db"))
                try:
                    _add_into(archive, dead_file)
                finally:
                    archive.close()
            os.unlink(dead_file)
            merged += 1
    return merged


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(path: Path | None = None) -> int:
    """Compact every process of the directory that is no longer running (a worker killed in a way
    no hook saw); returns how many files went."""
    path = path or directory()
    if path is None or not path.is_dir():
        return 0
    pids = {
        pid
        for name in os.listdir(path)
        if name.endswith(".db")
        and (pid := _prefix_and_pid(name)[1]).isdigit()
        and not _alive(int(pid))
    }
    return sum(compact(pid, path) for pid in sorted(pids))
