"""The database side, in one read-only session: the pg_stat_statements source, the existing tables
and indexes, the HypoPG/EXPLAIN verification and the write costs of the chosen indexes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections, transaction

from metrics.queries.advisor.parsing import parse, to_dollar_params
from metrics.queries.advisor.proposals import (
    add_proposals,
    choose_unverified,
    choose_verified,
    index_choices,
)
from metrics.queries.advisor.report import Candidate, Proposal, Report, TableInfo, quote

MARKER = "/* ils-index-advisor */"  # tags the advisor's own SQL so it never advises on itself
_STATEMENT = "ils_advisor_q"

_CONSIDERED = r"^\s*(/\*.*?\*/\s*)*\(*\s*(select|with|update|delete)\M"
_IGNORED = r"pg_catalog\.|information_schema\.|\mpg_stat|ils-index-advisor"


def advise(
    *,
    using: str = "default",
    top: int | None = None,
    min_gain: float | None = None,
    extra_sql: Iterable[str | Candidate] = (),
) -> Report:
    """Propose indexes for this database's costliest statements and ``extra_sql``.

    Read-only: everything runs in one transaction set read-only and rolled back; hypothetical
    indexes and prepared statements are dropped before returning.
    """
    top = settings.INDEX_ADVISOR_TOP_QUERIES if top is None else top
    min_gain = settings.INDEX_ADVISOR_MIN_GAIN if min_gain is None else min_gain
    connection = connections[using]
    report = Report(min_gain=min_gain)
    if connection.vendor != "postgresql":
        report.supported = False
        report.notices.append(
            f"The index advisor needs PostgreSQL (database {using!r} is {connection.vendor}): "
            "it reads pg_stat_statements and checks proposals with HypoPG."
        )
        return report
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute("SET LOCAL transaction_read_only = on")
        # the generic plan does not depend on the values, so EXECUTE q(NULL, ...) plans it
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute("SET LOCAL lock_timeout = '2s'")
        cursor.execute("SET LOCAL statement_timeout = '30s'")
        try:
            _advise(_Session(cursor, using), report, top, min_gain, extra_sql)
        finally:
            transaction.set_rollback(True, using=using)
    return report


class _Session:
    def __init__(self, cursor: Any, using: str) -> None:
        self.cursor, self.using = cursor, using

    def rows(self, sql: str, params: Any = None) -> list[tuple]:
        self.cursor.execute(f"{MARKER} {sql}", params)
        return self.cursor.fetchall()

    def plan(self, sql: str) -> dict[str, Any]:
        """The generic plan of ``sql`` (``$n`` parameters), via PREPARE and EXPLAIN EXECUTE."""
        count = max((int(n) for n in re.findall(r"\$(\d+)", sql)), default=0)
        args = f"({', '.join(['NULL'] * count)})" if count else ""
        prepared = False
        try:
            with transaction.atomic(using=self.using):
                self.cursor.execute(f"PREPARE {_STATEMENT} AS {sql}")
                prepared = True
                self.cursor.execute(f"EXPLAIN (FORMAT JSON) EXECUTE {_STATEMENT}{args}")
                plan = self.cursor.fetchone()[0]
        finally:
            if prepared:
                self.cursor.execute(f"DEALLOCATE {_STATEMENT}")
        return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


def _uses_index(plan: dict[str, Any], index_name: str) -> bool:
    return plan.get("Index Name") == index_name or any(
        _uses_index(child, index_name) for child in plan.get("Plans", ())
    )


def _advise(
    db: _Session, report: Report, top: int, min_gain: float, extra: Iterable[str | Candidate]
) -> None:
    ((report.database, version, preload, pss, hypo, hypo_available),) = db.rows(
        "SELECT current_database(), current_setting('server_version_num')::int,"
        " current_setting('shared_preload_libraries'),"
        " EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'),"
        " EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'hypopg'),"
        " EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg')"
    )
    preloaded = "pg_stat_statements" in preload
    report.pg_stat_statements, report.hypopg = pss and preloaded, hypo
    candidates = [
        Candidate(to_dollar_params(c.sql), c.calls, c.total_ms, c.source)
        if isinstance(c, Candidate)
        else Candidate(to_dollar_params(c), source="extra")
        for c in extra
    ]
    given = {c.sql for c in candidates}
    if not preloaded:
        report.notices.append(
            "pg_stat_statements is missing (not in shared_preload_libraries): add "
            "shared_preload_libraries = 'pg_stat_statements' to postgresql.conf, restart, "
            "then CREATE EXTENSION pg_stat_statements;"
        )
    elif not pss:
        report.notices.append(
            f"pg_stat_statements is missing in database {report.database!r}: run "
            "CREATE EXTENSION pg_stat_statements;"
        )
    else:
        time_column = "total_exec_time" if version >= 130000 else "total_time"
        statements = db.rows(
            f"SELECT s.query, sum(s.calls)::bigint, sum(s.{time_column})"  # noqa: S608 (a fixed name)
            " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = current_database() AND s.query ~* %s AND s.query !~* %s"
            f" GROUP BY s.query ORDER BY sum(s.{time_column}) DESC LIMIT %s",
            [_CONSIDERED, _IGNORED, top],
        )
        hidden = sum(1 for sql, _, _ in statements if sql == "<insufficient privilege>")
        if hidden:
            report.notices.append(
                f"{hidden} statements of other users are hidden: GRANT pg_read_all_stats TO "
                "the advisor's database user to see them."
            )
        for sql, calls, total_ms in statements:
            if sql in given:  # a given text pg_stat_statements also knows: one, with its figures
                candidates = [c for c in candidates if c.sql != sql]
            if sql != "<insufficient privilege>":
                candidates.append(Candidate(sql, int(calls), float(total_ms)))
    if not hypo:
        install = "" if hypo_available else f"install postgresql-{version // 10000}-hypopg, then "
        report.notices.append(
            f"HypoPG is missing in database {report.database!r}, so proposals are unverified: "
            f"{install}CREATE EXTENSION hypopg;"
        )
    report.statements = len(candidates)

    proposals: dict[tuple, Proposal] = {}
    choices: dict[int, list[tuple]] = {}  # candidate index -> its proposals, best guess first
    tables_cache: dict[tuple[str | None, str], TableInfo | None] = {}
    for number, candidate in enumerate(candidates):
        if ";" in candidate.sql.strip().rstrip(";"):
            report.skipped.append({"sql": candidate.sql, "reason": "several statements"})
            continue
        parsed = parse(candidate.sql)
        aliases = {}
        for alias, written in parsed.tables.items():
            if written not in tables_cache:
                tables_cache[written] = _table_info(db, written)
            if tables_cache[written]:
                aliases[alias] = tables_cache[written]
        found = index_choices(parsed, aliases)
        keys = add_proposals(proposals, candidate, found, aliases)
        if not found:
            report.skipped.append({"sql": candidate.sql, "reason": "no filter or order on a table"})
        elif not keys:
            report.skipped.append({"sql": candidate.sql, "reason": "already served by an index"})
        else:
            choices[number] = keys
        try:
            candidate.before_cost = db.plan(candidate.sql)["Total Cost"] if keys else None
        except DatabaseError as error:
            first_line = (
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            )
            candidate.unverifiable = f"the query cannot be planned generically: {first_line}"

    live = {key: p for key, p in proposals.items() if p.queries}
    if hypo:
        _verify(db, live, min_gain)
        chosen = choose_verified(live, candidates, choices, min_gain)
    else:
        chosen = choose_unverified(live, candidates, choices)
    _write_costs(db, chosen)
    report.proposals = chosen
    served = {id(q) for p in chosen for q in p.queries}
    for number in choices:
        if id(candidates[number]) not in served:
            report.skipped.append(
                {
                    "sql": candidates[number].sql,
                    "reason": f"no proposed index cut its plan cost by {min_gain:.0%} or more",
                }
            )


def _table_info(db: _Session, written: tuple[str | None, str]) -> TableInfo | None:
    schema, name = written
    qualified = f"{quote(schema)}.{quote(name)}" if schema else quote(name)
    rows = db.rows(
        "SELECT c.oid, n.nspname, c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'm')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
        [qualified],
    )
    if not rows:
        return None
    oid, schema, name = rows[0]
    columns = db.rows(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped",
        [oid],
    )
    indexes = db.rows(
        "SELECT ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)"
        "  LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num"
        "  WHERE k.ord <= i.indnkeyatts ORDER BY k.ord)"
        " FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid"
        " JOIN pg_am am ON am.oid = ic.relam"
        " WHERE i.indrelid = %s AND am.amname = 'btree' AND i.indisvalid AND i.indpred IS NULL",
        [oid],
    )
    keys = tuple(tuple(_prefix_until_expression(cols)) for (cols,) in indexes)
    return TableInfo(oid, schema, name, frozenset(c for (c,) in columns), keys)


def _prefix_until_expression(columns: list[str | None]) -> list[str]:
    prefix = []
    for column in columns:
        if column is None:  # an expression column: what follows cannot be used as a plain prefix
            break
        prefix.append(column)
    return prefix


def _verify(db: _Session, proposals: dict[tuple, Proposal], min_gain: float) -> None:
    """Explain, with each hypothetical index, the plannable queries that could use it: those with
    a proposal on the same table and leading column."""
    for proposal in proposals.values():
        on_table = {
            id(q): q
            for p in proposals.values()
            if p.table.oid == proposal.table.oid and p.columns[0] == proposal.columns[0]
            for q in p.queries
        }
        plannable = [q for q in on_table.values() if q.before_cost is not None]
        if not plannable:
            continue
        definition = (
            f"CREATE INDEX ON {proposal.qualified_table} USING btree ({proposal.column_list()})"
        )
        try:
            with transaction.atomic(using=db.using):
                ((indexrelid, index_name, size),) = db.rows(
                    "SELECT indexrelid, indexname, hypopg_relation_size(indexrelid)"
                    " FROM hypopg_create_index(%s)",
                    [definition],
                )
        except DatabaseError:
            continue  # HypoPG cannot model it: the proposal stays out, it was not shown to help
        try:
            proposal.size_bytes = int(size)
            proposal.effects = []
            for query in plannable:
                try:
                    plan = db.plan(query.sql)
                except DatabaseError:
                    continue
                proposal.effects.append(
                    {
                        "query": query,
                        "before_cost": query.before_cost,
                        "after_cost": plan["Total Cost"],
                        "uses_index": _uses_index(plan, index_name),
                    }
                )
        finally:
            db.rows("SELECT hypopg_drop_index(%s)", [indexrelid])


def _write_costs(db: _Session, proposals: list[Proposal]) -> None:
    """What each new index would cost on writes: every insert and non-HOT update adds an entry."""
    if not proposals:
        return
    ((since,),) = db.rows(
        "SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()"
    )
    stats = {
        row[0]: row[1:]
        for row in db.rows(
            "SELECT s.relid, s.n_tup_ins, s.n_tup_upd, s.n_tup_hot_upd, s.n_tup_del,"
            " CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint ELSE s.n_live_tup END"
            " FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
            " WHERE s.relid = ANY(%s::oid[])",
            [sorted({p.table.oid for p in proposals})],
        )
    }
    for proposal in proposals:
        inserts, updates, hot, deletes, rows = stats.get(proposal.table.oid, (0, 0, 0, 0, 0))
        proposal.write_cost = {
            "inserts": inserts,
            "updates": updates,
            "hot_updates": hot,
            "deletes": deletes,
            "writes": inserts + updates + deletes,
            "rows": rows,  # the planner's estimate (pg_class.reltuples)
            "since": since.isoformat() if since else None,
        }
