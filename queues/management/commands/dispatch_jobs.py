"""``manage.py dispatch_jobs``: rescue expired leases and publish due jobs, once or in a loop."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from queues.dispatcher import dispatch


class Command(BaseCommand):
    help = "Rescue jobs whose worker is gone and publish due jobs (what beat's dispatch does)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--loop", action="store_true", help="Keep dispatching until stopped.")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between rounds.")

    def handle(self, *args, loop: bool, interval: float, **options) -> None:
        while True:
            counts = dispatch()
            if any(counts.values()) or not loop:
                self.stdout.write(
                    f"requeued {counts['requeued']}, dead {counts['dead']}, "
                    f"published {counts['published']}"
                )
            if not loop:
                return
            time.sleep(interval)
