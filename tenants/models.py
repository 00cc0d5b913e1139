"""Plans, tenants, memberships, invitations and API keys.

``Tenant`` and ``Plan`` are global tables (the tenant is the root every other row hangs from);
``Membership``, ``Invitation`` and ``ApiKey`` are tenant-owned and subclass ``TenantScopedModel``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from tenants.limits.registry import LIMIT_NAMES, MAX_LIMIT_VALUE, RESOURCES, counter_choices
from tenants.scoping import TenantScopedModel

RESERVED_SLUGS = frozenset(
    {"www", "api", "admin", "static", "media", "health", "metrics", "app", "mail", "status"}
)

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
    "Use 1-63 lowercase letters, digits and hyphens, not starting or ending with a hyphen.",
)


def validate_slug_not_reserved(value: str) -> None:
    if value in RESERVED_SLUGS:
        raise ValidationError(f"'{value}' is reserved.")


def _limit_field(help_text: str) -> models.PositiveBigIntegerField:
    return models.PositiveBigIntegerField(
        null=True, blank=True, help_text=f"{help_text} Empty: unlimited."
    )


class Plan(models.Model):
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    # One nullable column per limit of the registry (tenants.limits.registry), in its order.
    for _resource in RESOURCES:
        vars()[_resource.name] = _limit_field(_resource.help_text)
    del _resource
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """The limits are at most ``MAX_LIMIT_VALUE`` (a check here, not a field validator, so
        that it needs no migration)."""
        errors = {
            name: f"{name} must be at most {MAX_LIMIT_VALUE} (10**15); leave it empty for unlimited."
            for name in LIMIT_NAMES
            if getattr(self, name) is not None and getattr(self, name) > MAX_LIMIT_VALUE
        }
        if errors:
            raise ValidationError(errors)

    def limits(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in LIMIT_NAMES}


def validate_limit_overrides(value: object) -> None:
    """Overrides are ``{limit_name: int in 0..MAX_LIMIT_VALUE or null}`` with known names only."""
    if not isinstance(value, dict):
        raise ValidationError("Limit overrides must be an object.")
    unknown = sorted(set(value) - set(LIMIT_NAMES))
    if unknown:
        raise ValidationError(f"Unknown limits: {', '.join(unknown)}.")
    for name, limit in value.items():
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValidationError(f"{name} must be a non-negative integer or null.")
        if limit is not None and limit > MAX_LIMIT_VALUE:
            raise ValidationError(
                f"{name} must be at most {MAX_LIMIT_VALUE} (10**15), not {limit}; "
                "use null for unlimited."
            )


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        CLOSED = "closed", "Closed"

    slug = models.CharField(
        max_length=63,
        unique=True,
        validators=[slug_validator, validate_slug_not_reserved],
        help_text="Subdomain and X-Tenant name. Cannot change after creation.",
    )
    name = models.CharField(max_length=200)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="tenants")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    limit_overrides = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_limit_overrides],
        help_text='Per-tenant limits that replace the plan\'s, e.g. {"max_members": 50}.',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["plan", "status"])]

    def __str__(self) -> str:
        return self.slug

    def save(self, *args, **kwargs) -> None:
        """The slug names the tenant's subdomain and cached resolutions: it never changes."""
        saved_slug = getattr(self, "_saved_slug", None)
        if saved_slug is not None and self.slug != saved_slug:
            raise ValidationError({"slug": "A tenant's slug cannot change after creation."})
        super().save(*args, **kwargs)
        self._saved_slug = self.slug

    def clean(self) -> None:
        # Field validators skip "empty" values, and [] is one: check the type here.
        if not isinstance(self.limit_overrides, dict):
            raise ValidationError({"limit_overrides": "Limit overrides must be an object."})

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._saved_slug = instance.__dict__.get("slug")
        return instance

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    def limits(self) -> dict[str, int | None]:
        """The plan's limits with this tenant's overrides applied."""
        return {**self.plan.limits(), **self.limit_overrides}


class Membership(TenantScopedModel):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantScopedModel.Meta):
        ordering = ["id"]
        constraints = [
            *TenantScopedModel.Meta.constraints,
            models.UniqueConstraint(
                fields=["tenant", "user"], name="tenants_membership_tenant_user_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant_id} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.ADMIN)


class Invitation(TenantScopedModel):
    """An invitation to join a tenant, addressed to an email.

    Invariants (``tenants.services.invitation_*``):

    * Creating one tells the inviter nothing about the platform's users: the answer is the same
      whether or not an account has that email, and no other tenant's data is read for it.
    * The token is shown once, in the answer to the create call, and stored only as its SHA-256.
    * Accepting needs the token AND a signed-in user whose email is the invitation's; the members
      quota is checked then, under the tenant's row lock, so an invitation never takes a tenant
      past its limit. Unknown, revoked, expired, accepted or someone else's: one same answer.
    * At most one open invitation per email and tenant: inviting again replaces the open one.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REVOKED = "revoked", "Revoked"

    email = models.EmailField(help_text="Stored lower-case; matched case-insensitively.")
    role = models.CharField(
        max_length=16, choices=Membership.Role.choices, default=Membership.Role.MEMBER
    )
    token_hash = models.CharField(max_length=64, editable=False)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, editable=False
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    invited_by_key = models.ForeignKey(
        "tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True, editable=False)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta(TenantScopedModel.Meta):
        ordering = ["id"]
        constraints = [
            *TenantScopedModel.Meta.constraints,
            models.UniqueConstraint(
                fields=["tenant", "email"],
                condition=models.Q(status="pending"),
                name="tenants_invitation_open_email_uniq",
            ),
            models.UniqueConstraint(
                fields=["tenant", "token_hash"], name="tenants_invitation_tenant_token_uniq"
            ),
        ]
        # Found by token before the tenant is known (as keys are by prefix), so this one index
        # cannot lead with tenant_id; tokens are random.
        indexes = [
            models.Index(fields=["token_hash"], name="tenants_invitation_token_idx"),
            models.Index(fields=["tenant", "status", "id"], name="tenants_invitation_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.tenant_id} ({self.display_status})"

    def is_expired(self, now=None) -> bool:
        return self.expires_at <= (now or timezone.now())

    @property
    def display_status(self) -> str:
        """The stored status, or ``expired`` for a pending invitation past its expiry."""
        if self.status == self.Status.PENDING and self.is_expired():
            return "expired"
        return self.status


class ApiKey(TenantScopedModel):
    """An API key. The secret is stored only as a SHA-256 hash and shown once, at creation."""

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Write"

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    requests_per_minute = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="This key's own budget, within the tenant's (docs/RATELIMITS.md). Empty: none.",
    )

    class Meta(TenantScopedModel.Meta):
        ordering = ["id"]
        verbose_name = "API key"
        constraints = [
            *TenantScopedModel.Meta.constraints,
            models.UniqueConstraint(
                fields=["tenant", "prefix"], name="tenants_apikey_tenant_prefix_uniq"
            ),
        ]
        # Looked up by prefix before the tenant is known, so this one index cannot lead with
        # tenant_id; prefixes are random, and a lookup compares the hash of every match.
        indexes = [models.Index(fields=["prefix"], name="tenants_apikey_prefix_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class TenantUsage(TenantScopedModel):
    """One usage counter of a tenant: a resource in a period (``""`` for resources without one).

    Written only through ``tenants.limits.quotas`` with conditional single-statement updates, never with
    read-compare-write, so concurrent reservations cannot take ``used`` past the tenant's limit.
    Daily counters have ``period`` ``YYYY-MM-DD`` and monthly ones ``YYYY-MM`` (UTC): a new period
    starts a new row, so a counter resets on time even when the clean-up job runs late.
    """

    resource = models.CharField(max_length=32, choices=counter_choices())
    period = models.CharField(max_length=10, blank=True, default="")
    used = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta(TenantScopedModel.Meta):
        ordering = ["id"]
        verbose_name = "tenant usage"
        verbose_name_plural = "tenant usage"
        constraints = [
            *TenantScopedModel.Meta.constraints,
            models.UniqueConstraint(
                fields=["tenant", "resource", "period"],
                name="tenants_tenantusage_tenant_resource_period_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.resource} {self.period or '-'}: {self.used}"
