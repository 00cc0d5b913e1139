from django.urls import path
from rest_framework.routers import SimpleRouter

from tenants.api import ApiKeyViewSet, InvitationViewSet, MemberViewSet, TenantView, UsageView

router = SimpleRouter()
router.register("members", MemberViewSet, basename="member")
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("api-keys", ApiKeyViewSet, basename="api-key")

urlpatterns = [
    path("tenant/", TenantView.as_view(), name="tenant"),
    path("usage/", UsageView.as_view(), name="usage"),
    *router.urls,
]
