"""Reading SQL: the tokenizer, the per-table filter and ORDER BY columns, ``$n`` placeholders."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""(?P<skip>\s+|--[^\n]*|/\*.*?\*/)
      | (?P<qident>"(?:[^"]|"")*")
      | (?P<string>[EeNnBbXx]?'(?:[^']|'')*')
      | (?P<param>\$\d+)
      | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)
      | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
      | (?P<op><=|>=|<>|!=|::|\|\||\S)""",
    re.S | re.X,
)
_KEYWORDS = frozenset(  # words that are never a bare column or alias here
    """all and any array as asc between by case cast cross current_date current_time
    current_timestamp current_user delete desc distinct else end except exists false fetch first
    for from full group having ilike in inner intersect interval into is join last lateral left
    like limit natural not null nulls offset on only or order outer returning right select set
    similar some table then true union update using values when where window with""".split()  # noqa: SIM905
)
_CLAUSES = {
    "select": "select", "from": "from", "where": "where", "on": "where", "group": "other",
    "having": "other", "order": "order", "limit": "other", "offset": "other", "fetch": "other",
    "returning": "other", "window": "other", "union": "other", "intersect": "other",
    "except": "other", "set": "set", "using": "from", "for": "other",
}  # fmt: skip
_COMPARE = {"=": "eq", "<": "range", ">": "range", "<=": "range", ">=": "range"}
_ARITHMETIC = {"+", "-", "*", "/", "%", "||", "::", "."}


@dataclass(frozen=True)
class Token:
    kind: str  # name, word (keyword), string, param, number, op
    value: str


def tokenize(sql: str) -> list[Token]:
    tokens = []
    for match in _TOKEN.finditer(sql):
        kind, text = match.lastgroup, match.group()
        if kind == "skip":
            continue
        if kind == "qident":
            tokens.append(Token("name", text[1:-1].replace('""', '"')))
        elif kind == "word":
            low = text.lower()
            tokens.append(Token("word" if low in _KEYWORDS else "name", low))
        else:
            tokens.append(Token(kind, text))
    return tokens


@dataclass
class ParsedQuery:
    tables: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # alias -> table
    filters: list[tuple[str | None, str, str]] = field(default_factory=list)  # (alias, col, kind)
    order_by: list[tuple[str | None, str, bool]] = field(default_factory=list)  # (alias, col, desc)
    has_limit: bool = False


def _word(tokens: list[Token], i: int, *values: str) -> bool:
    return 0 <= i < len(tokens) and tokens[i].kind == "word" and tokens[i].value in values


def _op(tokens: list[Token], i: int, *values: str) -> bool:
    return 0 <= i < len(tokens) and tokens[i].kind == "op" and tokens[i].value in values


def _column_ref(tokens: list[Token], i: int) -> tuple[str | None, str, int] | None:
    """``[schema.][table.]column`` at ``i``: (qualifier, column, index after it), else None."""
    names = []
    while i < len(tokens) and tokens[i].kind == "name":
        names.append(tokens[i].value)
        i += 1
        if not _op(tokens, i, ".") or len(names) == 3:
            break
        i += 1
    if not names or len(names) > 3 or _op(tokens, i, "(", ".") or _op(tokens, i - 1, "."):
        return None
    return (names[-2] if len(names) > 1 else None), names[-1], i


def _table_ref(tokens: list[Token], i: int, query: ParsedQuery) -> int:
    """Record the table named at ``i`` (``[schema.]table [AS] [alias]``); return the next index."""
    while _word(tokens, i, "only", "lateral"):
        i += 1
    if i >= len(tokens) or tokens[i].kind != "name":
        return i
    schema, name, i = None, tokens[i].value, i + 1
    if _op(tokens, i, ".") and i + 1 < len(tokens) and tokens[i + 1].kind == "name":
        schema, name, i = name, tokens[i + 1].value, i + 2
    if _op(tokens, i, "("):  # a function in FROM, e.g. generate_series(...)
        return i
    alias = name
    if _word(tokens, i, "as"):
        i += 1
    if i < len(tokens) and tokens[i].kind == "name":
        alias, i = tokens[i].value, i + 1
    query.tables[alias] = (schema, name)
    query.tables.setdefault(name, (schema, name))
    return i


def _is_value(tokens: list[Token], i: int) -> bool:
    """A comparison operand that is not a column (a parameter, literal, expression, subquery)."""
    if i >= len(tokens):
        return False
    if tokens[i].kind == "name":
        return _column_ref(tokens, i) is None  # a function call such as now()
    return not _op(tokens, i, ")", ",")


def parse(sql: str) -> ParsedQuery:
    """The tables a statement reads and the columns it filters and orders them by.

    Filters inside a group joined by OR are dropped: no single index serves a disjunction.
    Column-to-column comparisons (joins) are ignored.
    """
    tokens, query = tokenize(sql), ParsedQuery()
    depth, clause, group_start, saw_or = 0, {0: None}, {0: 0}, {0: False}

    def close_group(level: int) -> None:
        if saw_or[level]:
            del query.filters[group_start[level] :]
        group_start[level], saw_or[level] = len(query.filters), False

    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if _op(tokens, i, "("):
            depth += 1
            inherited = None if clause[depth - 1] == "from" else clause[depth - 1]
            clause[depth], group_start[depth] = inherited, len(query.filters)
            saw_or[depth] = _word(tokens, i - 1, "not")  # NOT (...) serves no index either
        elif _op(tokens, i, ")") and depth:
            close_group(depth)
            depth -= 1
        elif tok.kind == "word" and tok.value in _CLAUSES:
            close_group(depth)
            clause[depth] = _CLAUSES[tok.value]
            if tok.value in ("from", "using"):
                i = _table_ref(tokens, i + 1, query)
                continue
            if tok.value == "order" and depth == 0:
                i = _order_by(tokens, i + 2 if _word(tokens, i + 1, "by") else i + 1, query)
                continue
            query.has_limit |= depth == 0 and tok.value in ("limit", "fetch")
        elif (_word(tokens, i, "join", "update") and not _word(tokens, i - 1, "for")) or (
            _op(tokens, i, ",") and clause[depth] == "from"
        ):
            i = _table_ref(tokens, i + 1, query)
            continue
        elif tok.kind == "word" and tok.value == "or":
            saw_or[depth] = True
        elif (
            clause[depth] == "where"
            and tok.kind == "name"
            and not _op(tokens, i - 1, *_ARITHMETIC, "not")
        ):
            ref = _column_ref(tokens, i)
            if ref:
                qualifier, column, j = ref
                kind = _filter_kind(tokens, j)
                if kind:
                    query.filters.append((qualifier, column, kind))
                i = j
                continue
        elif (
            clause[depth] == "where"
            and tok.kind in ("param", "number", "string")
            and _op(tokens, i + 1, *_COMPARE)
        ):  # reversed comparison: value <op> column
            ref = _column_ref(tokens, i + 2)
            if ref and not _op(tokens, ref[2], *_ARITHMETIC):
                query.filters.append((ref[0], ref[1], _COMPARE[tokens[i + 1].value]))
                i = ref[2]
                continue
        i += 1
    close_group(0)
    return query


def _filter_kind(tokens: list[Token], j: int) -> str | None:
    if j < len(tokens) and tokens[j].kind == "op" and tokens[j].value in _COMPARE:
        if _word(tokens, j + 1, "any") and _op(tokens, j + 2, "("):
            return "eq" if tokens[j].value == "=" else None
        return _COMPARE[tokens[j].value] if _is_value(tokens, j + 1) else None
    if _word(tokens, j, "in") and _op(tokens, j + 1, "(") and not _word(tokens, j + 2, "select"):
        return "eq"
    if _word(tokens, j, "between"):
        return "range"
    if _word(tokens, j, "is") and _word(tokens, j + 1, "null"):
        return "eq"
    return None


def _order_by(tokens: list[Token], i: int, query: ParsedQuery) -> int:
    """Top-level ORDER BY items while they are plain columns."""
    while True:
        ref = _column_ref(tokens, i)
        if not ref:
            return i
        qualifier, column, i = ref
        desc = _word(tokens, i, "desc")
        i += 1 if _word(tokens, i, "asc", "desc") else 0
        if _word(tokens, i, "nulls"):
            i += 2
        query.order_by.append((qualifier, column, desc))
        if not _op(tokens, i, ","):
            return i
        i += 1


_QUOTED_OR_MARK = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\bIN\s*\(\s*\.\.\.\s*\)|\?", re.I)


def to_dollar_params(sql: str) -> str:
    """Placeholders to ``$n``: Django's ``%s`` / ``%(name)s`` (and ``%%`` to ``%``), or the query
    monitor's shapes (``?`` for each literal, ``IN (...)`` for a list, metrics.queries.fingerprint).

    A text with neither is returned unchanged (already ``$n`` style, as pg_stat_statements has it).
    """
    if not re.search(r"%s|%\(\w+\)s", sql):
        return _number_question_marks(sql)
    numbers: dict[str, int] = {}

    def replace(match: re.Match[str]) -> str:
        if match.group() == "%%":
            return "%"
        key = match.group(1) or f"#{len(numbers)}"
        return f"${numbers.setdefault(key, len(numbers) + 1)}"

    return re.sub(r"%%|%(?:\((\w+)\))?s", replace, sql)


def _number_question_marks(sql: str) -> str:
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        text = match.group()
        if text[0] in "'\"":
            return text
        count += 1
        return f"${count}" if text == "?" else f"IN (${count})"

    return _QUOTED_OR_MARK.sub(replace, sql)
