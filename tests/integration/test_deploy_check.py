"""`manage.py check --deploy` is clean under the production variables the docs give."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _production_variables() -> dict[str, str]:
    """The block between the markers in docs/CONFIGURATION.md, so the doc and the test agree."""
    text = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    block = re.search(r"<!-- production-variables -->\s*```(?:bash)?\n(.*?)```", text, re.S)
    assert block, "docs/CONFIGURATION.md lost its production-variables block"
    pairs = (line.split("=", 1) for line in block.group(1).splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _check_deploy(extra: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(extra, VAR_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_documented_production_variables(tmp_path):
    variables = _production_variables()
    variables["DJANGO_SECRET_KEY"] = "x7" * 30 + "-not-a-real-key-but-long-and-varied-9f3a"
    result = _check_deploy(variables, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_them(tmp_path):
    """The check really inspects these settings: without the variables it fails."""
    result = _check_deploy({}, tmp_path)
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # HSTS not set


def test_check_deploy_warns_behind_a_proxy_without_a_client_address_header(tmp_path):
    variables = _production_variables()
    variables.pop("RATELIMIT_IP_META_KEY")
    variables["DJANGO_SECRET_KEY"] = "x7" * 30 + "-not-a-real-key-but-long-and-varied-9f3a"
    result = _check_deploy(variables, tmp_path)
    assert result.returncode != 0
    assert "tenants.W001" in result.stderr + result.stdout
