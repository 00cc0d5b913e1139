"""``manage.py recommend_indexes``: index proposals for the costly queries, checked with HypoPG.

Read-only: the advisor (metrics/queries/advisor/) plans queries in a read-only transaction it
rolls back and uses hypothetical indexes only; it prints the ``CREATE INDEX CONCURRENTLY`` to run.
``--write-migration`` writes the verified proposals on this project's models as migrations
(``AddIndexConcurrently``: ``metrics.queries.advisor.migration``); the database is still untouched
until they are applied.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from metrics.models import QueryFingerprint
from metrics.queries.advisor import Candidate, Proposal, Report, advise
from metrics.queries.advisor.migration import write_migrations


def _cost(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _size(size: int | None) -> str:
    if size is None:
        return "size unknown without HypoPG"
    return f"estimated size {size / 1024 / 1024:.1f} MB"


def _short(sql: str, width: int = 110) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


class Command(BaseCommand):
    help = (
        "Propose indexes for the costliest statements in pg_stat_statements (and --query texts), "
        "checked with HypoPG hypothetical indexes; prints before/after plan costs and the "
        "CREATE INDEX CONCURRENTLY to run. Changes nothing in the database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--top",
            type=int,
            default=settings.INDEX_ADVISOR_TOP_QUERIES,
            help="how many statements to read from pg_stat_statements, by total time "
            "(default INDEX_ADVISOR_TOP_QUERIES=%(default)s)",
        )
        parser.add_argument(
            "--min-gain",
            type=float,
            default=settings.INDEX_ADVISOR_MIN_GAIN,
            help="keep a verified proposal only if it cuts a query's plan cost by this share "
            "(default INDEX_ADVISOR_MIN_GAIN=%(default)s)",
        )
        parser.add_argument(
            "--query",
            action="append",
            default=[],
            metavar="SQL",
            help="also advise on this SQL (%%s or $1 placeholders); repeatable",
        )
        parser.add_argument("--database", default="default", help="database alias")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument(
            "--write-migration",
            action="store_true",
            help="write the verified proposals on this project's models as a migration per app "
            "(AddIndexConcurrently, atomic = False), and print the Meta.indexes lines to add",
        )

    def handle(self, *args, **options) -> None:
        self._json = options["json"]
        if options["top"] < 1:
            raise CommandError("--top must be at least 1")
        if not 0 <= options["min_gain"] < 1:
            raise CommandError("--min-gain must be at least 0 and below 1 (a share, e.g. 0.3)")
        report = advise(
            using=options["database"],
            top=options["top"],
            min_gain=options["min_gain"],
            extra_sql=[*options["query"], *self._monitored(options["top"])],
        )
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2, default=str))
        else:
            self._print(report, options["verbosity"])
        if options["write_migration"]:
            self._write_migrations(report)

    def _write_migrations(self, report: Report) -> None:
        if not report.supported:
            raise CommandError("No migration written: the advisor cannot run on this database.")
        written = write_migrations(report.proposals)
        write = self.stderr.write if self._json else self.stdout.write
        for path in written.paths:
            write(self.style.SUCCESS(f"Wrote {path}"))
        if written.meta_lines:
            write("Add each index to its model's Meta.indexes (else makemigrations removes it):")
            for line in written.meta_lines:
                write(f"  {line}")
        for proposal, reason in written.skipped:
            write(f"Not written: {proposal.name} ({reason})")
        if not written.paths:
            write("No migration written.")

    def _monitored(self, top: int) -> list[Candidate]:
        """The query monitor's costliest SELECTs (``QueryFingerprint``), with their figures; none
        on a database the project's migrations have not made (the advisor also runs on others)."""
        if QueryFingerprint._meta.db_table not in connection.introspection.table_names():
            return []
        rows = QueryFingerprint.objects.filter(sql__startswith="SELECT").order_by("-total_ms")
        return [
            Candidate(row.sql, row.calls, row.total_ms, "query monitor")
            for row in rows.only("sql", "calls", "total_ms")[:top]
        ]

    def _print(self, report: Report, verbosity: int) -> None:
        write = self.stdout.write
        if not report.supported:
            for notice in report.notices:
                write(notice)
            write("Nothing to do on this database.")
            return
        write(
            f"Index advisor on database {report.database!r}: {report.statements} statements read "
            f"(pg_stat_statements: {'yes' if report.pg_stat_statements else 'no'}, "
            f"HypoPG: {'yes' if report.hypopg else 'no'}, min gain {report.min_gain:.0%})."
        )
        for notice in report.notices:
            write(self.style.WARNING(f"MISSING: {notice}"))
        if not report.proposals:
            write("No index proposals.")
        for number, proposal in enumerate(report.proposals, 1):
            self._print_proposal(number, proposal)
        if report.skipped:
            write(
                f"\n{len(report.skipped)} statements without a proposal"
                + ("" if verbosity > 1 else " (-v 2 lists them).")
            )
            if verbosity > 1:
                for skipped in report.skipped:
                    write(f"  - {skipped['reason']}: {_short(skipped['sql'])}")

    def _print_proposal(self, number: int, proposal: Proposal) -> None:
        write = self.stdout.write
        status = (
            "verified by HypoPG"
            if proposal.verified
            else f"unverified: {proposal.unverified_reason}"
        )
        write(
            f"\n[{number}] {proposal.table.schema}.{proposal.table.name} "
            f"({', '.join(proposal.columns)}) - {status}"
        )
        write(f"    {proposal.statement}")
        if proposal.verified:
            write(
                f"    plan cost: before {_cost(proposal.before_cost)}, after "
                f"{_cost(proposal.after_cost)} ({proposal.gain:.1%} less)"
            )
        else:
            write(f"    plan cost: before {_cost(proposal.before_cost)}, after - (not measured)")
        calls = sum(q.calls or 0 for q in proposal.queries)
        total_ms = sum(q.total_ms or 0.0 for q in proposal.queries)
        count = len(proposal.queries)
        write(
            f"    helps {count} {'query' if count == 1 else 'queries'}: {calls:,} calls, "
            f"{total_ms:,.1f} ms total in pg_stat_statements"
        )
        for effect in proposal.effects:
            query = effect["query"]
            timing = (
                f"{query.calls:,} calls, {query.total_ms:,.1f} ms; "
                if query.calls is not None
                else f"{query.source}, not in pg_stat_statements; "
            )
            write(
                f"      - {timing}cost {_cost(effect['before_cost'])} -> "
                f"{_cost(effect['after_cost'])}: {_short(query.sql)}"
            )
        cost = proposal.write_cost
        since = f"since {cost['since']}" if cost.get("since") else "since the statistics began"
        write(
            f"    write cost: {cost.get('writes', 0):,} writes {since} would also have updated this "
            f"index ({cost.get('inserts', 0):,} inserts, {cost.get('updates', 0):,} updates "
            f"({cost.get('hot_updates', 0):,} HOT), {cost.get('deletes', 0):,} deletes); "
            f"{cost.get('rows', 0):,} rows, {_size(proposal.size_bytes)}"
        )
