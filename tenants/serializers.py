from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from tenants.models import LIMIT_FIELDS, ApiKey, Membership, Plan, Tenant


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
        return {name: tenant.limits()[name] for name in LIMIT_FIELDS}

    def get_usage(self, tenant: Tenant) -> dict[str, int]:
        return self.context["usage"]


class TenantUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, allow_blank=False, trim_whitespace=True)


class MembershipSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)
    username = serializers.CharField(source="user.get_username", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "username", "role", "created_at"]
        read_only_fields = fields


class MembershipCreateSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.MEMBER)


class MembershipUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


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
            "revoked",
            "revoked_at",
        ]
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, trim_whitespace=True)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKey.Scope.choices),
        allow_empty=False,
        default=[ApiKey.Scope.READ, ApiKey.Scope.WRITE],
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(
        help_text="The secret key. Shown only in this answer; store it now."
    )

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
