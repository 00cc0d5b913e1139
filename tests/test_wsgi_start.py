"""The WSGI application starts in a fresh process, as gunicorn starts it, and answers.

A test process has imported most modules before any test runs, so an import cycle that only
shows in a fresh interpreter (DRF resolving its settings while ``rest_framework.views`` is being
imported) would pass every other test and still stop every server from booting.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.child_process import ROOT


def test_the_wsgi_application_boots_in_a_fresh_process_and_answers():
    code = (
        "import io, json\n"
        "from config.wsgi import application\n"
        "statuses = []\n"
        "environ = {'REQUEST_METHOD': 'GET', 'PATH_INFO': '/health/live', 'SERVER_NAME': "
        "'localhost', 'SERVER_PORT': '80', 'HTTP_HOST': 'localhost', 'wsgi.url_scheme': 'http', "
        "'wsgi.input': io.BytesIO(b''), 'QUERY_STRING': ''}\n"
        "body = b''.join(application(environ, lambda status, headers: statuses.append(status)))\n"
        "print(json.dumps([statuses[0], json.loads(body)]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "config.settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["200 OK", {"status": "ok"}]
