"""What the OpenAPI schema says about errors: every operation lists the error answers it can give.

A drf-spectacular postprocessing hook (``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``, its public
extension point) adds the one error shape as the ``Error`` component and, per operation under
``/api/``, the statuses the platform answers there whatever the view does: 400 (malformed input),
401 (no or a bad key), 403 (no permission, a quota), 503 (a dependency down, with ``Retry-After``);
on the tenant API also 429 (a rate window spent, with ``Retry-After``); with a path parameter 404;
with a body 413 (over ``API_MAX_BODY_BYTES``) and 415. Statuses a view documents itself are kept;
an error status it documents with a description only (``OpenApiResponse(description=...)``) gets
the error shape as its content. A body the server needs (a ``oneOf`` whose branches all require
fields, as ``POST /api/v1/jobs/``, or an upload's bytes) is marked required, as the server treats it.
"""

from __future__ import annotations

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "Stable machine code."},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": True},
            },
        }
    },
}
_RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "Seconds to wait before retrying.",
    }
}
_DESCRIPTIONS = {
    "400": "Malformed input (a cursor, a parameter, the body).",
    "401": "No API key, or one that is unknown, revoked or expired.",
    "403": "Not allowed for this caller, or over a quota (code quota_exceeded).",
    "404": "No such object in this tenant.",
    "413": "The body is larger than the API accepts.",
    "415": "The body is not JSON.",
    "429": "A rate window is spent.",
    "503": "A dependency (database, counters) is unavailable for a moment.",
}
_BODY_METHODS = {"post", "put", "patch"}


def _statuses(path: str, method: str) -> list[str]:
    statuses = ["400", "401", "403", "503"]
    if path.startswith("/api/v1/"):
        statuses.append("429")
    if "{" in path:
        statuses.append("404")
    if method in _BODY_METHODS:
        statuses += ["413", "415"]
    return statuses


def _component(schemas: dict, schema: dict) -> dict:
    ref = schema.get("$ref", "")
    return schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else schema


def _body_required(schemas: dict, body: dict) -> bool:
    """Whether a body the server cannot do without is required, as drf-spectacular cannot tell:
    every media type is a ``oneOf`` whose branches all require fields, an object with required
    fields, or raw bytes (an upload)."""

    def needs_content(schema: dict) -> bool:
        schema = _component(schemas, schema)
        if branches := schema.get("oneOf"):
            return all(_component(schemas, branch).get("required") for branch in branches)
        return bool(schema.get("required")) or schema.get("format") == "binary"

    media = body.get("content", {}).values()
    return bool(media) and all(needs_content(m.get("schema", {})) for m in media)


def postprocess_error_responses(result, generator, request, public):
    """Add the ``Error`` component and each operation's error responses (module docstring)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = _ERROR_SCHEMA
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            body = operation.get("requestBody")
            if body and not body.get("required") and _body_required(schemas, body):
                body["required"] = True
            responses = operation.setdefault("responses", {})
            for status, answer in responses.items():
                # an error a view documents by its description alone answers in the one shape
                if status[0] in "45" and "content" not in answer:
                    answer["content"] = reference
            for status in _statuses(path, method):
                answer = {"description": _DESCRIPTIONS[status], "content": reference}
                if status in ("429", "503"):
                    answer["headers"] = _RETRY_AFTER
                responses.setdefault(status, answer)
    return result
