"""A thread per process that runs a flush every few seconds (the query monitor's sums, the
per-tenant usage counters): started on first use, again in a forked child, never in a process
whose setting is 0 (tests flush by hand). Its database connections are its own and go back to
the pool after each flush."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)


class Flusher:
    def __init__(self, name: str, flush: Callable[[], object], seconds_setting: str) -> None:
        self.name = name
        self.flush = flush
        self.seconds_setting = seconds_setting
        self._pid: int | None = None
        self._lock = threading.Lock()

    def ensure_running(self) -> None:
        if self._pid == os.getpid() or getattr(settings, self.seconds_setting) <= 0:
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            threading.Thread(target=self._run, name=self.name, daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(getattr(settings, self.seconds_setting))
            try:
                self.flush()
            except Exception:
                logger.exception("%s could not flush", self.name)
            finally:
                connections.close_all()  # this thread's connections, back to the pool
