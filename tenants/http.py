"""The one error shape of the API, for code that answers outside DRF (middleware, handlers)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from psycopg_pool import PoolTimeout

logger = logging.getLogger(__name__)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status, headers=headers)


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
            503,
            "database_busy",
            "All database connections are busy. Retry shortly.",
            headers={"Retry-After": "1"},
        )
    logger.error("Database unavailable: %s", exc)
    return error_response(
        503,
        "database_unavailable",
        "The database is unavailable. Retry shortly.",
        headers={"Retry-After": "5"},
    )
