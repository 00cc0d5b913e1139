from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from config import health, ops
from config.admin_login import admin_login
from degradation.api import ActiveFlagsView
from metrics.api import QueryHealthView, QueryMetricsView, TenantsTopView, UsageMetricsView
from queues.ops import QueueHealthView, QueueStatsView
from storage.health import StorageHealthView

handler400 = "config.api.handler400"
handler403 = "config.api.handler403"
handler404 = "config.api.handler404"
handler500 = "config.api.handler500"

urlpatterns = [
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("api/v1/usage/metrics", UsageMetricsView.as_view(), name="usage-metrics"),
    path("api/v1/", include("tenants.urls")),
    path("api/v1/flags/", ActiveFlagsView.as_view(), name="flags-active"),
    path("api/v1/", include("queues.urls")),
    path("api/v1/", include("storage.urls")),
    path("api/degradation/", include("degradation.urls")),
    path("api/ops/replicas", ops.ReplicasView.as_view(), name="ops-replicas"),
    path("api/ops/tenants/top", TenantsTopView.as_view(), name="ops-tenants-top"),
    path("api/queues/stats", QueueStatsView.as_view(), name="queues-stats"),
    path("api/queues/health", QueueHealthView.as_view(), name="queues-health"),
    path("api/storage/health", StorageHealthView.as_view(), name="storage-health"),
    path("api/query-optimizer/metrics", QueryMetricsView.as_view(), name="query-metrics"),
    path("api/query-optimizer/health", QueryHealthView.as_view(), name="query-health"),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[]), name="api-schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[]),
        name="api-docs",
    ),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="api-schema", permission_classes=[]),
        name="api-redoc",
    ),
    path("admin/login/", admin_login, name="admin-login"),  # throttled; the rest is admin's own
    path("admin/", admin.site.urls),
]
