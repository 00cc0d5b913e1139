"""The one error builder: every error answer of the platform is made here.

Shape: ``{"error": {"code": "...", "message": "...", "details": {...}}}``, with the status, a
``Retry-After`` of whole seconds (rounded up, at least 1) for errors that carry a ``wait``, and
``WWW-Authenticate`` on every 401. The DRF exception handler (``config.api``), the middleware, the
plain views and the breaker views all answer through ``error_response`` or ``exception_response``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.http.response import HttpResponseBase
from psycopg_pool import PoolTimeout
from rest_framework import exceptions

logger = logging.getLogger(__name__)

#: The challenge of the API's bearer keys (``Authorization: Bearer <key>``).
WWW_AUTHENTICATE = 'Bearer realm="api"'

#: Codes of DRF's own errors; our errors carry their code as ``default_code``.
_CODE_BY_TYPE = {
    exceptions.ParseError: "malformed_request",
    exceptions.ValidationError: "invalid",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


@dataclass(frozen=True)
class ErrorAnswer:
    """An error answer before it becomes a response: a Django one, or DRF's in its handler.

    Either response carries the code as ``response.error_code`` (``mark``), so that what observes
    answers (the metrics middleware) reads it without parsing the body it was just made from."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> str:
        return self.body["error"]["code"]

    def mark(self, response: HttpResponseBase) -> HttpResponseBase:
        response.error_code = self.code
        return response

    def response(self) -> JsonResponse:
        return self.mark(JsonResponse(self.body, status=self.status, headers=self.headers))


def error_answer(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    wait: float | None = None,
    headers: dict[str, str] | None = None,
) -> ErrorAnswer:
    """The error answer. ``wait``: seconds until a retry can succeed (sent as ``Retry-After``)."""
    headers = dict(headers or {})
    if wait is not None:
        headers["Retry-After"] = str(max(math.ceil(wait), 1))
    if status == 401:
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    return ErrorAnswer(status, error_body(code, message, details), headers)


def error_response(*args: Any, **kwargs: Any) -> JsonResponse:
    """``error_answer`` (same arguments) as a Django response (middleware, plain views)."""
    return error_answer(*args, **kwargs).response()


def _error_code(exc: exceptions.APIException) -> str:
    for error_type, code in _CODE_BY_TYPE.items():
        if type(exc) is error_type:
            return code
    return getattr(exc, "default_code", "error")


def exception_answer(exc: exceptions.APIException) -> ErrorAnswer:
    """The answer to an ``APIException``: ours (``details`` and ``wait`` when they carry them) or
    DRF's (validation errors list their fields in ``details``)."""
    if isinstance(exc, exceptions.ValidationError):
        fields = isinstance(exc.detail, dict)
        details = exc.detail if fields else {"non_field_errors": exc.detail}
        message = "The request has invalid fields." if fields else str(exc.detail[0])
    else:
        details = getattr(exc, "details", None) or {}
        message = str(exc.detail)
    headers = {}
    if auth_header := getattr(exc, "auth_header", None):  # set by DRF's APIView for 401s
        headers["WWW-Authenticate"] = auth_header
    return error_answer(
        exc.status_code,
        _error_code(exc),
        message,
        details,
        wait=getattr(exc, "wait", None),
        headers=headers,
    )


def exception_response(exc: exceptions.APIException) -> JsonResponse:
    """``exception_answer`` as a Django response (middleware, plain views)."""
    return exception_answer(exc).response()


def internal_error_response() -> JsonResponse:
    """The 500 of an unexpected error (the caller logs it)."""
    return error_response(
        500, "internal_error", "An unexpected error occurred. It has been logged."
    )


def database_error_response(exc: BaseException) -> JsonResponse | None:
    """503 for a database that cannot serve right now (down, or every pooled connection busy).

    Such errors are the platform's, not the caller's, and waiting helps: the answer says how long.
    ``None`` when ``exc`` is not a database availability error.
    """
    if not isinstance(exc, OperationalError | InterfaceError):
        return None
    if isinstance(exc.__cause__, PoolTimeout):
        logger.warning("Database pool exhausted: %s", exc)
        return error_response(
            503, "database_busy", "All database connections are busy. Retry shortly.", wait=1
        )
    logger.error("Database unavailable: %s", exc)
    return error_response(
        503, "database_unavailable", "The database is unavailable. Retry shortly.", wait=5
    )
