"""API conventions: cursor pagination, the one error shape, and JSON errors for every /api/ path.

Error shape: ``{"error": {"code": "...", "message": "...", "details": {...}}}``. DRF errors go
through ``api_exception_handler``; Django's own 404/500 and exceptions that escape a view under
``/api/`` are turned into the same shape, so an API client never sees an HTML error page.
"""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
    ValidationError,
)
from django.http import Http404
from django.middleware.common import CommonMiddleware
from django.urls import is_valid_path
from django.utils.deprecation import MiddlewareMixin
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import set_rollback

from config.parsers import PayloadTooLarge
from tenants.http import (
    ErrorAnswer,
    database_error_response,
    error_answer,
    error_response,
    exception_answer,
    exception_response,
    internal_error_response,
)
from tenants.params import ASCII_INT, bounded_int

logger = logging.getLogger(__name__)


#: A cursor, as the schema states it (its ``pattern``): the direction (``n``: the page after the
#: position, ``p``: the page before it), the position (an id; none: from the start), and the offset
#: after a dot (rows to skip past the position, DRF's ``o``). 18 digits always fit a bigint.
CURSOR_PATTERN = r"(?P<direction>[np])(?P<position>[0-9]{1,18})?(?:\.(?P<offset>[0-9]{1,4}))?"
_CURSOR = re.compile(CURSOR_PATTERN)


class InvalidCursor(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_cursor"
    default_detail = "The cursor is not one this API gave out. Start again without it."


class ApiCursorPagination(CursorPagination):
    """Cursor pagination on ``-id``: stable under inserts, O(1) per page at any depth.

    The cursor is a short token of the grammar ``CURSOR_PATTERN`` instead of DRF's base64 query
    string, so that the schema can state exactly which cursors the API takes: every string the
    pattern matches is one (a made-up one is only a page that starts at some id of the caller's own
    tenant), anything else is a 400 ``invalid_cursor``, never a database error. DRF's own format
    could not be stated: its decoder drops stray characters, and which strings decode to a valid
    position is not a pattern a schema can carry. ``encode_cursor`` and ``decode_cursor`` are the
    methods DRF's ``CursorPagination`` calls for that; ``Cursor`` and ``replace_query_param`` are
    what its own versions of them use. The grammar assumes an integer ordering field (``-id``).
    """

    ordering = "-id"
    page_size = settings.API_PAGE_SIZE
    page_size_query_param = "limit"
    max_page_size = settings.API_MAX_PAGE_SIZE
    cursor_query_description = (
        "Where the page starts: take it from the `next` or `previous` link of the page before. "
        "A value the pattern does not match is a 400 `invalid_cursor`."
    )

    def get_page_size(self, request):
        # the bounds the schema states: a larger page is refused, not cut short
        return bounded_int(
            request.query_params,
            self.page_size_query_param,
            default=self.page_size,
            top=self.max_page_size,
        )

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
            elif parameter["name"] == self.cursor_query_param:
                pattern = re.sub(r"\?P<\w+>", "?:", CURSOR_PATTERN)  # no named groups in ECMA-262
                parameter["schema"].update(pattern=f"^{pattern}$")
        return parameters

    def encode_cursor(self, cursor):
        token = "p" if cursor.reverse else "n"
        if cursor.position is not None:
            token += str(cursor.position)
        if cursor.offset:
            token += f".{cursor.offset}"
        return replace_query_param(self.base_url, self.cursor_query_param, token)

    def decode_cursor(self, request):
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        match = _CURSOR.fullmatch(encoded)
        if match is None:
            raise InvalidCursor()
        return Cursor(
            offset=min(int(match["offset"] or 0), self.offset_cutoff),
            reverse=match["direction"] == "p",
            position=match["position"],
        )


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
    answer = input_error_answer(exc)
    if answer is not None:
        _rejected(context.get("request"), answer)
    elif isinstance(exc, exceptions.APIException):
        set_rollback()  # as DRF's own handler does: an atomic request must not commit
        answer = exception_answer(exc)
    if answer is not None:
        return answer.mark(Response(answer.body, status=answer.status, headers=answer.headers))
    if unavailable := database_error_response(exc):
        return unavailable
    logger.exception("Unhandled error in API view", exc_info=exc)
    return internal_error_response()


def _is_api(request) -> bool:
    """Under ``/api/`` (also as ``//api/...``: a path's leading slashes never leave the API's shape)."""
    return request.path.lstrip("/").startswith("api/")


class ApiCommonMiddleware(CommonMiddleware):
    """Django's ``CommonMiddleware``, except that an API path missing its trailing slash is not
    redirected: a 301 would make clients drop a POST's body and resend it as a GET. It answers the
    API's JSON 404, which names the path with the slash (``handler404``)."""

    def should_redirect_with_slash(self, request):
        return False if _is_api(request) else super().should_redirect_with_slash(request)


def _rejected(request, answer: ErrorAnswer) -> ErrorAnswer:
    """Log a refused input in one line (never a traceback: the client's error, not ours)."""
    where = f"{request.method} {request.path[:200]}" if request is not None else "a request"
    logger.warning("Rejected %s: %s", where, answer.code)
    return answer


def input_error_answer(exc: BaseException) -> ErrorAnswer | None:
    """The answer to input that Django or the JSON parser could not take (its size, its number of
    fields, its nesting), or ``None`` when ``exc`` is not one."""
    if isinstance(exc, RequestDataTooBig):
        return exception_answer(PayloadTooLarge(settings.DATA_UPLOAD_MAX_MEMORY_SIZE))
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return error_answer(
            400,
            "too_many_parameters",
            "The request has more parameters or fields than this API accepts.",
            {"max": settings.DATA_UPLOAD_MAX_NUMBER_FIELDS},
        )
    if isinstance(exc, RecursionError):
        return error_answer(400, "malformed_request", "The request body is nested too deeply.")
    if isinstance(exc, SuspiciousOperation):
        return error_answer(400, "bad_request", "The request was rejected.")
    return None


#: Where bodies are files (storage's upload, streamed to disk and held to the tenant's limits by its
#: upload handlers): their ceiling is FILES_MAX_UPLOAD_BYTES, not the JSON body limit.
UPLOAD_PATHS = frozenset({"/api/v1/files/"})


class ApiErrorMiddleware(MiddlewareMixin):
    """The first line of the API's input limits, and the last of its error shape.

    Before anything reads the request (sessions, CSRF, DRF): a declared body over
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (``FILES_MAX_UPLOAD_BYTES`` for an upload) is a 413 without
    reading it, a malformed ``Content-Length`` a
    400, and more query parameters than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` a 400 (each logged in one
    line). After: any exception escaping a view under /api/ becomes a JSON answer, even with DEBUG on.
    """

    def process_request(self, request):
        if not _is_api(request):
            return None
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not ASCII_INT.fullmatch(length):
            answer = error_answer(400, "bad_request", "The Content-Length header is malformed.")
            return _rejected(request, answer).response()
        limit = (
            settings.FILES_MAX_UPLOAD_BYTES
            if request.method == "POST" and request.path in UPLOAD_PATHS
            else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        )
        if int(length) > limit:
            answer = exception_answer(PayloadTooLarge(limit))
            return _rejected(request, answer).response()
        query = request.META.get("QUERY_STRING", "")
        if query and query.count("&") + query.count(";") >= settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:
            return _rejected(request, input_error_answer(TooManyFieldsSent())).response()
        return None

    def process_exception(self, request, exception):
        if not _is_api(request) or isinstance(exception, Http404 | PermissionDenied):
            return None
        if answer := input_error_answer(exception):
            return _rejected(request, answer).response()
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
        details = {}
        with_slash = f"{request.path_info}/"
        if not request.path_info.endswith("/") and is_valid_path(with_slash):
            details["did_you_mean"] = with_slash
        return error_response(
            status.HTTP_404_NOT_FOUND, "not_found", "No such endpoint or object.", details
        )
    return defaults.page_not_found(request, exception)


def handler500(request):
    if _is_api(request):
        return internal_error_response()
    return defaults.server_error(request)
