"""Errors Django raises before any view runs are JSON under /api/ too, and stay HTML elsewhere."""

import pytest

pytestmark = pytest.mark.django_db


def test_disallowed_host_under_api_is_a_json_400(client):
    response = client.get("/api/v1/tenant/", HTTP_HOST="evil.example.net")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "bad_request"


def test_disallowed_host_outside_api_keeps_django_page(client):
    response = client.get("/admin/login/", HTTP_HOST="evil.example.net")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
