"""The fingerprint of a SQL statement: the statement with its literals taken out.

Django sends parameters apart (``%s``), so most of a statement is already its shape; what differs
between two runs of the same query is the length of ``IN`` lists and of multi-row ``VALUES``, the
numbers Django writes inline (``LIMIT 21``, ``OFFSET 40``) and quoted literals in raw SQL. Those
become ``?``, and the id is the first 16 hex digits of the shape's sha1.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

_QUOTED = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(r"(?<![\w\".$])-?\d+(?:\.\d+)?\b")
_PLACEHOLDER = re.compile(r"%s|\$\d+")
_IN_LIST = re.compile(r"\bIN\s*\(\s*\?(?:\s*,\s*\?)*\s*\)", re.IGNORECASE)
_VALUES = re.compile(r"\bVALUES\s*(\(\s*\?(?:\s*,\s*\?)*\s*\))(?:\s*,\s*\(\s*\?(?:\s*,\s*\?)*\s*\))*", re.IGNORECASE)  # fmt: skip
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=4096)
def shape(sql: str) -> str:
    """``sql`` with every literal and placeholder as ``?``, lists collapsed, spaces normalised."""
    text = _QUOTED.sub("?", sql)
    text = _PLACEHOLDER.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _IN_LIST.sub("IN (...)", text)
    text = _VALUES.sub(r"VALUES \1, ...", text)
    return _SPACE.sub(" ", text).strip()


@lru_cache(maxsize=4096)
def fingerprint(sql: str) -> tuple[str, str]:
    """``(id, shape)`` of ``sql`` (cached: a process sees a few hundred distinct statements)."""
    text = shape(sql)
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16], text


def mask_literals(text: str) -> str:
    """A plan line without the values in it (a plan shows the parameters it was made with)."""
    return _NUMBER.sub("?", _QUOTED.sub("'?'", text))
