"""Storage migration speed: ``manage.py migrate_storage`` between local disk and an S3 server.

Run it on real services (the harness starts PostgreSQL, Redis and an S3 server, moto's server
mode, unless the environment names others):

    .venv/bin/python -m scripts.services run -- .venv/bin/python bench/migrate_storage.py \\
        [--small 1000] [--small-kib 16] [--large 40] [--large-mib 8] [--concurrency 1,4]

(``make bench-migrate`` runs exactly that with the defaults.)

Set-up: a new bucket on ``AWS_S3_ENDPOINT_URL`` (boto3) and a temporary ``UPLOAD_DIR`` are put in
the environment (``AWS_S3_BUCKET``, ``AWS_S3_REGION=us-east-1``, ``UPLOAD_DIR``,
``STORAGE_PROVIDER=local``) before ``django.setup()``, so this process and every ``manage.py``
it runs configure the same ``local`` and ``s3`` storages on the same database. The database is
migrated; two tenants on the "pro" plan with no file-size or storage limit
(``limit_overrides``) get their files through ``storage.services.file_store`` on ``local``, as
an upload would: ``bench-migrate-small`` ``--small`` files of ``--small-kib`` KiB and
``bench-migrate-large`` ``--large`` files of ``--large-mib`` MiB, random bytes (each file its
own).

Runs, for each set and each ``--concurrency`` N, a round trip of two real commands (a
subprocess each, ``--tenant`` the set's tenant, ``--no-progress``):

1. ``manage.py migrate_storage --from local --to s3 --concurrency N``;
2. ``manage.py migrate_storage --from s3 --to local --verify --concurrency N``.

Before each run the target's stale copies of that tenant's files (the previous run leaves the
source copies behind: no ``--delete-source``) are deleted, so every run copies into an empty
target, as a first migration would. The figures (files, MB, seconds, files/s, MB/s) are the
command's own summary line ("this run ...": the moving, not the process start or the manifest);
``process s`` is the whole subprocess, Django's start and the manifest included. MB are 10^6
bytes, as the command prints them.

Exit status 1 when a run exits non-zero, prints no summary, or does not move every file of its set
(the summary's moved/total/failed/left and this run's count, and afterwards every row of the
tenant must name the target storage); the table of the runs so far is printed first.

Caveat: moto, PostgreSQL, Redis and the command share this machine's CPUs, and moto keeps objects
in its own process: the S3 figures are this machine's and moto's, not a real S3's.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import print_table, total_memory_gib  # noqa: E402

KIB, MIB = 1024, 1024**2
REGION = "us-east-1"
OVERRIDES = {"max_file_bytes": None, "storage_bytes": None}
RUN_TIMEOUT = 900.0
#: The command's last stdout line (storage/management/commands/migrate_storage.py).
SUMMARY = re.compile(
    r"Migration #(?P<id>\d+): (?P<moved>[\d,]+) of (?P<total>[\d,]+) files moved "
    r"\((?P<moved_mb>[\d,.]+) MB\), (?P<failed>[\d,]+) failed, (?P<left>-?[\d,]+) left; "
    r"this run (?P<files>[\d,]+) files, (?P<mb>[\d,.]+) MB in (?P<seconds>[\d,.]+) s "
    r"\((?P<files_per_s>[\d,.]+) files/s, (?P<mb_per_s>[\d,.]+) MB/s\)\."
)
COLUMNS = (
    "set",
    "direction",
    "flags",
    "concurrency",
    "files",
    "MB",
    "seconds",
    "files/s",
    "MB/s",
    "process s",
)


def log(message: str) -> None:
    print(f"[migrate] {message}", file=sys.stderr, flush=True)


class BenchFailed(RuntimeError):
    """A run did not move every file of its set."""


@dataclass(frozen=True)
class FileSet:
    name: str
    count: int
    size: int

    @property
    def slug(self) -> str:
        return f"bench-migrate-{self.name}"

    @property
    def label(self) -> str:
        unit, scale = ("KiB", KIB) if self.size < MIB else ("MiB", MIB)
        return f"{self.name} ({self.count} x {self.size / scale:g} {unit})"


@dataclass
class Run:
    files: FileSet
    source: str
    target: str
    verify: bool
    concurrency: int


@dataclass
class Result:
    run: Run
    files: int
    mb: float
    seconds: float
    files_per_second: float
    mb_per_second: float
    process_seconds: float


# --- Environment and project ------------------------------------------------------------------


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def configure(upload_dir: Path) -> tuple[str, str]:
    """A fresh bucket and the environment both storages read; returns (endpoint, bucket)."""
    import boto3

    endpoint = os.environ["AWS_S3_ENDPOINT_URL"]
    bucket = f"bench-migrate-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket=bucket)
    os.environ.pop("DJANGO_DEBUG", None)
    os.environ.update(
        {
            "UPLOAD_DIR": str(upload_dir),
            "AWS_S3_BUCKET": bucket,
            "AWS_S3_REGION": REGION,
            "STORAGE_PROVIDER": "local",
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
    )
    return endpoint, bucket


def setup_project() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    if settings.DEBUG:
        sys.exit("DEBUG is on (it keeps every query in memory): unset DJANGO_DEBUG")
    if not {"local", "s3"} <= set(settings.STORAGES):
        sys.exit(f"the settings configured no local and s3 storages: {sorted(settings.STORAGES)}")
    call_command("migrate", interactive=False, verbosity=0)


def make_tenant(slug: str):
    """Get or create the tenant with no file limits and no files (rows of an earlier run go)."""
    from storage.models import StoredFile
    from tenants import services
    from tenants.models import Plan, Tenant

    tenant = Tenant.objects.filter(slug=slug).first() or services.tenant_create(
        slug=slug, name=slug, plan=Plan.objects.get(code="pro")
    )
    tenant.limit_overrides = OVERRIDES
    tenant.full_clean()
    tenant.save(update_fields=["limit_overrides", "updated_at"])
    StoredFile.all_tenants.filter(tenant_id=tenant.pk).delete()
    return tenant


def _file_bytes(size: int, number: int) -> bytes:
    """Random bytes that detect as application/octet-stream (allowed on every plan)."""
    from storage.detection import HEAD_BYTES, detect_type

    while True:
        data = b"\0bench-migrate\0" + number.to_bytes(8, "big") + os.urandom(size - 23)
        if detect_type(data[:HEAD_BYTES]) == "application/octet-stream":
            return data


def fill(files: FileSet):
    """The set's tenant and its files, stored on ``local`` through ``file_store``."""
    from storage.detection import HEAD_BYTES
    from storage.services import file_store

    tenant = make_tenant(files.slug)
    started = time.monotonic()
    for number in range(files.count):
        data = _file_bytes(files.size, number)
        file_store(
            tenant=tenant,
            source=io.BytesIO(data),
            name=f"{files.name}-{number}.bin",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            head=data[:HEAD_BYTES],
        )
    log(f"{files.label}: stored on local in {time.monotonic() - started:.1f} s")
    return tenant


def where(tenant) -> dict[str, int]:
    from django.db.models import Count

    from storage.models import StoredFile

    rows = StoredFile.all_tenants.filter(tenant_id=tenant.pk).values("storage")
    return dict(rows.annotate(n=Count("pk")).values_list("storage", "n"))


def clear_target(tenant, target: str, bucket: str, endpoint: str) -> None:
    """Delete the target's stale copies of ``tenant``'s files (every row names the source)."""
    from django.conf import settings

    from storage.keys import tenant_prefix

    prefix = tenant_prefix(tenant.pk)
    if target == "local":
        shutil.rmtree(
            Path(settings.STORAGES["local"]["OPTIONS"]["location"]) / prefix, ignore_errors=True
        )
        return
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


# --- A run ------------------------------------------------------------------------------------


def command(run: Run) -> list[str]:
    argv = [sys.executable, "manage.py", "migrate_storage", "--from", run.source, "--to",
            run.target, "--tenant", run.files.slug, "--concurrency", str(run.concurrency),
            "--no-progress"]  # fmt: skip
    return [*argv, "--verify"] if run.verify else argv


def measure(run: Run, tenant, bucket: str, endpoint: str) -> Result:
    before = where(tenant)
    if before != {run.source: run.files.count}:
        raise BenchFailed(f"{run.files.slug}: expected {run.files.count} files on {run.source}, "
                          f"found {before}")  # fmt: skip
    clear_target(tenant, run.target, bucket, endpoint)
    argv = command(run)
    started = time.monotonic()
    try:
        done = subprocess.run(  # noqa: S603 (our own manage.py, fixed arguments)
            argv, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
            timeout=RUN_TIMEOUT,
        )  # fmt: skip
    except subprocess.TimeoutExpired as error:
        raise BenchFailed(
            f"{shlex.join(argv[1:])} did not finish in {RUN_TIMEOUT:.0f} s"
        ) from error
    process_seconds = time.monotonic() - started
    output = f"--- stdout ---\n{done.stdout[-3000:]}--- stderr ---\n{done.stderr[-3000:]}"
    lines = done.stdout.strip().splitlines()
    found = SUMMARY.fullmatch(lines[-1].strip()) if lines else None
    if done.returncode != 0 or found is None:
        raise BenchFailed(
            f"{shlex.join(argv[1:])} exited {done.returncode}"
            f"{'' if found else ', no summary line'}\n{output}"
        )
    counts = {key: int(_number(value)) for key, value in found.groupdict().items()
              if key in ("moved", "total", "failed", "left", "files")}  # fmt: skip
    expected = {"moved": run.files.count, "total": run.files.count, "failed": 0, "left": 0,
                "files": run.files.count}  # fmt: skip
    after = where(tenant)
    if counts != expected or after != {run.target: run.files.count}:
        raise BenchFailed(
            f"{shlex.join(argv[1:])} did not move every file: summary {counts} (expected "
            f"{expected}), rows now {after}\n{output}"
        )
    return Result(
        run=run,
        files=counts["files"],
        mb=_number(found["mb"]),
        seconds=_number(found["seconds"]),
        files_per_second=_number(found["files_per_s"]),
        mb_per_second=_number(found["mb_per_s"]),
        process_seconds=process_seconds,
    )


# --- Report -----------------------------------------------------------------------------------


def cells(result: Result) -> list[str]:
    run = result.run
    return [
        run.files.label,
        f"{run.source} → {run.target}",
        "--verify" if run.verify else "-",
        str(run.concurrency),
        str(result.files),
        f"{result.mb:.1f}",
        f"{result.seconds:.1f}",
        f"{result.files_per_second:.1f}",
        f"{result.mb_per_second:.1f}",
        f"{result.process_seconds:.1f}",
    ]


def print_results(results: list[Result]) -> None:
    print()
    print_table(COLUMNS, [cells(result) for result in results])
    sys.stdout.flush()


def describe(endpoint: str, bucket: str, sets: list[FileSet], concurrencies: list[int]) -> str:
    import moto
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0].split()[0]
    host = urlsplit(endpoint).hostname
    server = (
        f"moto {moto.__version__} server on localhost ({endpoint})"
        if host in ("127.0.0.1", "localhost", "::1")
        else f"S3 server at {endpoint} (not this machine's moto)"
    )
    command_line = shlex.join(
        [os.path.relpath(sys.executable, ROOT), os.path.relpath(__file__, ROOT), *sys.argv[1:]]
    )
    s3 = (
        f"{settings.FILES_S3_PART_BYTES // MIB} MiB parts, {settings.FILES_S3_TRANSFER_THREADS} "
        f"threads, spooled past {settings.FILES_S3_MEMORY_BYTES // MIB} MiB"
    )
    return "\n".join(
        [
            f"machine: {os.cpu_count()} CPUs, {total_memory_gib():.1f} GiB; Python "
            f"{platform.python_version()}, PostgreSQL {postgres}; storage: {server}, "
            f"bucket {bucket} ({s3}); local: {settings.STORAGES['local']['OPTIONS']['location']}",
            f"command: {command_line}",
            "sets: " + ", ".join(f.label for f in sets) + f"; concurrency {concurrencies}; "
            "each: local → s3, then s3 → local --verify, the target's stale copies deleted first",
        ]
    )


# --- Main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="small files (default 1000)")
    parser.add_argument("--small-kib", type=int, default=16, help="a small file's KiB (16)")
    parser.add_argument("--large", type=int, default=40, help="large files (default 40)")
    parser.add_argument("--large-mib", type=int, default=8, help="a large file's MiB (8)")
    parser.add_argument(
        "--concurrency", default="1,4", help="comma-separated --concurrency values (default 1,4)"
    )
    args = parser.parse_args()
    try:
        args.concurrencies = [int(part) for part in args.concurrency.split(",") if part.strip()]
    except ValueError:
        parser.error("--concurrency must be comma-separated integers, e.g. 1,4")
    if not args.concurrencies or not all(1 <= n <= 64 for n in args.concurrencies):
        parser.error("--concurrency must name at least one value, each 1 to 64")
    if args.small < 0 or args.large < 0 or not args.small + args.large:
        parser.error("--small and --large must be 0 or more, not both 0")
    if args.small_kib < 1 or args.large_mib < 1:
        parser.error("--small-kib and --large-mib must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    missing = [name for name in ("DATABASE_URL", "REDIS_URL", "AWS_S3_ENDPOINT_URL")
               if not os.environ.get(name)]  # fmt: skip
    if missing:
        sys.exit(
            f"{', '.join(missing)} not set: run it under `python -m scripts.services run -- ...`"
        )
    sets = [
        files
        for files in (
            FileSet("small", args.small, args.small_kib * KIB),
            FileSet("large", args.large, args.large_mib * MIB),
        )
        if files.count
    ]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="ils-bench-migrate-") as tmp:
        endpoint, bucket = configure(Path(tmp) / "uploads")
        setup_project()
        print(describe(endpoint, bucket, sets, args.concurrencies), flush=True)
        try:
            for files in sets:
                tenant = fill(files)
                for concurrency in args.concurrencies:
                    for source, target, verify in (("local", "s3", False), ("s3", "local", True)):
                        run = Run(files, source, target, verify, concurrency)
                        results.append(measure(run, tenant, bucket, endpoint))
                        result = results[-1]
                        log(
                            f"{files.name} {source} → {target} -c {concurrency}: "
                            f"{result.seconds:.1f} s, {result.files_per_second:.1f} files/s, "
                            f"{result.mb_per_second:.1f} MB/s"
                        )
        except BenchFailed as error:
            print_results(results)
            print(f"FAILED: {error}", file=sys.stderr)
            return 1
    print_results(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
