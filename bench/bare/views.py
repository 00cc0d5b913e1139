"""The two bare views: what Django alone and DRF alone cost for a small JSON answer.

Both answer the same dict, shaped and sized like the tenant API's ``GET /api/v1/tenant/`` answer
(about 400 bytes of JSON), built once at import: no serializer, no database, no cache.
"""

from django.http import JsonResponse
from rest_framework.response import Response
from rest_framework.views import APIView

ANSWER = {
    "id": 1,
    "slug": "bench-ceiling-1",
    "name": "bench-ceiling-1",
    "status": "active",
    "plan": {"code": "pro", "name": "Pro"},
    "limits": {
        "requests_per_minute": 1_000_000_000,
        "max_members": 50,
        "max_api_keys": None,
        "storage_bytes": 53_687_091_200,
        "max_file_bytes": 524_288_000,
        "jobs_per_day": 20_000,
        "api_calls_per_month": None,
    },
    "usage": {"members": 0, "api_keys": 1},
    "created_at": "2026-01-01T00:00:00.000000Z",
}


def bare_django(request):
    return JsonResponse(ANSWER)


class BareDrfView(APIView):
    """DRF's defaults (bare.settings): session and basic authentication, AllowAny, no throttles."""

    def get(self, request):
        return Response(ANSWER)
