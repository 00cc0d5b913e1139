"""Views for the query monitor's tests: an N+1 on purpose, its fix, and a slow query.
Used with ``@pytest.mark.urls("tests.metrics.urls_queries")`` (the production middleware runs)."""

from __future__ import annotations

from django.db import connection
from django.http import JsonResponse
from django.urls import path

from tenants.models import Membership


def n_plus_one(request):
    names = [m.user.username for m in Membership.all_tenants.order_by("pk")]  # a query per row
    return JsonResponse({"names": names})


def fixed(request):
    rows = Membership.all_tenants.select_related("user").order_by("pk")
    return JsonResponse({"names": [m.user.username for m in rows]})


def slow(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s), %s AS secret", [0.08, "alice@example.com"])
    return JsonResponse({"ok": True})


urlpatterns = [
    path("n-plus-one/", n_plus_one, name="probe-n-plus-one"),
    path("fixed/", fixed, name="probe-fixed"),
    path("slow/", slow, name="probe-slow"),
]
