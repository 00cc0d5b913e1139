"""CORS is closed unless origins are configured (``CORS_ALLOWED_ORIGINS``), and only for the API."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = [pytest.mark.django_db]

ORIGIN = "https://app.example.com"


def _preflight(path: str):
    return Client().options(
        path,
        HTTP_ORIGIN=ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )


def test_no_origin_is_allowed_by_default():
    response = _preflight("/api/v1/tenant/")
    assert "Access-Control-Allow-Origin" not in response
    plain = Client().get("/health/live", HTTP_ORIGIN=ORIGIN)
    assert "Access-Control-Allow-Origin" not in plain


def test_a_configured_origin_is_allowed_on_the_api_only(settings):
    settings.CORS_ALLOWED_ORIGINS = [ORIGIN]
    api = _preflight("/api/v1/tenant/")
    assert api["Access-Control-Allow-Origin"] == ORIGIN
    assert "authorization" in api["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in api
    assert "Access-Control-Allow-Origin" not in _preflight("/admin/login/")
    other = Client().options(
        "/api/v1/tenant/",
        HTTP_ORIGIN="https://evil.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
    )
    assert "Access-Control-Allow-Origin" not in other
