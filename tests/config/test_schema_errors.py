"""The OpenAPI schema documents the errors and bounds the server really answers."""

from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.factories import TenantFactory, issue_key, key_client

pytestmark = [pytest.mark.django_db]

ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        return APIClient().get("/api/schema/", {"format": "json"}).json()


def _operations(schema, prefix="/api/v1/"):
    for path, operations in schema["paths"].items():
        if path.startswith(prefix):
            yield from ((path, method, op) for method, op in operations.items())


def _ref(response) -> str:
    return response["content"]["application/json"]["schema"]["$ref"]


def test_every_tenant_api_operation_documents_its_error_answers(schema):
    operations = list(_operations(schema))
    assert len(operations) >= 8
    for path, method, operation in operations:
        responses = operation["responses"]
        expected = {"400", "401", "403", "429", "503"}
        expected |= {"404"} if "{" in path else set()
        expected |= {"413", "415"} if method in ("post", "put", "patch") else set()
        assert expected <= set(responses), (path, method, sorted(responses))
        for status in expected:
            assert _ref(responses[status]) == ERROR_REF
        assert "Retry-After" in responses["429"]["headers"]
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message", "details"]


def test_the_page_size_parameter_states_its_bounds(schema):
    limits = [
        parameter
        for _, _, operation in _operations(schema)
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "limit"
    ]
    assert limits, "no paginated list in the schema"
    for parameter in limits:
        assert parameter["schema"] == {
            "type": "integer",
            "minimum": 1,
            "maximum": settings.API_MAX_PAGE_SIZE,
        }


def test_the_documented_errors_are_what_the_server_answers(schema):
    api = key_client(issue_key(TenantFactory())[1])
    statuses = {
        "401": APIClient().get("/api/v1/api-keys/").status_code,
        "400": api.get("/api/v1/api-keys/", {"limit": "0"}).status_code,
        "404": api.get("/api/v1/api-keys/999999999/").status_code,
        "415": api.post("/api/v1/api-keys/", "name=x", content_type="text/plain").status_code,
    }
    assert statuses == {status: int(status) for status in statuses}
    documented = schema["paths"]["/api/v1/api-keys/{id}/"]["get"]["responses"]
    assert {"401", "400", "404"} <= set(documented)
