"""``LimitsMiddleware``: the limits' one entry and one exit on the request path.

It sits right after ``TenantMiddleware`` (the tenant scope is open) and before the replica-pinning
middleware. For a request under ``/api/v1/`` with a tenant and a caller the tenant knows (its API
key, or a signed-in member or staff user; an anonymous request that merely names a tenant is
refused by DRF and counts against nothing):

* on the way in (``process_view``, so the view's ``ratelimit_group`` is known), it counts the
  request against the rate windows of its group (``ratelimits.check``) and, if allowed, against
  the tenant's monthly API calls (``api_calls.count_api_call``). A refusal is answered there, in
  the one error shape: 429 ``rate_limited`` with ``Retry-After``, 403 ``quota_exceeded``, or 503
  ``rate_limit_unavailable`` when the counters are down and ``RATELIMIT_FAIL_OPEN`` is off;
* on the way out, it adds the ``RateLimit-*`` and ``Quota-Warning`` headers from the request's
  ``LimitsState`` and writes the API-call count to the database when due. That write runs outside
  the read-your-writes scope on purpose: bookkeeping must not pin the tenant's reads to the primary.

Cost on a warm request: one Redis round trip per rate budget (none for an unlimited tenant); the
API-call count about 0.01 far from its limit (batches) and one within ``API_CALLS_EXACT_MARGIN``
of it; no SQL, except the write-back each ``API_CALLS_FLUSH_EVERY`` calls.
"""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from tenants.exceptions import RateLimited, TenantsError
from tenants.http import exception_response
from tenants.limits import api_calls, ratelimits
from tenants.limits.state import LimitsState, current_limits_state, limits_state
from tenants.middleware import SyncAndAsyncMiddleware

logger = logging.getLogger(__name__)

#: The paths whose views are limited (the tenant API).
LIMITED_PATH_PREFIX = "/api/v1/"


def _declared_group(view_func) -> str | None:
    """``ratelimit_group`` of the view: on its class (Django and DRF views, DRF viewsets) or on
    the function itself."""
    view_class = getattr(view_func, "view_class", None) or getattr(view_func, "cls", None)
    return getattr(view_class or view_func, "ratelimit_group", None)


def _admit(request: HttpRequest, state: LimitsState, view_func) -> None:
    """Count the request; raise the refusal's error. Fills ``state`` as it goes."""
    group = ratelimits.group_for(request.method, _declared_group(view_func))
    state.rate = ratelimits.check(
        request, tenant=request.tenant, api_key=request.api_key, group=group
    )
    if state.rate is not None and state.rate.limited:
        raise RateLimited(wait=state.rate.reset)
    state.api_call = api_calls.count_api_call(request.tenant)


def _settle(state: LimitsState) -> None:
    if state.api_call is None:
        return
    try:
        api_calls.settle(state.api_call)
    except DatabaseError as error:
        # The count is safe in the counter store: the next write-back brings the row up to it.
        tenant_id = state.api_call.tenant.pk
        logger.warning("API-call count of tenant %s not written: %s", tenant_id, error)


def _finish(state: LimitsState, response: HttpResponse) -> None:
    for name, value in state.headers().items():
        response[name] = value


class LimitsMiddleware(SyncAndAsyncMiddleware):
    """Admission before the view, headers and bookkeeping after (see the module docstring)."""

    def handle(self, request: HttpRequest):
        if getattr(request, "tenant", None) is None:
            return self.get_response(request)  # nothing here is limited
        with limits_state() as state:
            response = self.get_response(request)
        _finish(state, response)
        _settle(state)
        return response

    async def __acall__(self, request: HttpRequest):
        if getattr(request, "tenant", None) is None:
            return await self.get_response(request)
        with limits_state() as state:
            response = await self.get_response(request)
        _finish(state, response)
        await sync_to_async(_settle)(state)
        return response

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        tenant = getattr(request, "tenant", None)
        if tenant is None or not request.path.startswith(LIMITED_PATH_PREFIX):
            return None
        if request.api_key is None and request.tenant_role is None:
            # Nobody the tenant knows (an anonymous request naming it): DRF refuses it, and it
            # must not spend the tenant's budget or API calls.
            return None
        state = current_limits_state()
        if state is None:  # __call__ opens it for every request with a tenant
            raise RuntimeError("LimitsMiddleware.process_view ran outside its own __call__")
        try:
            _admit(request, state, view_func)
        except TenantsError as error:
            return exception_response(error)
        return None
