"""Errors of the tenants app.

Every error that can reach an API client subclasses ``TenantsError``, a DRF ``APIException``
carrying a stable machine ``code``, an HTTP status and optional ``details``; the project's exception
handler (``config/api.py``) turns any such error into the one error shape.
"""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException


class TenantsError(APIException):
    """Root error of the tenants app."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "tenants_error"
    default_detail = "The request could not be served."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None):
        super().__init__(detail=message or self.default_detail, code=self.default_code)
        self.details = details or {}


class TenantScopeMissing(TenantsError, RuntimeError):
    """A tenant-scoped query or write ran outside any tenant scope. Always a programming error."""

    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    default_code = "tenant_scope_missing"
    default_detail = (
        "A tenant-scoped model was used outside a tenant scope. Wrap the code in "
        "tenant_scope(tenant), or use the model's all_tenants manager in ops code."
    )


class CrossTenantReference(TenantsError, ValueError):
    """A row would point at, or be written under, another tenant's row."""

    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    default_code = "cross_tenant_reference"
    default_detail = "A tenant-scoped row cannot reference another tenant's data."


class InvalidApiKey(TenantsError):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_code = "invalid_api_key"
    default_detail = "The API key is malformed or unknown."


class ApiKeyRevoked(InvalidApiKey):
    default_code = "api_key_revoked"
    default_detail = "The API key has been revoked."


class ApiKeyExpired(InvalidApiKey):
    default_code = "api_key_expired"
    default_detail = "The API key has expired."


class TenantNotFound(TenantsError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "tenant_not_found"
    default_detail = "No tenant has that slug."


class TenantRequired(TenantsError):
    default_code = "tenant_required"
    default_detail = (
        "Name the tenant: use an API key, the tenant's subdomain or the X-Tenant header."
    )


class TenantAccessDenied(TenantsError):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "tenant_access_denied"
    default_detail = "You are not a member of this tenant."


class TenantMismatch(TenantsError):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "tenant_mismatch"
    default_detail = "The API key belongs to another tenant than the one named by the request."


class TenantSuspended(TenantsError):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "tenant_suspended"
    default_detail = "This tenant is suspended. Contact support to reactivate it."


class TenantClosed(TenantsError):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "tenant_closed"
    default_detail = "This tenant is closed."


class QuotaExceeded(TenantsError):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "quota_exceeded"
    default_detail = "The tenant's plan does not allow more of this resource."


class FileTooLarge(QuotaExceeded):
    """A single file above the plan's ``max_file_bytes``: 413, still code ``quota_exceeded``."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The file is larger than the tenant's plan allows."


class LastOwner(TenantsError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "last_owner"
    default_detail = "A tenant must keep at least one owner."


class AlreadyMember(TenantsError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "already_member"
    default_detail = "That user is already a member of this tenant."


class InvitationNotFound(TenantsError):
    """Unknown, revoked, expired, accepted or addressed to another email: one answer for all, so
    a token says nothing to anyone but the user it was meant for."""

    status_code = status.HTTP_404_NOT_FOUND
    default_code = "invitation_not_found"
    default_detail = (
        "No open invitation matches this token for the signed-in account. Ask the tenant to "
        "invite this account's email again."
    )


class InvitationNotOpen(TenantsError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "invitation_not_open"
    default_detail = "This invitation was already accepted or revoked."


class TooManyOpenInvitations(TenantsError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "too_many_open_invitations"
    default_detail = (
        "The tenant has as many open invitations as it may. Revoke some, or wait for them to "
        "be accepted or to expire."
    )


class RetryLater(TenantsError):
    """An error the caller should retry after ``wait`` seconds (sent as ``Retry-After``)."""

    default_wait = 1

    def __init__(self, message: str | None = None, *, wait: int | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.wait = wait if wait is not None else self.default_wait


class RateLimited(RetryLater):
    """The request's rate window is spent (``tenants.limits.ratelimits``)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "rate_limited"
    default_detail = "Too many requests in this window. Retry after the time in Retry-After."


class TooManyFailedAttempts(RetryLater):
    """Too many failed API-key attempts from the client's address in the current minute."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_failed_attempts"
    default_detail = "Too many failed API-key attempts from this address. Retry later."


class RateLimitUnavailable(RetryLater):
    """The rate-limit counters are unreachable and ``RATELIMIT_FAIL_OPEN`` is off."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "rate_limit_unavailable"
    default_detail = "Rate limits cannot be checked right now. Retry shortly."
    default_wait = 5
