"""Tenant API (``/api/v1/``): the current tenant, its usage, its members and its API keys.

Every queryset here goes through ``Model.objects``, the scoped manager, so it can only ever see the
request's tenant; the isolation suite (tests/integration/test_isolation.py) proves it per route.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from tenants import selectors, services
from tenants.cache import tenant_cached_view
from tenants.limits import ratelimits
from tenants.limits.usage import quota_report
from tenants.models import ApiKey, Membership, Tenant
from tenants.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    MembershipCreateSerializer,
    MembershipSerializer,
    MembershipUpdateSerializer,
    QuotaLineSerializer,
    TenantSerializer,
    TenantUpdateSerializer,
    UsageSerializer,
)

ID_PATTERN = r"[0-9]{1,18}"


class TenantView(GenericAPIView):
    serializer_class = TenantSerializer

    def _answer(self, tenant: Tenant) -> Response:
        usage = selectors.tenant_usage(tenant=tenant)
        return Response(TenantSerializer(tenant, context={"usage": usage}).data)

    @tenant_cached_view()
    def get(self, request):
        return self._answer(request.tenant)

    @extend_schema(request=TenantUpdateSerializer, responses=TenantSerializer)
    def patch(self, request):
        serializer = TenantUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tenant = Tenant.objects.select_related("plan").get(pk=request.tenant.pk)
        return self._answer(
            services.tenant_update(tenant=tenant, name=serializer.validated_data["name"])
        )


class UsageView(GenericAPIView):
    """The tenant's quotas (limit, used, reset time) and what is left of its rate limits."""

    serializer_class = UsageSerializer

    def get(self, request):
        lines = quota_report(request.tenant)
        body = {
            "quotas": {line.resource: QuotaLineSerializer(line).data for line in lines},
            "rate_limit": ratelimits.current_budget(
                request, tenant=request.tenant, api_key=request.api_key
            ),
        }
        return Response(body)


def _caller_is_owner(request) -> bool:
    return request.tenant_role in (Membership.Role.OWNER, "staff")


class MemberViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Members of the tenant. Only owners (and staff) may add, change or remove owners."""

    serializer_class = MembershipSerializer
    lookup_value_regex = ID_PATTERN
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Membership.all_tenants.none()
        return Membership.objects.select_related("user")

    def _require_owner_for(self, *roles: str) -> None:
        if Membership.Role.OWNER in roles and not _caller_is_owner(self.request):
            raise PermissionDenied("Only an owner can grant, change or remove the owner role.")

    @extend_schema(request=MembershipCreateSerializer, responses={201: MembershipSerializer})
    def create(self, request):
        serializer = MembershipCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self._require_owner_for(serializer.validated_data["role"])
        membership = services.membership_add_by_email(
            tenant=request.tenant, **serializer.validated_data
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=MembershipUpdateSerializer, responses=MembershipSerializer)
    def partial_update(self, request, pk=None):
        membership = self.get_object()
        serializer = MembershipUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self._require_owner_for(membership.role, serializer.validated_data["role"])
        membership = services.membership_change_role(
            membership=membership, role=serializer.validated_data["role"]
        )
        return Response(MembershipSerializer(membership).data)

    def perform_destroy(self, membership: Membership) -> None:
        self._require_owner_for(membership.role)
        services.membership_remove(membership=membership)


class ApiKeyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """API keys of the tenant. The secret is shown once, in the answer to the create call."""

    serializer_class = ApiKeySerializer
    lookup_value_regex = ID_PATTERN

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiKey.all_tenants.none()
        return ApiKey.objects.all()

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request):
        serializer = ApiKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.api_key_create(
            tenant=request.tenant, created_by=request.user, **serializer.validated_data
        )
        body = {**ApiKeySerializer(issued.api_key).data, "key": issued.secret}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        api_key = services.api_key_revoke(api_key=self.get_object())
        return Response(ApiKeySerializer(api_key).data)
