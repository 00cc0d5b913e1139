"""API conventions: cursor pagination, the one error shape, and JSON errors for every /api/ path.

Error shape: ``{"error": {"code": "...", "message": "...", "details": {...}}}``. DRF errors go
through ``api_exception_handler``; Django's own 404/500 and exceptions that escape a view under
``/api/`` are turned into the same shape, so an API client never sees an HTML error page.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.utils.deprecation import MiddlewareMixin
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import set_rollback

from tenants.http import (
    database_error_response,
    error_response,
    exception_answer,
    exception_response,
    internal_error_response,
)

logger = logging.getLogger(__name__)


class ApiCursorPagination(CursorPagination):
    """Cursor pagination on ``-id``: stable under inserts, O(1) per page at any depth."""

    ordering = "-id"
    page_size = settings.API_PAGE_SIZE
    page_size_query_param = "limit"
    max_page_size = settings.API_MAX_PAGE_SIZE

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is not None and (not raw.isdigit() or int(raw) < 1):
            raise exceptions.ValidationError(
                {"limit": [f"Must be an integer from 1 to {self.max_page_size}."]}
            )
        return super().get_page_size(request)


def api_exception_handler(exc, context):
    """Render every error in the one shape (``tenants.http``); unexpected errors become a logged
    500 JSON answer."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, ValidationError):
        exc = exceptions.ValidationError(
            detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    if isinstance(exc, exceptions.APIException):
        set_rollback()  # as DRF's own handler does: an atomic request must not commit
        answer = exception_answer(exc)
        return Response(answer.body, status=answer.status, headers=answer.headers)
    if unavailable := database_error_response(exc):
        return unavailable
    logger.exception("Unhandled error in API view", exc_info=exc)
    return internal_error_response()


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


class ApiErrorMiddleware(MiddlewareMixin):
    """Turns any exception escaping a view under /api/ into a 500 JSON answer, even with DEBUG on."""

    def process_exception(self, request, exception):
        if not _is_api(request) or isinstance(exception, Http404 | PermissionDenied):
            return None
        if unavailable := database_error_response(exception):
            return unavailable
        if isinstance(exception, exceptions.APIException):  # an app error raised in a plain view
            return exception_response(exception)
        logger.exception("Unhandled error under /api/", exc_info=exception)
        return internal_error_response()


def handler400(request, exception=None):
    """Django's own 400s (a disallowed Host header, a suspicious request) under /api/ are JSON too."""
    if _is_api(request):
        return error_response(
            status.HTTP_400_BAD_REQUEST, "bad_request", "The request was rejected."
        )
    return defaults.bad_request(request, exception)


def handler403(request, exception=None):
    if _is_api(request):
        return error_response(status.HTTP_403_FORBIDDEN, "permission_denied", "Access denied.")
    return defaults.permission_denied(request, exception)


def handler404(request, exception=None):
    if _is_api(request):
        return error_response(status.HTTP_404_NOT_FOUND, "not_found", "No such endpoint or object.")
    return defaults.page_not_found(request, exception)


def handler500(request):
    if _is_api(request):
        return internal_error_response()
    return defaults.server_error(request)
