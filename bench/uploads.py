"""Upload memory and speed: a file much larger than the process could hold streams through.

Run it on real services (the harness starts PostgreSQL, Redis and an S3 server unless the
environment names others):

    .venv/bin/python -m scripts.services run -- .venv/bin/python bench/uploads.py \\
        [--sizes-mb 10,100,1000] [--storages local,s3]

For each storage, the Procfile's gunicorn (``config/gunicorn.py``, one worker) serves the API with
``STORAGE_PROVIDER`` set to it (local: a temporary ``UPLOAD_DIR``; s3: a bucket on
``AWS_S3_ENDPOINT_URL``). Each size is one raw upload (``POST /api/v1/files/?filename=``, a
``Content-Length`` body of random bytes, streamed from a file on disk by ``http.client``). While it
runs, a thread samples the worker's resident memory (``VmRSS`` of ``/proc/<pid>/status``) every
20 ms; the table shows the worker's memory before the upload and the most it reached during it.
A file held in memory would add its size to that peak; a streamed one adds a chunk.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import print_table, total_memory_gib  # noqa: E402
from scripts.services import free_port, wait_for_port  # noqa: E402
from tests.live import stop_process  # noqa: E402

MB = 1024**2
COLUMNS = ("storage", "size MB", "seconds", "MB/s", "worker RSS before MB", "worker RSS peak MB")


def _setup() -> str:
    """Migrate, make the bench tenant (no file-size or storage limit), return a fresh key."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from tenants import services
    from tenants.models import Plan, Tenant

    call_command("migrate", interactive=False, verbosity=0)
    tenant = Tenant.objects.filter(slug="bench-uploads").first() or services.tenant_create(
        slug="bench-uploads", name="bench-uploads", plan=Plan.objects.get(code="pro")
    )
    tenant.limit_overrides = {"max_file_bytes": None, "storage_bytes": None}
    tenant.save(update_fields=["limit_overrides", "updated_at"])
    return services.api_key_create(tenant=tenant, name="bench uploads").secret


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _worker_pid(master: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


def _serve(stack: ExitStack, env: dict) -> tuple[int, int]:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 (our own gunicorn, fixed arguments)
        [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi:application",
         "-c", "python:config.gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--timeout", "600"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stack.callback(stop_process, process)
    wait_for_port(port, timeout=30)
    return port, _worker_pid(process.pid)


def _upload(port: int, secret: str, path: Path, size: int, worker: int) -> tuple[float, float]:
    """One raw upload of ``path``; returns (seconds, peak worker RSS in MB during it)."""
    peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb(worker))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    with path.open("rb") as body:
        connection.request(
            "POST",
            f"/api/v1/files/?filename={path.name}",
            body=body,
            headers={
                "Authorization": f"Bearer {secret}",
                "Content-Type": "application/octet-stream",
                "Content-Length": str(size),
                "Host": "localhost",
            },
        )
        answer = connection.getresponse()
        text = answer.read()
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    if answer.status != 201:
        raise RuntimeError(f"upload answered {answer.status}: {text[:300]!r}")
    assert json.loads(text)["size"] == size
    return seconds, peak[0]


def _random_file(folder: Path, size: int) -> Path:
    path = folder / f"bench-{size // MB}mb.bin"
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MB))
            out.write(chunk)
            left -= len(chunk)
    return path


def _storage_env(name: str, folder: Path) -> dict:
    env = {**os.environ, "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "GUNICORN_ACCESS_LOG": ""}
    if name == "local":
        return {**env, "STORAGE_PROVIDER": "local", "UPLOAD_DIR": str(folder / "uploads")}
    import boto3

    endpoint = os.environ["AWS_S3_ENDPOINT_URL"]
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return {**env, "STORAGE_PROVIDER": "s3-compatible", "AWS_S3_BUCKET": bucket}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="10,100,1000")
    parser.add_argument("--storages", default="local,s3")
    args = parser.parse_args()
    sizes = [int(mb) * MB for mb in args.sizes_mb.split(",")]
    print(f"machine: {os.cpu_count()} CPUs, {total_memory_gib():.1f} GiB")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    secret = _setup()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ils-bench-uploads-") as tmp:
        folder = Path(tmp)
        files = {size: _random_file(folder, size) for size in sizes}
        for storage in args.storages.split(","):
            with ExitStack() as stack:
                port, worker = _serve(stack, _storage_env(storage, folder))
                for size in sizes:
                    before = _rss_mb(worker)
                    seconds, peak = _upload(port, secret, files[size], size, worker)
                    rows.append(
                        [storage, f"{size // MB}", f"{seconds:.2f}", f"{size / MB / seconds:.1f}",
                         f"{before:.0f}", f"{peak:.0f}"]
                    )  # fmt: skip
                    print(f"[uploads] {storage} {size // MB} MB: {seconds:.2f} s", flush=True)
    print()
    print_table(COLUMNS, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
