"""A database that cannot serve gives a fast 503 JSON answer, never a hang or an HTML 500.

Each case runs in a child process with the real settings built from the environment, because the
connection pool is made once per process from DATABASES.
"""

from __future__ import annotations

import pytest
from django.db import connection

from scripts.services import free_port
from tests.child_process import run_django

UNKNOWN_KEY = "ils_0123456789ab_" + "a" * 43  # well formed, so resolving it needs the database

HOLD_THE_ONLY_CONNECTION_THEN_REQUEST = f"""
import json, threading
from django.db import connection, transaction
from django.test import Client

held, release = threading.Event(), threading.Event()

def hold():
    with transaction.atomic():
        connection.ensure_connection()
        held.set()
        release.wait(30)
    connection.close()

holder = threading.Thread(target=hold)
holder.start()
assert held.wait(10)
response = Client().get("/api/v1/tenant/", HTTP_AUTHORIZATION="Bearer {UNKNOWN_KEY}", HTTP_HOST="localhost")
release.set()
holder.join()
print(json.dumps({{"status": response.status_code, "body": response.json(),
                  "retry_after": response.get("Retry-After")}}))
"""

REQUEST = f"""
import json
from django.test import Client
response = Client().get("/api/v1/tenant/", HTTP_AUTHORIZATION="Bearer {UNKNOWN_KEY}", HTTP_HOST="localhost")
print(json.dumps({{"status": response.status_code, "body": response.json(),
                  "retry_after": response.get("Retry-After")}}))
"""


def _run(code: str, database_url: str, **variables: str) -> dict:
    return run_django(code, drop_prefixes=("DATABASE_",), DATABASE_URL=database_url, **variables)


def _suite_database_url() -> str:
    """The suite's test database (migrated, so the request can run its queries)."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.mark.postgres
@pytest.mark.django_db
def test_an_exhausted_pool_answers_503_after_the_checkout_timeout():
    answer = _run(
        HOLD_THE_ONLY_CONNECTION_THEN_REQUEST,
        _suite_database_url(),
        DATABASE_POOL_MIN="0",
        DATABASE_POOL_MAX="1",
        DATABASE_POOL_TIMEOUT="0.5",
    )
    assert answer["status"] == 503
    assert answer["body"]["error"]["code"] == "database_busy"
    assert answer["retry_after"] == "1"


@pytest.mark.postgres
@pytest.mark.django_db
def test_with_a_free_connection_the_same_request_reaches_the_database():
    """The control case: the same request, pool not exhausted, gets past the database (401)."""
    answer = _run(REQUEST, _suite_database_url(), DATABASE_POOL_MAX="1")
    assert answer["status"] == 401
    assert answer["body"]["error"]["code"] == "invalid_api_key"


def test_a_database_that_does_not_answer_gives_503_json():
    nothing_listens = f"postgres://postgres@127.0.0.1:{free_port()}/ils"
    answer = _run(REQUEST, nothing_listens, DATABASE_POOL_TIMEOUT="1", DATABASE_CONNECT_TIMEOUT="1")
    assert answer["status"] == 503
    assert answer["body"]["error"]["code"] in {"database_busy", "database_unavailable"}
    assert answer["retry_after"]
