"""``manage.py replicas``: check every read replica now and print its state, lag and reads."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from config.replicas import monitor


class Command(BaseCommand):
    help = "Check the read replicas now: state (healthy/down/lagging/promoted) and lag."

    def handle(self, *args, **options) -> None:
        if not settings.READ_REPLICA_ALIASES:
            self.stdout.write(
                "No read replicas (set USE_READ_REPLICAS=1 and DATABASE_READ_REPLICAS)."
            )
            return
        monitor.check_now()
        columns = ("alias", "host", "state", "lag (s)", "reads", "share", "error")
        rows = [
            (
                row["alias"],
                row["host"],
                row["state"],
                "-" if row["lag_seconds"] is None else f"{row['lag_seconds']:.1f}",
                str(row["reads"]),
                f"{row['read_share']:.0%}",
                row["error"][:60],
            )
            for row in monitor.snapshot()
        ]
        widths = [max(len(cell) for cell in column) for column in zip(columns, *rows, strict=False)]
        for line in [columns, *rows]:
            self.stdout.write(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(line, widths, strict=True)
                ).rstrip()
            )
        self.stdout.write(
            "Reads are those routed by this process (a web process shows its own at /api/ops/replicas)."
        )
