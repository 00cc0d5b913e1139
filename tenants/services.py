"""Writes of the tenants app. Keyword-only, typed, atomic.

Quota invariant: adding a member or an API key locks the tenant row (``SELECT ... FOR UPDATE``)
before counting, so concurrent additions are serialised and a tenant can never pass its limit.
Counted resources (storage, jobs, API calls) use ``tenants.limits.quotas.quota_reserve`` instead.
The API and the admin both call these functions: the row lock, the quotas and the last-owner rule
are written here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from tenants.context import tenant_scope
from tenants.exceptions import AlreadyMember, LastOwner, UserNotFound
from tenants.keys import generate_key, hash_key
from tenants.limits.quotas import quota_check
from tenants.limits.registry import MAX_API_KEYS, MAX_MEMBERS
from tenants.models import ApiKey, Membership, Plan, Tenant

User = get_user_model()


def tenant_create(*, slug: str, name: str, plan: Plan) -> Tenant:
    tenant = Tenant(slug=slug, name=name, plan=plan)
    tenant.full_clean()
    with transaction.atomic():
        tenant.save()
    return tenant


def tenant_update(*, tenant: Tenant, name: str) -> Tenant:
    tenant.name = name
    tenant.full_clean(exclude=["slug"])
    with transaction.atomic():
        tenant.save(update_fields=["name", "updated_at"])
    return tenant


@transaction.atomic
def tenant_set_status(*, tenant: Tenant, status: Tenant.Status) -> Tenant:
    """Suspend, reactivate or close a tenant. Takes effect on its next request."""
    tenant.status = status
    tenant.save(update_fields=["status", "updated_at"])
    return tenant


def _lock_tenant(tenant: Tenant) -> Tenant:
    return Tenant.objects.select_for_update().select_related("plan").get(pk=tenant.pk)


def membership_add_by_email(
    *, tenant: Tenant, email: str, role: str = Membership.Role.MEMBER
) -> Membership:
    """Add an existing user, found by email (case-insensitive), to the tenant."""
    user = User.objects.filter(email__iexact=email.strip()).order_by("id").first()
    if user is None:
        raise UserNotFound(details={"email": ["No user has that email address."]})
    return membership_add(tenant=tenant, user=user, role=role)


@transaction.atomic
def membership_add(*, tenant: Tenant, user, role: str = Membership.Role.MEMBER) -> Membership:
    """Add ``user`` to the tenant, within its member quota."""
    locked = _lock_tenant(tenant)
    with tenant_scope(locked):
        if Membership.objects.filter(user=user).exists():
            raise AlreadyMember()
        quota_check(tenant=locked, resource=MAX_MEMBERS, used=Membership.objects.count())
        return Membership.objects.create(user=user, role=role)


def _owners_left_after(membership: Membership) -> int:
    return Membership.objects.filter(role=Membership.Role.OWNER).exclude(pk=membership.pk).count()


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str) -> Membership:
    """Change a member's role. The last owner cannot be demoted.

    The role in force is read again under the tenant's lock: the caller's object may be stale, or
    (a form) already carry the new role.
    """
    with tenant_scope(_lock_tenant(membership.tenant)):
        saved_role = Membership.objects.values_list("role", flat=True).get(pk=membership.pk)
        demoting = saved_role == Membership.Role.OWNER and role != Membership.Role.OWNER
        if demoting and _owners_left_after(membership) == 0:
            raise LastOwner()
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    """Remove a member. The last owner cannot be removed."""
    with tenant_scope(_lock_tenant(membership.tenant)):
        saved_role = Membership.objects.values_list("role", flat=True).get(pk=membership.pk)
        if saved_role == Membership.Role.OWNER and _owners_left_after(membership) == 0:
            raise LastOwner()
        membership.delete()


@dataclass(frozen=True)
class IssuedApiKey:
    """A freshly created key and its secret. The secret exists only here; it is never stored."""

    api_key: ApiKey
    secret: str


@transaction.atomic
def api_key_create(
    *,
    tenant: Tenant,
    name: str,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    created_by=None,
    requests_per_minute: int | None = None,
) -> IssuedApiKey:
    """Create a key (read and write unless told otherwise); the secret is returned once."""
    locked = _lock_tenant(tenant)
    with tenant_scope(locked):
        active = ApiKey.objects.filter(revoked_at__isnull=True).count()
        quota_check(tenant=locked, resource=MAX_API_KEYS, used=active)
        secret, prefix = generate_key()
        api_key = ApiKey.objects.create(
            name=name,
            prefix=prefix,
            secret_hash=hash_key(secret),
            scopes=sorted(set(scopes or [ApiKey.Scope.READ, ApiKey.Scope.WRITE])),
            expires_at=expires_at,
            created_by=created_by if getattr(created_by, "pk", None) else None,
            requests_per_minute=requests_per_minute,
        )
    return IssuedApiKey(api_key=api_key, secret=secret)


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key. Idempotent; takes effect on the next request in every process."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key
