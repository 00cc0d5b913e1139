"""A test-only URL conf for the replica driver: probes that say which server answered.

The production urls stay mounted; the probes run behind the real middleware chain, so the tenant
comes from the API key and the router decides where each ORM query goes.
"""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.expressions import RawSQL
from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from tenants.context import require_tenant
from tenants.models import Tenant
from tenants.services import tenant_update


def _read_own_tenant() -> dict:
    """Read the tenant's row through the ORM, with ``pg_is_in_recovery()`` of the server that answered."""
    queryset = Tenant.objects.filter(pk=require_tenant().pk).annotate(
        in_recovery=RawSQL("pg_is_in_recovery()", ())
    )
    name, in_recovery = queryset.values_list("name", "in_recovery").get()
    return {"alias": queryset.db, "name": name, "in_recovery": in_recovery}


def read_probe(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_read_own_tenant())


def read_in_transaction_probe(request: HttpRequest) -> JsonResponse:
    with transaction.atomic():
        return JsonResponse(_read_own_tenant())


def write_probe(request: HttpRequest) -> JsonResponse:
    """Rename the tenant, then read it back in the same request."""
    tenant = Tenant.objects.get(pk=require_tenant().pk)
    tenant_update(tenant=tenant, name=json.loads(request.body)["name"])
    return JsonResponse(_read_own_tenant())


def _read_own_user(request: HttpRequest) -> dict:
    queryset = (
        get_user_model()
        .objects.filter(pk=request.user.pk)
        .annotate(in_recovery=RawSQL("pg_is_in_recovery()", ()))
    )
    first_name, in_recovery = queryset.values_list("first_name", "in_recovery").get()
    return {"alias": queryset.db, "first_name": first_name, "in_recovery": in_recovery}


def user_read_probe(request: HttpRequest) -> JsonResponse:
    """A signed-in user's own row, outside any tenant."""
    return JsonResponse(_read_own_user(request))


def user_write_probe(request: HttpRequest) -> JsonResponse:
    get_user_model().objects.filter(pk=request.user.pk).update(
        first_name=json.loads(request.body)["first_name"]
    )
    return JsonResponse(_read_own_user(request))


urlpatterns = [
    # Under the tenant API, so the limits count it (rate windows, API calls) like any tenant read.
    path("api/v1/probe/read", read_probe),
    path("probe/read", read_probe),
    path("probe/read-in-transaction", read_in_transaction_probe),
    path("probe/write", write_probe),
    path("probe/user/read", user_read_probe),
    path("probe/user/write", user_write_probe),
    path("", include("config.urls")),
]
