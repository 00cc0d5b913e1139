"""Writes of the tenants app. Keyword-only, typed, atomic.

Quota invariant: adding a member (directly, or by accepting an invitation) or an API key locks
the tenant row (``SELECT ... FOR UPDATE``) before counting, so concurrent additions are serialised
and a tenant can never pass its limit.
Counted resources (storage, jobs, API calls) use ``tenants.limits.quotas.quota_reserve`` instead.
The API and the admin both call these functions: the row lock, the quotas and the last-owner rule
are written here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tenants.context import tenant_scope
from tenants.exceptions import (
    AlreadyMember,
    InvitationNotFound,
    InvitationNotOpen,
    LastOwner,
    TooManyOpenInvitations,
)
from tenants.keys import generate_invitation_token, generate_key, hash_key, is_invitation_token
from tenants.limits.quotas import quota_check
from tenants.limits.registry import MAX_API_KEYS, MAX_MEMBERS
from tenants.models import ApiKey, Invitation, Membership, Plan, Tenant


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


def normalise_email(email: str) -> str:
    """How invitations store and compare an address: trimmed and lower-case."""
    return email.strip().lower()


@dataclass(frozen=True)
class IssuedInvitation:
    """A fresh invitation and its token. The token exists only here; it is never stored."""

    invitation: Invitation
    token: str


@transaction.atomic
def invitation_create(
    *,
    tenant: Tenant,
    email: str,
    role: str = Membership.Role.MEMBER,
    invited_by=None,
    invited_by_key: ApiKey | None = None,
) -> IssuedInvitation:
    """Invite ``email`` to the tenant; the token is returned once (``Invitation`` invariants).

    Nothing outside the tenant is read: whether an account has this email is not looked up, so
    the answer cannot tell. An open invitation to the same email is replaced (revoked), so
    inviting again is how an invitation is sent anew. At most ``INVITATIONS_MAX_OPEN`` unexpired
    invitations are open per tenant.
    """
    email = normalise_email(email)
    locked = _lock_tenant(tenant)
    now = timezone.now()
    with tenant_scope(locked):
        if Membership.objects.filter(user__email__iexact=email).exists():
            raise AlreadyMember("A member of this tenant already has that email.")
        pending = Invitation.objects.filter(status=Invitation.Status.PENDING)
        pending.filter(email=email).update(status=Invitation.Status.REVOKED, revoked_at=now)
        if pending.filter(expires_at__gt=now).count() >= settings.INVITATIONS_MAX_OPEN:
            raise TooManyOpenInvitations(details={"limit": settings.INVITATIONS_MAX_OPEN})
        token = generate_invitation_token()
        invitation = Invitation.objects.create(
            email=email,
            role=role,
            token_hash=hash_key(token),
            invited_by=invited_by if getattr(invited_by, "pk", None) else None,
            invited_by_key=invited_by_key,
            expires_at=now + timedelta(hours=settings.INVITATION_EXPIRY_HOURS),
        )
    return IssuedInvitation(invitation=invitation, token=token)


@transaction.atomic
def invitation_revoke(*, invitation: Invitation) -> Invitation:
    """Revoke an open (or expired) invitation; one already accepted or revoked is a conflict."""
    with tenant_scope(invitation.tenant):
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if locked.status != Invitation.Status.PENDING:
            raise InvitationNotOpen()
        locked.status, locked.revoked_at = Invitation.Status.REVOKED, timezone.now()
        locked.save(update_fields=["status", "revoked_at"])
    return locked


def _open_for(invitation: Invitation, user) -> bool:
    return (
        invitation.status == Invitation.Status.PENDING
        and not invitation.is_expired()
        and invitation.tenant.is_active
        and normalise_email(user.email or "") == invitation.email
    )


@transaction.atomic
def invitation_accept(*, token: str, user) -> Membership:
    """Make ``user`` a member through the invitation ``token``, within the members quota.

    Every way of not matching (unknown token, revoked, expired, accepted, another email, a tenant
    not active) raises the same ``InvitationNotFound``. The token is found by its hash (an index
    lookup: its timing says nothing about a 256-bit secret). The tenant row is locked before the
    invitation row (the order every writer here takes), and the quota is ``membership_add``'s.
    """
    if not is_invitation_token(token):
        raise InvitationNotFound()
    found = (
        Invitation.all_tenants.filter(token_hash=hash_key(token)).select_related("tenant").first()
    )
    if found is None or not _open_for(found, user):
        raise InvitationNotFound()
    locked_tenant = _lock_tenant(found.tenant)
    with tenant_scope(locked_tenant):
        invitation = (
            Invitation.objects.select_for_update().select_related("tenant").get(pk=found.pk)
        )
        if not _open_for(invitation, user):
            raise InvitationNotFound()
        membership = membership_add(tenant=locked_tenant, user=user, role=invitation.role)
        invitation.status, invitation.accepted_at = Invitation.Status.ACCEPTED, timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["status", "accepted_at", "accepted_by"])
    return membership


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
