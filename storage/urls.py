from django.urls import path
from rest_framework.routers import SimpleRouter

from storage.api import FileViewSet, SignedDownloadView

router = SimpleRouter()
router.register("files", FileViewSet, basename="file")

urlpatterns = [
    path("files/signed/<str:token>/", SignedDownloadView.as_view(), name="file-signed-download"),
    *router.urls,
]
