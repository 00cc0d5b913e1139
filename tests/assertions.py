"""Assertions shared by the API tests."""

from __future__ import annotations


def assert_error(response, status: int, code: str) -> dict:
    """The response is the one JSON error shape with this status and code; returns its ``error``."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]
