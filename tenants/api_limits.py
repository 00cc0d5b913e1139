"""Where the tenant API's limits meet the request: a DRF throttle and one middleware.

``TenantRateThrottle`` is the only ``DEFAULT_THROTTLE_CLASSES`` entry, so every DRF view under
``/api/v1/`` is limited without a decorator: it counts the request against the tenant's rate limit
(``tenants.ratelimits``), then, if allowed, against its monthly API calls (``tenants.api_calls``).
A view changes its group with ``ratelimit_group = "uploads"``.

``ApiLimitsMiddleware`` sits between ``TenantMiddleware`` and the replica-pinning middleware. It
adds the ``RateLimit-*`` headers (and the exact ``Retry-After`` of a 429) the throttle computed,
the ``Quota-Warning`` header of every quota the request left at 80% or more, and after the response
writes the API-call count to the database when due. That write runs outside the read-your-writes
scope on purpose: bookkeeping must not pin the tenant's reads to the primary.
"""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from rest_framework.throttling import BaseThrottle

from tenants import api_calls, ratelimits
from tenants.middleware import SyncAndAsyncMiddleware
from tenants.quotas import QuotaWarning, collect_quota_warnings

logger = logging.getLogger(__name__)

#: Where the throttle leaves its numbers for the middleware.
RATE_STATE_ATTR = "tenant_ratelimit"
API_CALL_ATTR = "tenant_api_call"


class TenantRateThrottle(BaseThrottle):
    """DRF throttle: the tenant's per-minute budget for the view's group, then its monthly calls."""

    state: ratelimits.RateLimitState | None = None

    def allow_request(self, request, view) -> bool:
        django_request = request._request
        if not ratelimits.applies_to(django_request):
            return True
        self.state = ratelimits.check(django_request, getattr(view, "ratelimit_group", None))
        if self.state is not None:
            setattr(django_request, RATE_STATE_ATTR, self.state)
            if self.state.limited:
                return False
        count = api_calls.count_api_call(django_request.tenant)
        setattr(django_request, API_CALL_ATTR, count)
        return True

    def wait(self) -> float | None:
        return float(self.state.reset) if self.state is not None else None


def _add_headers(request: HttpRequest, response: HttpResponse, warnings: list[QuotaWarning]):
    state: ratelimits.RateLimitState | None = getattr(request, RATE_STATE_ATTR, None)
    if state is not None:
        response["RateLimit-Limit"] = str(state.limit)
        response["RateLimit-Remaining"] = str(state.remaining)
        response["RateLimit-Reset"] = str(state.reset)
        if state.limited and response.status_code == 429:
            response["Retry-After"] = str(state.reset)
    if warnings:
        response["Quota-Warning"] = ", ".join(warning.header_value() for warning in warnings)


def _settle_api_call(request: HttpRequest) -> None:
    count: api_calls.ApiCallCount | None = getattr(request, API_CALL_ATTR, None)
    if count is None:
        return
    try:
        api_calls.settle(count)
    except (
        DatabaseError
    ) as error:  # the count is safe in the counter store: the next flush writes it
        logger.warning("API-call count of tenant %s not written: %s", count.tenant.pk, error)


class ApiLimitsMiddleware(SyncAndAsyncMiddleware):
    """RateLimit and Quota-Warning headers, then the API-call bookkeeping (see module docstring)."""

    def handle(self, request: HttpRequest):
        with collect_quota_warnings() as warnings:
            response = self.get_response(request)
        _add_headers(request, response, list(warnings.values()))
        _settle_api_call(request)
        return response

    async def __acall__(self, request: HttpRequest):
        with collect_quota_warnings() as warnings:
            response = await self.get_response(request)
        _add_headers(request, response, list(warnings.values()))
        await sync_to_async(_settle_api_call)(request)
        return response
