"""The project's URLs plus one view in the ``uploads`` rate-limit group (the storage app has none yet)."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import urlpatterns as project_urlpatterns


class UploadProbeView(APIView):
    ratelimit_group = "uploads"

    def post(self, request):
        return Response({"stored": True}, status=201)


urlpatterns = [path("api/v1/probe-upload/", UploadProbeView.as_view()), *project_urlpatterns]
