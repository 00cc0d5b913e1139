"""What the advisor reports: the candidate statements, the tables, the proposals and the report."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

#: Django's limit on an index's name (``models.Index``); PostgreSQL's is 63.
NAME_LENGTH = 30


@dataclass
class Candidate:
    """One statement to advise on: ``$n`` placeholders; calls and time when pg_stat_statements knows."""

    sql: str
    calls: int | None = None
    total_ms: float | None = None
    source: str = "pg_stat_statements"
    before_cost: float | None = None
    unverifiable: str = ""


@dataclass(frozen=True)
class TableInfo:
    oid: int
    schema: str
    name: str
    columns: frozenset[str]
    indexes: tuple[tuple[str, ...], ...]  # key columns of valid, non-partial btree indexes


@dataclass
class Proposal:
    table: TableInfo
    columns: tuple[str, ...]
    descending: tuple[bool, ...]
    equality: int  # how many leading columns are equality columns
    queries: list[Candidate] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)  # per helped query
    verified: bool = False
    unverified_reason: str = ""
    size_bytes: int | None = None
    write_cost: dict[str, Any] = field(default_factory=dict)

    @property
    def qualified_table(self) -> str:
        return f"{quote(self.table.schema)}.{quote(self.table.name)}"

    @property
    def name(self) -> str:
        """``<table>_<columns>_adv``, cut and given a hash past ``NAME_LENGTH``: Django's limit on
        a ``models.Index`` name, so a written migration (``--write-migration``) names the index
        as the printed statement does."""
        base = f"{self.table.name}_{'_'.join(self.columns)}"
        if len(base) + len("_adv") <= NAME_LENGTH:
            return f"{base}_adv"
        digest = hashlib.sha1(base.encode(), usedforsecurity=False).hexdigest()[:6]
        return f"{base[: NAME_LENGTH - len(digest) - 5].rstrip('_')}_{digest}_adv"

    def column_list(self) -> str:
        mixed = len(set(self.descending[self.equality :])) > 1
        return ", ".join(
            quote(col) + (" DESC" if mixed and desc else "")
            for col, desc in zip(self.columns, self.descending, strict=True)
        )

    @property
    def statement(self) -> str:
        return f"CREATE INDEX CONCURRENTLY {quote(self.name)} ON {self.qualified_table} ({self.column_list()});"

    @property
    def before_cost(self) -> float | None:
        costs = [e["before_cost"] for e in self.effects if e["before_cost"] is not None]
        return sum(costs) if costs else None

    @property
    def after_cost(self) -> float | None:
        costs = [e["after_cost"] for e in self.effects if e["after_cost"] is not None]
        return sum(costs) if self.verified and costs else None

    @property
    def gain(self) -> float | None:
        before, after = self.before_cost, self.after_cost
        return None if not before or after is None else 1 - after / before

    def covered_by(self, index: tuple[str, ...]) -> bool:
        """An index whose leading columns are these (equality columns in any order) serves them."""
        eq, tail = set(self.columns[: self.equality]), self.columns[self.equality :]
        return (
            len(index) >= len(self.columns)
            and set(index[: self.equality]) == eq
            and index[self.equality : len(self.columns)] == tail
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": f"{self.table.schema}.{self.table.name}",
            "columns": list(self.columns),
            "index_name": self.name,
            "statement": self.statement,
            "verified": self.verified,
            "unverified_reason": self.unverified_reason,
            "before_cost": self.before_cost,
            "after_cost": self.after_cost,
            "gain": self.gain,
            "size_bytes": self.size_bytes,
            "write_cost": self.write_cost,
            "calls": sum(q.calls or 0 for q in self.queries),
            "total_ms": sum(q.total_ms or 0.0 for q in self.queries),
            "queries": [
                {
                    "sql": e["query"].sql,
                    "calls": e["query"].calls,
                    "total_ms": e["query"].total_ms,
                    "source": e["query"].source,
                    "before_cost": e["before_cost"],
                    "after_cost": e["after_cost"],
                    "uses_index": e["uses_index"],
                }
                for e in self.effects
            ],
        }


@dataclass
class Report:
    database: str = ""
    supported: bool = True
    pg_stat_statements: bool = False
    hypopg: bool = False
    notices: list[str] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    statements: int = 0
    min_gain: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "supported": self.supported,
            "extensions": {"pg_stat_statements": self.pg_stat_statements, "hypopg": self.hypopg},
            "notices": self.notices,
            "statements": self.statements,
            "min_gain": self.min_gain,
            "proposals": [p.as_dict() for p in self.proposals],
            "skipped": self.skipped,
        }


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
