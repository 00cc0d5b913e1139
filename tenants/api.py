"""Tenant API (``/api/v1/``): the current tenant, its usage, members, invitations and API keys.

Every queryset here goes through ``Model.objects``, the scoped manager, so it can only ever see the
request's tenant; the isolation suite (tests/integration/test_isolation.py) proves it per route.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from tenants import selectors, services
from tenants.cache import tenant_cached_view
from tenants.limits import ratelimits
from tenants.limits.usage import quota_report
from tenants.models import ApiKey, Invitation, Membership, Tenant
from tenants.permissions import IsSignedInUser
from tenants.serializers import (
    INVITATION_STATUSES,
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    InvitationAcceptedSerializer,
    InvitationAcceptSerializer,
    InvitationCreatedSerializer,
    InvitationCreateSerializer,
    InvitationSerializer,
    MembershipSerializer,
    MembershipUpdateSerializer,
    QuotaLineSerializer,
    TenantSerializer,
    TenantUpdateSerializer,
    UsageSerializer,
)

ID_PATTERN = r"[0-9]{1,18}"
#: Error answers an operation gives beyond the ones every operation may (config/schema.py fills
#: in the error shape).
LAST_OWNER = OpenApiResponse(description="last_owner: a tenant keeps at least one owner.")


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
        if "name" in serializer.validated_data:
            tenant = services.tenant_update(tenant=tenant, name=serializer.validated_data["name"])
        return self._answer(tenant)


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


def _require_owner_for(request, *roles: str) -> None:
    """Only an owner (or staff) grants, changes or removes the owner role."""
    if Membership.Role.OWNER in roles and request.tenant_role not in (
        Membership.Role.OWNER,
        "staff",
    ):
        raise PermissionDenied("Only an owner can grant, change or remove the owner role.")


class MemberViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Members of the tenant. New members come through invitations (``/api/v1/invitations/``)."""

    serializer_class = MembershipSerializer
    lookup_value_regex = ID_PATTERN
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Membership.all_tenants.none()
        return Membership.objects.select_related("user")

    @extend_schema(
        request=MembershipUpdateSerializer, responses={200: MembershipSerializer, 409: LAST_OWNER}
    )
    def partial_update(self, request, pk=None):
        membership = self.get_object()
        serializer = MembershipUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if "role" in serializer.validated_data:
            role = serializer.validated_data["role"]
            _require_owner_for(request, membership.role, role)
            membership = services.membership_change_role(membership=membership, role=role)
        return Response(MembershipSerializer(membership).data)

    @extend_schema(responses={204: None, 409: LAST_OWNER})
    def destroy(self, request, *args, **kwargs):
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, membership: Membership) -> None:
        _require_owner_for(self.request, membership.role)
        services.membership_remove(membership=membership)


def _filter_by_status(queryset, wanted: str | None):
    if wanted is None:
        return queryset
    if wanted not in INVITATION_STATUSES:
        raise ValidationError({"status": [f"Use one of: {', '.join(INVITATION_STATUSES)}."]})
    now = timezone.now()
    if wanted == "expired":
        return queryset.filter(status=Invitation.Status.PENDING, expires_at__lte=now)
    if wanted == Invitation.Status.PENDING:
        return queryset.filter(status=wanted, expires_at__gt=now)
    return queryset.filter(status=wanted)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("status", enum=INVITATION_STATUSES, required=False, location="query")
        ]
    )
)
class InvitationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Invitations to join the tenant. The answer to an invitation never says whether the email
    has an account; the invitee accepts with the token, signed in (``Invitation``'s invariants)."""

    serializer_class = InvitationSerializer
    lookup_value_regex = ID_PATTERN

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invitation.all_tenants.none()
        queryset = Invitation.objects.select_related("invited_by")
        if self.action == "list":
            return _filter_by_status(queryset, self.request.query_params.get("status"))
        return queryset

    @extend_schema(
        request=InvitationCreateSerializer,
        responses={
            201: InvitationCreatedSerializer,
            409: OpenApiResponse(
                description="already_member: a member has that email; "
                "too_many_open_invitations: INVITATIONS_MAX_OPEN are open."
            ),
        },
    )
    def create(self, request):
        serializer = InvitationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        _require_owner_for(request, serializer.validated_data["role"])
        issued = services.invitation_create(
            tenant=request.tenant,
            invited_by=request.user,
            invited_by_key=request.api_key,
            **serializer.validated_data,
        )
        body = {**InvitationSerializer(issued.invitation).data, "token": issued.token}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={
            200: InvitationSerializer,
            409: OpenApiResponse(description="invitation_not_open: accepted or revoked already."),
        },
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        invitation = services.invitation_revoke(invitation=self.get_object())
        return Response(InvitationSerializer(invitation).data)

    @extend_schema(
        request=InvitationAcceptSerializer,
        responses={
            200: InvitationAcceptedSerializer,
            404: OpenApiResponse(description="invitation_not_found: no open invitation matches."),
            409: OpenApiResponse(description="already_member: the user is a member already."),
        },
        description="Accept an invitation as the signed-in user it was sent to (session sign-in, "
        "without X-Tenant; not with an API key). Unknown, expired, revoked, accepted, or sent to "
        "another email: the same 404 invitation_not_found.",
    )
    @action(detail=False, methods=["post"], permission_classes=[IsSignedInUser])
    def accept(self, request):
        serializer = InvitationAcceptSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.invitation_accept(
            token=serializer.validated_data["token"], user=request.user
        )
        return Response(InvitationAcceptedSerializer(membership).data)


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
