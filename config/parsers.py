"""The API's JSON parser, with the input limits set on purpose (docs/CONFIGURATION.md).

- Body size: at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes (``API_MAX_BODY_BYTES``). A declared
  ``Content-Length`` over it is refused before the body is read (``config.api.ApiErrorMiddleware``);
  a body without one (chunked) is read up to the limit plus one byte, never further, and refused
  as well. Answer: 413 ``payload_too_large``.
- Nesting: at most ``API_MAX_JSON_DEPTH`` levels of arrays and objects, checked on the raw text
  before ``json.loads`` (whose recursion would otherwise end in ``RecursionError``, a 500).
  Answer: 400 ``malformed_request``.
"""

from __future__ import annotations

import codecs
import re

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.utils import json


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "The request body is larger than this API accepts."

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"The request body is larger than {max_bytes} bytes.")
        self.details = {"max_bytes": max_bytes}


#: A JSON string literal (escapes included); its brackets are text, not nesting.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def nesting_depth_exceeds(text: str, limit: int) -> bool:
    """Whether arrays and objects in JSON ``text`` nest deeper than ``limit`` (strings skipped).

    The scanning is done by the regex engine: a body with no more openers than ``limit`` is
    answered by two counts, any other one by a walk over its brackets only, not over every
    character.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > limit:
            return True
    return False


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser, bounded in size and depth (see the module docstring)."""

    def parse(self, stream, media_type=None, parser_context=None):
        if stream is None:
            return super().parse(stream, media_type, parser_context)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(limit)
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.decode(raw, encoding)
        except (UnicodeDecodeError, LookupError) as error:
            raise exceptions.ParseError(f"The body is not valid {encoding}.") from error
        if nesting_depth_exceeds(text, settings.API_MAX_JSON_DEPTH):
            raise exceptions.ParseError(
                f"JSON nested deeper than {settings.API_MAX_JSON_DEPTH} levels is not accepted."
            )
        try:
            parse_constant = json.strict_constant if self.strict else None
            return json.loads(text, parse_constant=parse_constant)
        except ValueError as error:
            raise exceptions.ParseError(f"JSON parse error - {error}") from error
