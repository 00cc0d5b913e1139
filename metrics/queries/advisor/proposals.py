"""Proposals: index column lists per query, de-duplicated, checked against the existing indexes
and chosen (greedily by verified savings with HypoPG, by best guess without it)."""

from __future__ import annotations

from typing import Any

from metrics.queries.advisor.parsing import ParsedQuery
from metrics.queries.advisor.report import Candidate, Proposal, TableInfo

TENANT_COLUMN = "tenant_id"
MAX_COLUMNS = 6


def index_choices(
    parsed: ParsedQuery, alias_tables: dict[str, TableInfo]
) -> dict[int, list[tuple[tuple[str, ...], tuple[bool, ...], int]]]:
    """Per table oid, the index column lists worth trying for this query, best guess first.

    Each is (columns, descending flags, number of equality columns). Unqualified columns are
    given to the only table of the query that has them.
    """
    tables = {t.oid: t for t in alias_tables.values()}

    def owner(qualifier: str | None, column: str) -> TableInfo | None:
        if qualifier is not None:
            table = alias_tables.get(qualifier)
            return table if table and column in table.columns else None
        having = [t for t in tables.values() if column in t.columns]
        return having[0] if len(having) == 1 else None

    usage: dict[int, dict[str, list]] = {
        oid: {"eq": [], "range": [], "order": []} for oid in tables
    }
    for qualifier, column, kind in parsed.filters:
        table = owner(qualifier, column)
        if table and column not in usage[table.oid][kind]:
            usage[table.oid][kind].append(column)
    ordered: int | None = None  # ORDER BY serves an index only while its items are on one table
    for qualifier, column, desc in parsed.order_by:
        table = owner(qualifier, column)
        if not table or ordered not in (None, table.oid):
            break
        ordered = table.oid
        usage[table.oid]["order"].append((column, desc))
    choices = {}
    for oid, use in usage.items():
        eq = use["eq"]
        eq = ([TENANT_COLUMN] if TENANT_COLUMN in eq else []) + [
            c for c in eq if c != TENANT_COLUMN
        ]
        order = [(c, d) for c, d in use["order"] if c not in eq]
        ranges = [(c, False) for c in use["range"] if c not in eq][:1]
        tails = [ranges, order] if ranges and not (order and parsed.has_limit) else [order, ranges]
        if not eq and not parsed.has_limit:
            tails = [ranges]
        options = []
        for tail in [t for t in tails if t] or [[]]:
            if len({d for _, d in tail}) == 1:  # one direction: a btree is read either way
                tail = [(c, False) for c, _ in tail]
            cols = ([(c, False) for c in eq] + tail)[:MAX_COLUMNS]
            option = (
                tuple(c for c, _ in cols),
                tuple(d for _, d in cols),
                min(len(eq), MAX_COLUMNS),
            )
            if cols and option not in options:
                options.append(option)
        if options:
            choices[oid] = options
    return choices


def add_proposals(
    proposals: dict[tuple, Proposal],
    candidate: Candidate,
    found: dict[int, list[tuple[tuple[str, ...], tuple[bool, ...], int]]],
    alias_tables: dict[str, TableInfo],
) -> list[tuple]:
    """Add ``candidate`` to the proposals of its index choices ``found`` that no existing index
    serves, creating each one on first use; return their keys (best guess first)."""
    keys = []
    for oid, options in found.items():
        table = next(t for t in alias_tables.values() if t.oid == oid)
        if any(Proposal(table, *options[0]).covered_by(index) for index in table.indexes):
            continue  # the best guess exists: its alternatives would not beat it
        for columns, descending, equality in options:
            key = (oid, columns, descending)
            proposal = proposals.setdefault(key, Proposal(table, columns, descending, equality))
            if not any(proposal.covered_by(index) for index in table.indexes):
                proposal.queries.append(candidate)
                keys.append(key)
    return keys


def _helps(effect: dict[str, Any], min_gain: float) -> bool:
    return effect["uses_index"] and effect["after_cost"] <= effect["before_cost"] * (1 - min_gain)


def choose_verified(
    proposals: dict[tuple, Proposal],
    candidates: list[Candidate],
    choices: dict[int, list[tuple]],
    min_gain: float,
) -> list[Proposal]:
    """Greedy: take the proposal that saves most on the queries not yet served, until none helps.

    A query's weight is its total time when pg_stat_statements knows it, else 1. Proposals of
    queries that cannot be planned are kept, unverified.
    """
    remaining = {id(q) for q in candidates if q.before_cost is not None}
    pool, chosen = list(proposals.values()), []

    def score(p: Proposal) -> tuple[float, int]:
        saved = sum(
            (1 - e["after_cost"] / e["before_cost"]) * (e["query"].total_ms or 1.0)
            for e in p.effects
            if id(e["query"]) in remaining and e["before_cost"] and _helps(e, min_gain)
        )
        return saved, -len(p.columns)

    while pool:
        best = max(pool, key=score)
        if score(best)[0] <= 0:
            break
        pool.remove(best)
        best.effects = [
            e for e in best.effects if id(e["query"]) in remaining and _helps(e, min_gain)
        ]
        best.queries = [e["query"] for e in best.effects]
        best.verified = True
        remaining -= {id(q) for q in best.queries}
        chosen.append(best)
    chosen.sort(key=lambda p: -(p.before_cost or 0) + (p.after_cost or 0))
    for number, keys in choices.items():
        if candidates[number].unverifiable:
            _keep_unverified(
                chosen, proposals[keys[0]], candidates[number], candidates[number].unverifiable
            )
    return chosen


def choose_unverified(
    proposals: dict[tuple, Proposal], candidates: list[Candidate], choices: dict[int, list[tuple]]
) -> list[Proposal]:
    """Without HypoPG: each query's best-guess proposal, dropping those another one covers."""
    chosen: list[Proposal] = []
    for number, keys in sorted(
        choices.items(), key=lambda item: -(candidates[item[0]].total_ms or 0)
    ):
        candidate = candidates[number]
        reason = "HypoPG is not installed in this database"
        _keep_unverified(chosen, proposals[keys[0]], candidate, reason)
    return chosen


def _keep_unverified(
    chosen: list[Proposal], proposal: Proposal, query: Candidate, reason: str
) -> None:
    for other in chosen:
        if other.table.oid == proposal.table.oid and proposal.covered_by(other.columns):
            if all(q is not query for q in other.queries):
                other.queries.append(query)
                other.effects.append(_unverified_effect(query))
            return
    clone = Proposal(proposal.table, proposal.columns, proposal.descending, proposal.equality)
    clone.queries, clone.effects = [query], [_unverified_effect(query)]
    clone.unverified_reason, clone.size_bytes = reason, None
    chosen.append(clone)


def _unverified_effect(query: Candidate) -> dict[str, Any]:
    return {
        "query": query,
        "before_cost": query.before_cost,
        "after_cost": None,
        "uses_index": None,
    }
