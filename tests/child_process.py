"""Run a snippet of Django code in a child process with the real settings.

For what a test process cannot do to itself: a database pool or connection is made once per process
from the environment, so a different ``DATABASE_URL`` or pool size needs a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_django(code: str, *, drop_prefixes: tuple[str, ...] = (), **variables: str) -> Any:
    """Run ``code`` after ``django.setup()``; return the JSON value it printed on its last line.

    The child inherits this environment minus the variables starting with ``drop_prefixes``,
    plus ``variables``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes or ("\0",))}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", **variables)
    script = "import django\ndjango.setup()\n" + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
