"""What a file is, from its first bytes: never from the client's name or claimed content type.

``filetype`` (pure Python, magic numbers) names binary formats; markup that a browser would run
(HTML, SVG, XML) is recognised here so that it can be refused or only ever served as an
attachment; other valid UTF-8 without NUL bytes is ``text/plain``; the rest
``application/octet-stream``.
"""

from __future__ import annotations

import re

import filetype

#: How many leading bytes are read to tell (filetype needs at most 8 KiB).
HEAD_BYTES = 8192

_MARKUP = [
    (re.compile(rb"^\s*<\?xml[^>]*>\s*(<!--.*?-->\s*)*<svg", re.I | re.S), "image/svg+xml"),
    (re.compile(rb"^\s*<svg[\s>]", re.I), "image/svg+xml"),
    (re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body|script|iframe)[\s>]", re.I | re.S), "text/html"),
    (re.compile(rb"^\s*<\?xml", re.I), "application/xml"),
]  # fmt: skip


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start >= len(head) - 3  # a character cut at the end of the head
    return True


def detect_type(head: bytes) -> str:
    """The MIME type of a file whose first ``HEAD_BYTES`` bytes are ``head``."""
    stripped = head.lstrip(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
    for pattern, mime in _MARKUP:
        if pattern.match(stripped):
            return mime
    kind = filetype.guess(head)
    if kind is not None:
        return kind.mime
    if head and _is_text(stripped):
        return "text/plain"
    return "application/octet-stream"
