"""A Celery worker's own ``/metrics``: what its pool processes counted (jobs by outcome, queue
time, duration, the query monitor's counters), merged from their multiprocess files.

Started by ``config.celery`` in the worker's main process when ``WORKER_METRICS_PORT`` is set
(``config.celery`` then gives the worker a multiprocess directory of its own before anything
imports prometheus_client). The pool's children write their files there; the main process
answers scrapes on a small HTTP server of the standard library, one scrape at a time, with the
web's access rule (``metrics.exporter.refusal``: the metrics token or an allowed network) and
without the scrape-time gauges (breakers, queues, tenants), which the web's ``/metrics`` serves
once for the whole deployment. A child the pool replaced (``--max-tasks-per-child``, a crash) is
compacted into the archive at the next scrape (``metrics.multiprocess.sweep``), so the counts stay
exact and the directory holds one set of files per live child.

Pool children are forked from the main process while this server may be scraping: a child would
inherit the open lock file and, with it, the shared ``flock`` for as long as it lives, and every
later compaction would wait for it. ``metrics.multiprocess`` closes its lock files in a forked
child (``os.register_at_fork``), so only the scraping process holds the lock.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpResponse

from metrics.exporter import answer
from tenants.http import error_response

logger = logging.getLogger(__name__)

PATH = "/metrics"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:
        """No line per scrape on the worker's log."""


def application(environ, start_response):
    """The WSGI app: ``/metrics`` only, in the error shape for anything else."""
    request = WSGIRequest(environ)
    response: HttpResponse
    if request.path != PATH:
        response = error_response(404, "not_found", "Only /metrics is served here.")
    else:
        response = answer(request, shared_state=False)
    start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
    return [b"" if request.method == "HEAD" else response.content]


def serve(address: str, port: int) -> WSGIServer:
    """Answer scrapes on ``address:port`` from a daemon thread of this process; returns the
    server (``shutdown()`` stops it)."""
    server = make_server(address, port, application, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    logger.info("Worker metrics on http://%s:%s%s", address, server.server_port, PATH)
    return server
