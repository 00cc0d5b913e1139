"""Resolve the request's tenant and run the rest of the request inside its scope.

Order: an API key (``Authorization: Bearer``) decides the tenant (unless its client address has
failed too many key attempts: ``tenants.ratelimits``); otherwise the subdomain of
``TENANT_BASE_DOMAIN``; otherwise an ``X-Tenant`` header, which only a signed-in member of that
tenant or a staff user may use. A key naming a tenant other than the subdomain or header gets 403.

Invariant: the scope is set for the duration of ``get_response`` and reset in ``finally``, under
WSGI and ASGI alike, so no tenant outlives its request. Resolution is cached (``resolution.py``).
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from tenants import exceptions, ratelimits, resolution
from tenants.context import tenant_scope, unscoped
from tenants.http import database_error_response, error_response
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
    host = request.get_host().split(":")[0].lower()
    if not base or not host.endswith(f".{base}"):
        return None
    label = host[: -len(base) - 1]
    # Reserved labels (www, api, admin, ...) are the platform's own hosts, never a tenant's.
    return label if label and "." not in label and label not in RESERVED_SLUGS else None


def _check_status(tenant: Tenant) -> None:
    if tenant.status == Tenant.Status.SUSPENDED:
        raise exceptions.TenantSuspended()
    if tenant.status == Tenant.Status.CLOSED:
        raise exceptions.TenantClosed()


def resolve_request(request: HttpRequest) -> None:
    """Set ``request.tenant``, ``request.api_key`` and ``request.tenant_role``, or raise."""
    request.tenant, request.api_key, request.tenant_role = None, None, None
    named_slug = _subdomain_slug(request) or request.META.get(TENANT_HEADER, "").strip().lower()
    token = _bearer_token(request)

    if token is not None:
        ratelimits.refuse_if_guessing(request)
        found = resolution.resolve_api_key(token)
        if found.error:
            ratelimits.record_failed_attempt(request)
            raise _KEY_ERRORS[found.error]()
        tenant = resolution.get_tenant(found.api_key.tenant_id)
        if tenant is None:  # deleted since the key was cached
            raise exceptions.InvalidApiKey()
        if named_slug and named_slug != tenant.slug:
            raise exceptions.TenantMismatch()
        _check_status(tenant)
        resolution.touch_api_key(found.api_key)
        request.tenant, request.api_key = tenant, found.api_key
        return

    if not named_slug:
        return
    tenant = resolution.get_tenant_by_slug(named_slug)
    if tenant is None:
        raise exceptions.TenantNotFound()
    user = request.user
    if user.is_authenticated:
        role = resolution.get_membership_role(tenant.pk, user.pk)
        if role is None and not user.is_staff:
            raise exceptions.TenantAccessDenied()
        request.tenant_role = role or "staff"
    _check_status(tenant)
    request.tenant = tenant


def _resolution_failure(request: HttpRequest) -> HttpResponse | None:
    """Resolve the request; the error answer when that fails, else ``None``."""
    try:
        resolve_request(request)
    except exceptions.TenantsError as error:
        headers = {"WWW-Authenticate": 'Bearer realm="api"'} if error.status_code == 401 else {}
        if (wait := getattr(error, "wait", None)) is not None:
            headers["Retry-After"] = str(max(wait, 1))
        return error_response(
            error.status_code, error.default_code, str(error.detail), error.details, headers
        )
    except DatabaseError as error:
        if (unavailable := database_error_response(error)) is None:
            raise
        return unavailable
    return None


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
            if failure := _resolution_failure(request):
                return failure
            if request.tenant is None:
                return self.get_response(request)
            with tenant_scope(request.tenant):
                return self.get_response(request)

    async def __acall__(self, request: HttpRequest):
        with unscoped():
            if failure := await sync_to_async(_resolution_failure)(request):
                return failure
            if request.tenant is None:
                return await self.get_response(request)
            with tenant_scope(request.tenant):
                return await self.get_response(request)
