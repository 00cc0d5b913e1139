"""gunicorn settings of the web process (``gunicorn -c python:config.gunicorn``; the Procfile's).

Threaded workers (``gthread``): a client that sends its request slowly holds one thread, not a
whole worker, so two slow clients can no longer stop ``/health/live`` and everyone else (they did
with sync workers: tests/integration/test_slow_clients.py). Each worker serves ``GUNICORN_THREADS``
requests at once; past that many slow clients per worker, put a buffering proxy in front (nginx,
a load balancer) that reads whole requests before it passes them on: docs/CONFIGURATION.md.

Limits on what a client may send before Django sees it (gunicorn answers past them): request line
4,094 bytes, 100 header fields of at most 8,190 bytes each; a body's limits are Django's
(``API_MAX_BODY_BYTES``). Every knob is an environment variable.
"""

import os
import shutil
import tempfile

# Prometheus multiprocess mode: every worker writes its metrics to files in one directory, which
# /metrics merges (metrics/multiprocess.py). prometheus_client chooses its value class when it is
# first imported, so the variable is set before anything imports it; a directory of this server's
# own unless PROMETHEUS_MULTIPROC_DIR names one.
_OWN_DIRECTORY = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_DIRECTORY:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ils-prometheus-")

from metrics import multiprocess  # noqa: E402  (after the variable: see above)


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = _int("WEB_CONCURRENCY", 4)
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 8)
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
limit_request_line = _int("GUNICORN_LIMIT_REQUEST_LINE", 4094)
limit_request_fields = _int("GUNICORN_LIMIT_REQUEST_FIELDS", 100)
limit_request_field_size = _int("GUNICORN_LIMIT_REQUEST_FIELD_SIZE", 8190)
# "-": standard output; empty: no access log.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
# Restart a worker after this many requests (0: never; a jitter spreads the restarts).
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 0)


def on_starting(server):
    """Start from an empty directory: what an earlier server counted is not this one's."""
    multiprocess.prepare(multiprocess.directory())


def child_exit(server, worker):
    """Fold the dead worker's metrics into the archive, so files do not pile up with restarts."""
    multiprocess.compact(worker.pid)


def on_exit(server):
    if _OWN_DIRECTORY:
        shutil.rmtree(multiprocess.directory(), ignore_errors=True)
