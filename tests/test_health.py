"""``/health/live`` and ``/health/ready``, with real faults: a cache and a database nobody answers."""

from __future__ import annotations

import textwrap

import pytest
from django.core.cache import cache, caches
from django_redis.cache import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError

from scripts.services import free_port
from tests.child_process import run_django

pytestmark = pytest.mark.django_db


def _unreachable_redis_cache() -> dict:
    """A django-redis cache on a local port where nothing listens (connections are refused)."""
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
            },
        }
    }


def test_live_answers_ok(client):
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_ready_answers_ok_when_database_and_cache_answer(client):
    response = client.get("/health/ready")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "storage": "ok"},
        "down": [],
    }


def test_health_probes_only_answer_get(client):
    response = client.post("/health/ready")
    assert response.status_code == 405


def test_ready_answers_503_naming_the_cache_when_redis_is_unreachable(client, settings):
    settings.CACHES = _unreachable_redis_cache()
    # The setting_changed signal resets django.core.cache's handler: the proxy now uses the new cache.
    assert isinstance(caches["default"], RedisCache)
    assert caches["default"]._server == settings.CACHES["default"]["LOCATION"]
    with pytest.raises(RedisConnectionError):
        cache.set("health:test", "1")

    response = client.get("/health/ready")

    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"] == {"database": "ok", "cache": "down", "storage": "ok"}
    assert body["down"] == ["cache"]


_READY_WITH_DATABASE_URL = textwrap.dedent(
    """
    import json
    from django.test import Client
    response = Client().get("/health/ready", HTTP_HOST="localhost")
    print(json.dumps({"status": response.status_code, "body": response.json()}))
    """
)


def test_ready_answers_503_naming_the_database_when_it_is_unreachable():
    """A fresh process whose DATABASE_URL points at a port where no PostgreSQL listens.

    Django keeps its database connections per process, so the fault is set up in a child process
    rather than by rewiring this test run's own database connection.
    """
    answer = run_django(
        _READY_WITH_DATABASE_URL,
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/nowhere",
        DJANGO_ALLOWED_HOSTS="localhost",
        LOG_LEVEL="CRITICAL",
    )
    assert answer["status"] == 503
    assert answer["body"]["status"] == "down"
    assert answer["body"]["checks"] == {"database": "down", "cache": "ok", "storage": "ok"}
    assert answer["body"]["down"] == ["database"]
