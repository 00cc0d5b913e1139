"""The index advisor: propose indexes for the costly queries and check them with HypoPG.

Sources are the top statements of this database in ``pg_stat_statements`` (by total execution
time) and any SQL texts a caller passes (the query monitor's fingerprints: Django-style ``%s`` or
``$n`` placeholders). Each statement is read by a small tokenizer (Django quotes identifiers as
``"app_table"."column"``) for, per table it reads, the columns compared by equality (``=``, ``IN``,
``= ANY``, ``IS NULL``), by range (``<``, ``>``, ``<=``, ``>=``, ``BETWEEN``) and the top-level
``ORDER BY``. A proposal is ``tenant_id`` first when the query filters on it by equality, then the
other equality columns, then one range column or the ORDER BY columns (both are tried when both
exist). Proposals already served by an existing btree index (same leading columns) are dropped.

With HypoPG in the database, every proposal is checked in ONE session: the query is prepared with
``plan_cache_mode = force_generic_plan`` (the generic plan does not depend on the parameter values,
so ``EXECUTE q(NULL, ...)`` plans it), explained before and after ``hypopg_create_index``, and kept
only when the plan uses the hypothetical index and its cost falls by ``INDEX_ADVISOR_MIN_GAIN``.

The advisor never changes the database: it runs in one read-only transaction that it rolls back,
hypothetical indexes live in this backend's memory only and are dropped before it returns, and
its prepared statements are deallocated. It never creates an extension; a missing one is reported
with the line that enables it, and the proposals are then marked unverified.

Modules, each using only those listed before it: ``parsing`` (the tokenizer and the per-table
columns of a statement), ``report`` (Candidate, TableInfo, Proposal, Report and their
``as_dict``), ``proposals`` (building, de-duplicating and choosing proposals, checking them
against the existing indexes) and ``session`` (``advise``: the pg_stat_statements source, the
HypoPG/EXPLAIN verification in one session and the write costs).
"""

from metrics.queries.advisor.parsing import parse, to_dollar_params
from metrics.queries.advisor.proposals import index_choices
from metrics.queries.advisor.report import Candidate, Proposal, Report, TableInfo
from metrics.queries.advisor.session import advise

__all__ = [
    "Candidate",
    "Proposal",
    "Report",
    "TableInfo",
    "advise",
    "index_choices",
    "parse",
    "to_dollar_params",
]
