from __future__ import annotations

from datetime import timedelta

from django.core.validators import RegexValidator
from django.utils import timezone
from rest_framework import serializers

from tenants.keys import INVITATION_TOKEN_PATTERN
from tenants.limits.registry import LIMIT_NAMES
from tenants.models import ApiKey, Invitation, Membership, Plan, Tenant

#: A one-line name: no leading or trailing whitespace, no line break or NUL inside. The schema
#: shows this pattern (drf-spectacular reads the validator) and the server checks the same one.
ONE_LINE_TEXT = r"^[^\s\x00](?:[^\n\x00]*[^\s\x00])?$"


class OneLineText(serializers.CharField):
    """A name as the schema states it: a JSON string (a number is refused, not turned into text)
    matching ``ONE_LINE_TEXT``. Not trimmed: what the schema accepts is what is stored."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def __init__(self, **kwargs):
        super().__init__(trim_whitespace=False, **kwargs)
        self.validators.append(
            RegexValidator(
                ONE_LINE_TEXT, "Use one line of text without leading or trailing spaces."
            )
        )

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class PlanSerializer(serializers.ModelSerializer):
    class Meta:
        model = Plan
        fields = ["code", "name"]


class TenantSerializer(serializers.ModelSerializer):
    plan = PlanSerializer(read_only=True)
    limits = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()

    class Meta:
        model = Tenant
        fields = ["id", "slug", "name", "status", "plan", "limits", "usage", "created_at"]
        read_only_fields = ["id", "slug", "status", "created_at"]

    def get_limits(self, tenant: Tenant) -> dict[str, int | None]:
        return {name: tenant.limits()[name] for name in LIMIT_NAMES}

    def get_usage(self, tenant: Tenant) -> dict[str, int]:
        return self.context["usage"]


class TenantUpdateSerializer(serializers.Serializer):
    """``PATCH /api/v1/tenant/``: every field is optional; ``{}`` changes nothing."""

    name = OneLineText(max_length=200, required=False)


class MembershipSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)
    username = serializers.CharField(source="user.get_username", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "username", "role", "created_at"]
        read_only_fields = fields


INVITATION_STATUSES = [*Invitation.Status.values, "expired"]


class InvitationSerializer(serializers.ModelSerializer):
    """An invitation as its tenant sees it: only what the inviter typed and who sent it."""

    status = serializers.ChoiceField(
        source="display_status",
        choices=INVITATION_STATUSES,
        read_only=True,
        help_text="expired: still pending, but past expires_at.",
    )
    invited_by_key = serializers.PrimaryKeyRelatedField(
        read_only=True, help_text="The API key that sent it, if one did."
    )
    invited_by_email = serializers.SerializerMethodField(
        help_text="The member who sent it (empty for a key or platform staff)."
    )

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "role",
            "status",
            "invited_by_key",
            "invited_by_email",
            "created_at",
            "expires_at",
            "accepted_at",
            "revoked_at",
        ]
        read_only_fields = fields

    def get_invited_by_email(self, invitation: Invitation) -> str | None:
        user = invitation.invited_by
        return None if user is None or user.is_staff else user.email


class InvitationCreateSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.MEMBER)


class InvitationCreatedSerializer(InvitationSerializer):
    token = serializers.CharField(
        help_text="The invitation token. Shown only in this answer: send it to the invitee, who "
        "accepts it with POST /api/v1/invitations/accept/ while signed in with that email."
    )

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "token"]


class InvitationAcceptSerializer(serializers.Serializer):
    token = serializers.RegexField(
        INVITATION_TOKEN_PATTERN, help_text="The token from the invitation, as it was sent."
    )


class InvitationAcceptedSerializer(serializers.Serializer):
    tenant = serializers.SlugField(source="tenant.slug", help_text="The tenant joined.")
    tenant_name = serializers.CharField(source="tenant.name")
    membership = serializers.IntegerField(source="pk")
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class MembershipUpdateSerializer(serializers.Serializer):
    """``PATCH /api/v1/members/<id>/``: every field is optional; ``{}`` changes nothing."""

    role = serializers.ChoiceField(choices=Membership.Role.choices, required=False)


class ApiKeySerializer(serializers.ModelSerializer):
    revoked = serializers.BooleanField(source="is_revoked", read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "created_at",
            "last_used_at",
            "expires_at",
            "requests_per_minute",
            "revoked",
            "revoked_at",
        ]
        read_only_fields = fields


#: Far above any plan's budget: a larger number is a typo, not a rate.
MAX_KEY_REQUESTS_PER_MINUTE = 10_000_000
#: Ten years: the longest lifetime a key can be given (longer: leave it empty, never expires).
MAX_KEY_DAYS = 3650


class ApiKeyCreateSerializer(serializers.Serializer):
    name = OneLineText(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKey.Scope.choices),
        allow_empty=False,
        default=[ApiKey.Scope.READ, ApiKey.Scope.WRITE],
    )
    expires_in_days = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        max_value=MAX_KEY_DAYS,
        help_text="The key expires this many days from now. Empty: never.",
    )
    requests_per_minute = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        max_value=MAX_KEY_REQUESTS_PER_MINUTE,
        help_text="The key's own per-minute budget, within the tenant's. Empty: the tenant's.",
    )

    def validate(self, attrs):
        """A lifetime, not a moment: every value the schema allows is a valid one (a moment in
        the past is not one the schema could rule out). An ``expires_at`` sent anyway is refused,
        not ignored: dropping it would make a key that never expires."""
        if "expires_at" in self.initial_data:
            raise serializers.ValidationError(
                {"expires_at": ["Not accepted here; send expires_in_days."]}
            )
        days = attrs.pop("expires_in_days", None)
        attrs["expires_at"] = timezone.now() + timedelta(days=days) if days else None
        return attrs


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(
        help_text="The secret key. Shown only in this answer; store it now."
    )

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]


class QuotaLineSerializer(serializers.Serializer):
    label = serializers.CharField()
    unit = serializers.CharField()
    limit = serializers.IntegerField(allow_null=True, help_text="Empty: unlimited.")
    used = serializers.IntegerField(allow_null=True, help_text="Empty for a per-file limit.")
    percent = serializers.IntegerField(allow_null=True)
    resets_at = serializers.DateTimeField(allow_null=True, help_text="Empty: never resets.")


class RateBudgetSerializer(serializers.Serializer):
    limit = serializers.IntegerField()
    remaining = serializers.IntegerField()
    reset = serializers.IntegerField(help_text="Seconds until the window ends.")


class UsageSerializer(serializers.Serializer):
    """Documents ``GET /api/v1/usage/``: quotas by resource, rate budgets by subject and group."""

    quotas = serializers.DictField(child=QuotaLineSerializer())
    rate_limit = serializers.DictField(
        child=serializers.DictField(child=RateBudgetSerializer(allow_null=True)),
        help_text='"tenant" (and "api_key" when the key has its own limit): reads, writes, uploads.',
    )
