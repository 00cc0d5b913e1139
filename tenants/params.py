"""Query parameters read strictly, one rule for every view: a bad value is a 400 that says what
is allowed, never a value quietly cut to the bounds and never a 500.

Numbers are ASCII digits only (``ASCII_INT``), not ``str.isdigit``: that one accepts superscripts
and other scripts' digits, which ``int()`` then refuses.
"""

from __future__ import annotations

import re

from rest_framework.exceptions import ValidationError

ASCII_INT = re.compile(r"[0-9]{1,18}")


def bounded_int(query_params, name: str, *, default: int, top: int) -> int:
    """``name`` as an integer from 1 to ``top`` (``default`` when absent)."""
    raw = query_params.get(name)
    if raw is None:
        return default
    if ASCII_INT.fullmatch(raw) is None or not 1 <= int(raw) <= top:
        raise ValidationError({name: [f"Must be an integer from 1 to {top}."]})
    return int(raw)


def flag(query_params, name: str) -> bool:
    """``name`` as ``true`` or ``false`` (``false`` when absent)."""
    raw = query_params.get(name, "false")
    if raw not in ("true", "false"):
        raise ValidationError({name: ["true or false."]})
    return raw == "true"
