"""DRF permissions for the tenant API: who may read and who may write a tenant's data.

Reads: an API key of the tenant, a member of the tenant, or staff. Writes: a key with the
``write`` scope, an owner or admin of the tenant, or staff. The tenant itself was resolved, and
the caller's right to name it checked, by ``TenantMiddleware``.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from tenants.exceptions import TenantRequired
from tenants.models import ApiKey, Membership

MANAGER_ROLES = {Membership.Role.OWNER, Membership.Role.ADMIN, "staff"}


def caller_can_write(request) -> bool:
    api_key = getattr(request, "api_key", None)
    if api_key is not None:
        return api_key.has_scope(ApiKey.Scope.WRITE)
    return request.tenant_role in MANAGER_ROLES


class IsTenantMember(BasePermission):
    """The caller belongs to the request's tenant; writes need the write scope or a manager role."""

    message = "Writes need an API key with the write scope, or an owner or admin of the tenant."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if getattr(request, "tenant", None) is None:
            raise TenantRequired()
        if request.api_key is None and request.tenant_role is None:
            return False
        return request.method in SAFE_METHODS or caller_can_write(request)


class IsSignedInUser(BasePermission):
    """A signed-in user acting for themselves (accepting an invitation), not an API key."""

    message = "Sign in as the invited user to do this; an API key cannot."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated) and (
            getattr(request, "api_key", None) is None
        )
