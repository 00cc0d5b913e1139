"""Beat: two beat processes at once send every scheduled task once, and a standby takes over.

Real ``celery -A config beat`` processes (``queues.beat.SingleBeatScheduler``) on this test's
database and a throwaway redis-server broker with no worker: what beat sends stays on the broker,
where this test counts it. The dispatch schedule is every second (``JOB_DISPATCH_SECONDS=1``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from redis import Redis

from scripts.services import redis_server
from tests.live import live_database_url, stop_process

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).parent / "celery")


def _beat(stack: ExitStack, broker: str, folder: Path, name: str) -> tuple[subprocess.Popen, Path]:
    log = folder / f"{name}.log"
    env = {
        **os.environ,
        "DATABASE_URL": live_database_url(),
        "CELERY_BROKER_URL": broker,
        "JOB_DISPATCH_SECONDS": "1",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [CELERY, "-A", "config", "beat", "--loglevel", "INFO",
             "--schedule", str(folder / f"{name}.db"), "--pidfile", ""],
            cwd=ROOT, env=env, stdout=output, stderr=output,
        )  # fmt: skip
    stack.callback(stop_process, process)
    return process, log


def _sent(redis: Redis) -> int:
    """Dispatch messages waiting on the cleanup queue (every priority list of it)."""
    return sum(redis.llen(key) for key in redis.scan_iter(match="cleanup*"))


def _holder(logs: list[Path]) -> int | None:
    holders = [i for i, log in enumerate(logs) if b"holds the beat lock" in log.read_bytes()]
    assert len(holders) <= 1, holders
    return holders[0] if holders else None


def _wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.2)


def test_two_beats_send_each_task_once_and_a_standby_takes_over(tmp_path):
    with ExitStack() as stack:
        broker = stack.enter_context(redis_server())
        redis = Redis.from_url(broker)
        beats = [_beat(stack, broker, tmp_path, name) for name in ("beat-a", "beat-b")]
        logs = [log for _, log in beats]
        _wait_until(lambda: _holder(logs) is not None, 60, "one beat holds the lock")
        _wait_until(lambda: _sent(redis) >= 1, 30, "the first dispatch is sent")

        start, started = _sent(redis), time.monotonic()
        time.sleep(8)
        sent, seconds = _sent(redis) - start, time.monotonic() - started

        # one sender: about one a second; two would send about two a second
        assert seconds - 2 <= sent <= seconds + 1, (sent, seconds)
        assert all(process.poll() is None for process, _ in beats)  # the standby still runs

        holder = _holder(logs)
        beats[holder][0].send_signal(signal.SIGKILL)
        beats[holder][0].wait(timeout=10)
        standby = logs[1 - holder]
        _wait_until(
            lambda: b"holds the beat lock" in standby.read_bytes(), 30, "the standby takes over"
        )
        before = _sent(redis)
        _wait_until(lambda: _sent(redis) >= before + 3, 30, "the new holder sends")
