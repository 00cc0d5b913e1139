"""Resolve the request's tenant and run the rest of the request inside its scope.

Order: an API key (``Authorization: Bearer``) decides the tenant; otherwise the subdomain of
``TENANT_BASE_DOMAIN``; otherwise an ``X-Tenant`` header, which only a signed-in member of that
tenant or a staff user may use. Without credentials a subdomain or ``X-Tenant`` is ignored, so it
neither breaks pages that need no tenant nor tells apart unknown, existing and suspended tenants. A key naming a tenant other than the subdomain or header gets 403.
A bad key counts against its client address (``tenants.limits.ratelimits``): past the budget it is
answered 429 instead of 401.

Invariant: the scope is set for the duration of ``get_response`` and reset in ``finally``, under
WSGI and ASGI alike, so no tenant outlives its request. Resolution is cached (``resolution.py``):
a warm keyed request costs one Redis round trip and no SQL to get here, and the scope starts with
the tenant's cache generation read in that same round trip.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control

from tenants import exceptions, resolution
from tenants.context import tenant_scope, unscoped
from tenants.http import database_error_response, exception_response
from tenants.keys import parse_key
from tenants.limits import ratelimits
from tenants.models import RESERVED_SLUGS, Tenant

TENANT_HEADER = "HTTP_X_TENANT"
_KEY_ERRORS = {
    "invalid": exceptions.InvalidApiKey,
    "revoked": exceptions.ApiKeyRevoked,
    "expired": exceptions.ApiKeyExpired,
}


def _bearer_token(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def _subdomain_slug(request: HttpRequest) -> str | None:
    base = settings.TENANT_BASE_DOMAIN
    # Most requests (API keys on the API host) name no subdomain: skip validating the host for
    # them. get_host() still validates every host that could name one.
    raw = request.META.get("HTTP_X_FORWARDED_HOST" if settings.USE_X_FORWARDED_HOST else "", "")
    raw = raw or request.META.get("HTTP_HOST", "") or request.META.get("SERVER_NAME", "")
    if not base or f".{base}" not in raw.lower():
        return None
    host = request.get_host().split(":")[0].lower()
    if not host.endswith(f".{base}"):
        return None
    label = host[: -len(base) - 1]
    # Reserved labels (www, api, admin, ...) are the platform's own hosts, never a tenant's.
    return label if label and "." not in label and label not in RESERVED_SLUGS else None


def _check_status(tenant: Tenant) -> None:
    if tenant.status == Tenant.Status.SUSPENDED:
        raise exceptions.TenantSuspended()
    if tenant.status == Tenant.Status.CLOSED:
        raise exceptions.TenantClosed()


def resolve_request(request: HttpRequest) -> resolution.ResolvedTenant | None:
    """Set ``request.tenant``, ``request.api_key`` and ``request.tenant_role``, or raise.

    Returns the resolved tenant with its cache generation (``None`` for a request without one).
    """
    request.tenant, request.api_key, request.tenant_role = None, None, None
    named_slug = _subdomain_slug(request) or request.META.get(TENANT_HEADER, "").strip().lower()
    token = _bearer_token(request)

    if token is not None:
        found = resolution.resolve_api_key(token)
        if found.error:
            parsed = parse_key(token)
            # 429 once the address (or the key's prefix) is past its budget
            ratelimits.record_failed_attempt(request, parsed.prefix if parsed else None)
            raise _KEY_ERRORS[found.error]()
        tenant = found.resolved.tenant
        if named_slug and named_slug != tenant.slug:
            raise exceptions.TenantMismatch()
        _check_status(tenant)
        resolution.touch_api_key(found.api_key)
        request.tenant, request.api_key = tenant, found.api_key
        return found.resolved

    if not named_slug or not request.user.is_authenticated:
        # A hint without credentials names nothing: the answer (401 from the API, the page itself
        # elsewhere) cannot tell an unknown tenant from an existing or a suspended one.
        return None
    resolved = resolution.resolve_slug(named_slug)
    if resolved is None:
        raise exceptions.TenantNotFound()
    tenant = resolved.tenant
    user = request.user
    role = resolution.get_membership_role(tenant.pk, user.pk)
    if role is None and not user.is_staff:
        raise exceptions.TenantAccessDenied()
    request.tenant_role = role or "staff"
    _check_status(tenant)
    request.tenant = tenant
    return resolved


def _resolve(request: HttpRequest) -> tuple[resolution.ResolvedTenant | None, HttpResponse | None]:
    """Resolve the request: the tenant (or ``None``), else the error answer."""
    try:
        return resolve_request(request), None
    except exceptions.TenantsError as error:
        return None, exception_response(error)
    except DatabaseError as error:
        if (unavailable := database_error_response(error)) is None:
            raise
        return None, unavailable


def _no_store(response: HttpResponse) -> HttpResponse:
    """An answer made for a tenant carries its data (or a key's secret): no cache may keep it."""
    if response.has_header("Cache-Control"):
        patch_cache_control(response, no_store=True, private=True)
    else:
        response["Cache-Control"] = "no-store, private"
    return response


class SyncAndAsyncMiddleware:
    """Base of a middleware that runs under WSGI and ASGI alike, without a thread hop.

    A subclass writes its sync body in ``handle`` and its async body in ``__acall__``; Django picks
    the one that matches the chain (``get_response`` is a coroutine function under ASGI).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self.__acall__(request)
        return self.handle(request)

    def handle(self, request: HttpRequest):
        raise NotImplementedError

    async def __acall__(self, request: HttpRequest):
        raise NotImplementedError


class TenantMiddleware(SyncAndAsyncMiddleware):
    """Sets the tenant scope around the view. Works as sync (WSGI) and async (ASGI) middleware."""

    def handle(self, request: HttpRequest):
        with unscoped():
            resolved, failure = _resolve(request)
            if failure is not None:
                return failure
            if resolved is None:
                return self.get_response(request)
            with tenant_scope(resolved.tenant, cache_generation=resolved.cache_generation):
                return _no_store(self.get_response(request))

    async def __acall__(self, request: HttpRequest):
        with unscoped():
            resolved, failure = await sync_to_async(_resolve)(request)
            if failure is not None:
                return failure
            if resolved is None:
                return await self.get_response(request)
            with tenant_scope(resolved.tenant, cache_generation=resolved.cache_generation):
                return _no_store(await self.get_response(request))
