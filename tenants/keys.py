"""API key and invitation token formats, generation and hashing.

A key reads ``ils_<prefix>_<secret>``: a 12-hex-digit public prefix (shown in lists, used to find
the row) and a 256-bit random secret. Only SHA-256 of the whole key is stored. A fast hash is the
right tool here: the secret is random, not a password, so there is nothing to brute-force from the
hash, and a slow KDF would add its cost to every API request. Comparison is constant-time.

An invitation token reads ``ilsinv_<secret>`` (256 random bits); it too is stored as SHA-256 only,
and found by that hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PREFIX = "ils_"
_KEY_PATTERN = re.compile(r"^ils_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
INVITATION_TOKEN_PREFIX = "ilsinv_"  # noqa: S105 (a format marker, not a secret)
INVITATION_TOKEN_PATTERN = rf"^{INVITATION_TOKEN_PREFIX}[A-Za-z0-9_-]{{43}}$"
_INVITATION_TOKEN_RE = re.compile(INVITATION_TOKEN_PATTERN)


@dataclass(frozen=True)
class ParsedKey:
    prefix: str
    raw: str


def generate_key() -> tuple[str, str]:
    """A new key and its prefix. The key is shown once and never stored."""
    prefix = secrets.token_hex(6)
    return f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


def parse_key(raw: str) -> ParsedKey | None:
    """The key's parts, or ``None`` when it is not shaped like one of our keys."""
    match = _KEY_PATTERN.match(raw)
    return ParsedKey(prefix=match.group(1), raw=raw) if match else None


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def key_matches(raw: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(raw), stored_hash)


def generate_invitation_token() -> str:
    """A new invitation token. It is shown once and never stored."""
    return f"{INVITATION_TOKEN_PREFIX}{secrets.token_urlsafe(32)}"


def is_invitation_token(raw: str) -> bool:
    return bool(_INVITATION_TOKEN_RE.match(raw))
