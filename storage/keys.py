"""Object keys. The platform makes every key; a client's file name is only its sanitised last part."""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import datetime

#: Every tenant file's key starts here (and then ``<tenant id>/``).
TENANTS_PREFIX = "tenants/"
#: The longest sanitised name kept in a key (the whole key stays well under the column's 500).
MAX_NAME_CHARS = 120


def sanitise_name(name: str) -> str:
    """A safe last part for a key: no folders, ASCII letters, digits, ``._-`` only, no leading dot
    or dash, at most ``MAX_NAME_CHARS``; ``file`` when nothing is left."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip(".-")
    if len(base) > MAX_NAME_CHARS:  # keep the extension when cutting
        stem, dot, extension = base.rpartition(".")
        keep = extension[:16] if dot else ""
        base = (stem if dot else base)[: MAX_NAME_CHARS - len(keep) - 1].rstrip(".-")
        base = f"{base}.{keep}" if keep else base
    return base or "file"


def file_key(tenant_id: int, name: str, now: datetime) -> str:
    """``tenants/<tenant id>/<yyyy>/<mm>/<random>/<sanitised name>``: unguessable and unique."""
    random = secrets.token_urlsafe(12)
    return f"{tenant_prefix(tenant_id)}{now:%Y}/{now:%m}/{random}/{sanitise_name(name)}"


def tenant_prefix(tenant_id: int) -> str:
    return f"{TENANTS_PREFIX}{tenant_id}/"
