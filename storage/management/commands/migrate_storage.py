"""``manage.py migrate_storage --from local --to s3``: move files between storages (docs/FILES.md).

The moving, its manifest and its invariants are ``storage.transfer``'s; this is the command line:
the arguments, the worker threads, the progress bar and the summary. Exit codes: 0 every file
moved (or nothing to move), 1 refused (bad arguments, another run holds the migration), 3 some
files did not move (the summary and the admin's migration page say why), 130 interrupted.
"""

from __future__ import annotations

import queue
import sys
import threading
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.db.models import Count, Sum

from storage.transfer import (
    MigrationRefused,
    Mover,
    Progress,
    check_storages,
    file_storages,
    files_to_move,
    open_items,
    record_progress,
    start_migration,
)
from tenants.context import unscoped
from tenants.models import Tenant

PARTLY_FAILED = 3
INTERRUPTED = 130
#: Seconds between heartbeats (counts saved on the migration row, read by the admin).
HEARTBEAT_SECONDS = 2.0
SHOWN_FAILURES = 20


def _megabytes(count: int) -> str:
    return f"{count / 1_000_000:,.1f} MB"


class ProgressBar:
    """One line on ``stream`` (the command's stderr): redrawn in place on a terminal, printed every
    few seconds otherwise."""

    WIDTH = 30

    def __init__(self, stream, progress: Progress, *, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and stream.isatty()
        self.total_files, self.total_bytes = progress.total_files, progress.total_bytes
        self.files = progress.moved_files  # moved before this run count as done
        self.bytes = progress.moved_bytes
        self.failed = 0
        self.started = time.monotonic()
        self.run_files = self.run_bytes = 0
        self.shown = 0.0

    def add(self, *, moved: bool, size: int) -> None:
        if moved:
            self.files += 1
            self.bytes += size
            self.run_files += 1
            self.run_bytes += size
        else:
            self.failed += 1
        self.draw()

    def rates(self) -> tuple[float, float]:
        seconds = max(time.monotonic() - self.started, 1e-6)
        return self.run_files / seconds, self.run_bytes / seconds

    def line(self) -> str:
        done = self.files + self.failed
        share = done / self.total_files if self.total_files else 1.0
        bar = "#" * int(share * self.WIDTH)
        files_per_second, bytes_per_second = self.rates()
        return (
            f"[{bar:<{self.WIDTH}}] {done}/{self.total_files} files · "
            f"{_megabytes(self.bytes)} of {_megabytes(self.total_bytes)} · "
            f"{files_per_second:.1f} files/s · {bytes_per_second / 1_000_000:.1f} MB/s · "
            f"{self.failed} failed"
        )

    def draw(self, *, last: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not last and now - self.shown < (0.2 if self.tty else 5.0):
            return
        self.shown = now
        end = "\n" if (last or not self.tty) else ""
        self.stream.write(("\r" if self.tty else "") + self.line(), ending=end)
        self.stream.flush()


class Command(BaseCommand):
    help = (
        "Move tenants' files from one storage to another, resumably: killed and run again, it "
        "finishes the rest. Reads keep working meanwhile (a file is served from where its row says)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--from", dest="source", required=True, help="A STORAGES name.")
        parser.add_argument("--to", dest="target", required=True, help="A STORAGES name.")
        parser.add_argument("--tenant", help="Only this tenant's files (its slug or id).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would move; change nothing."
        )
        parser.add_argument(
            "--verify",
            action="store_true",
            help="Read each copy back from the target and compare its sha256 with the record.",
        )
        parser.add_argument(
            "--delete-source",
            action="store_true",
            help="Delete each source copy after a verified copy (implies --verify).",
        )
        parser.add_argument(
            "--concurrency", type=int, default=4, help="Files moved at once (1-64; default 4)."
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="No progress bar (the summary remains)."
        )

    def handle(self, *args, **options) -> None:
        with unscoped():
            self._handle(**options)

    def _handle(self, *, source, target, tenant, dry_run, verify, delete_source, concurrency,
                no_progress, **options) -> None:  # fmt: skip
        if not 1 <= concurrency <= 64:
            raise CommandError("--concurrency is 1 to 64.")
        scope = self._tenant(tenant) if tenant else None
        try:
            check_storages(source, target)
        except MigrationRefused as refusal:
            raise CommandError(str(refusal)) from None
        if dry_run:
            self._dry_run(source, target, scope)
            return
        try:
            migration, resumed = start_migration(
                source=source, target=target, tenant=scope, verify=verify,
                delete_source=delete_source,
            )  # fmt: skip
        except MigrationRefused as refusal:
            raise CommandError(str(refusal)) from None
        progress = record_progress(migration)
        self.stdout.write(
            f"{'Resuming' if resumed else 'Starting'} migration #{migration.pk}: {migration}, "
            f"{progress.total_files} files ({_megabytes(progress.total_bytes)}), "
            f"{progress.moved_files} moved already"
            f"{', verifying copies' if migration.verify else ''}"
            f"{', deleting source copies' if migration.delete_source else ''}."
        )
        bar = ProgressBar(self.stderr, progress, enabled=not no_progress)
        failures: list[str] = []
        interrupted = self._run(migration, concurrency, bar, failures)
        final = record_progress(migration, finish=not interrupted)
        bar.draw(last=True)
        files_per_second, bytes_per_second = bar.rates()
        self.stdout.write(
            f"Migration #{migration.pk}: {final.moved_files} of {final.total_files} files moved "
            f"({_megabytes(final.moved_bytes)}), {final.failed_files} failed, "
            f"{final.left_files} left; this run {bar.run_files} files, "
            f"{_megabytes(bar.run_bytes)} in {time.monotonic() - bar.started:.1f} s "
            f"({files_per_second:.1f} files/s, {bytes_per_second / 1_000_000:.1f} MB/s)."
        )
        for line in failures[:SHOWN_FAILURES]:
            self.stderr.write(f"  failed: {line}")
        if len(failures) > SHOWN_FAILURES:
            self.stderr.write(f"  ... and {len(failures) - SHOWN_FAILURES} more (see the admin).")
        if interrupted:
            self.stderr.write("Interrupted: run the same command again to finish the rest.")
            sys.exit(INTERRUPTED)
        if final.moved_files != final.total_files:
            raise CommandError(
                f"{final.total_files - final.moved_files} files did not move; fix the cause and "
                "run the same command again (moved files are not copied again).",
                returncode=PARTLY_FAILED,
            )

    def _tenant(self, value: str) -> Tenant:
        lookup = {"pk": int(value)} if value.isascii() and value.isdigit() else {"slug": value}
        found = Tenant.objects.filter(**lookup).first()
        if found is None:
            raise CommandError(f"No tenant {value!r}.")
        return found

    def _dry_run(self, source: str, target: str, tenant) -> None:
        found = files_to_move(source=source, tenant=tenant).aggregate(
            count=Count("pk"), size=Sum("size", default=0)
        )
        count, size = found["count"], found["size"]
        scope = f" of {tenant}" if tenant else ""
        self.stdout.write(
            f"Dry run: {count} files{scope} ({_megabytes(size)}) would move from {source} to "
            f"{target}. Configured storages: {', '.join(file_storages())}. Nothing was changed."
        )

    def _run(self, migration, concurrency: int, bar: ProgressBar, failures: list[str]) -> bool:
        """Feed the open items to ``concurrency`` threads; returns whether it was interrupted."""
        mover = Mover(migration)
        work: queue.Queue = queue.Queue(maxsize=concurrency * 4)
        done: queue.Queue = queue.Queue()

        def worker() -> None:
            try:
                while (item := work.get()) is not None:
                    done.put((item, mover.move(item)))
            finally:
                connections.close_all()  # this thread's connections

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        heartbeat = time.monotonic()

        def drain() -> None:
            nonlocal heartbeat
            while True:
                try:
                    item, state = done.get_nowait()
                except queue.Empty:
                    break
                bar.add(moved=state == "moved", size=item.size)
                if state != "moved":
                    failures.append(f"file {item.file_id}: {item.error}")
            if time.monotonic() - heartbeat > HEARTBEAT_SECONDS:
                heartbeat = time.monotonic()
                record_progress(migration)

        interrupted = False
        try:
            for item in open_items(migration):
                while True:
                    try:
                        work.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        drain()
                drain()
        except KeyboardInterrupt:
            interrupted = True
            while not work.empty():  # what no thread has taken stays open in the manifest
                work.get_nowait()
        for _ in threads:
            work.put(None)
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)
                drain()
        drain()
        return interrupted
