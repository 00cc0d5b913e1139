import pytest

from tests.factories import MembershipFactory, TenantFactory, issue_key, key_client

pytestmark = pytest.mark.django_db


def test_tenant_endpoint_answers_for_its_key():
    tenant = TenantFactory()
    MembershipFactory(tenant=tenant)
    _, secret = issue_key(tenant)
    response = key_client(secret).get("/api/v1/tenant/")
    assert response.status_code == 200, response.content
    assert response.json()["slug"] == tenant.slug
    assert response.json()["usage"] == {"members": 1, "api_keys": 1}
