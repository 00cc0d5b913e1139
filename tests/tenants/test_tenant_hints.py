"""Tenant hints without credentials, and what answers made for a tenant tell caches.

A subdomain or ``X-Tenant`` without credentials names nothing: pages that need no tenant answer as
always, and the tenant API answers an unknown, an existing and a suspended tenant alike. Every
answer made for a tenant (its data, a new key's secret) is ``Cache-Control: no-store``.
"""

from __future__ import annotations

import pytest
from django.test import Client

from tenants.models import Tenant
from tests.factories import TenantFactory, issue_key, key_client

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def tenants():
    return {
        "existing": TenantFactory(slug="existing"),
        "suspended": TenantFactory(slug="suspended", status=Tenant.Status.SUSPENDED),
    }


@pytest.mark.parametrize("path", ["/health/live", "/api/schema/", "/admin/login/"])
@pytest.mark.parametrize("slug", ["no-such-tenant", "existing", "suspended"])
def test_pages_that_need_no_tenant_ignore_a_hint_without_credentials(tenants, path, slug):
    by_header = Client().get(path, HTTP_X_TENANT=slug)
    by_host = Client().get(path, HTTP_HOST=f"{slug}.localhost")
    assert by_header.status_code == by_host.status_code == 200


def test_the_tenant_api_answers_every_hint_without_credentials_alike(tenants):
    answers = [
        Client().get("/api/v1/tenant/", HTTP_X_TENANT=slug)
        for slug in ("no-such-tenant", "existing", "suspended")
    ]
    assert {a.status_code for a in answers} == {401}
    assert len({a.content for a in answers}) == 1


def test_answers_made_for_a_tenant_are_not_stored_by_any_cache(tenants):
    _, secret = issue_key(tenants["existing"])
    api = key_client(secret)

    read = api.get("/api/v1/tenant/")
    created = api.post("/api/v1/api-keys/", {"name": "ci"}, format="json")

    for response in (read, created):
        assert "no-store" in response["Cache-Control"]
        assert "private" in response["Cache-Control"]
    assert created.status_code == 201 and created.json()["key"]
