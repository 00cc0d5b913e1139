"""``ENABLE_CACHING=false``: no cache at all (DummyCache), and the API and health still work."""

from __future__ import annotations

import textwrap

import pytest
from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.child_process import run_django
from tests.factories import TenantFactory, issue_key, key_client

pytestmark = pytest.mark.django_db

URL = "/api/v1/tenant/"

_SETTINGS_WITH_CACHING_OFF = textwrap.dedent(
    """
    import json
    from django.conf import settings
    print(json.dumps(settings.CACHES))
    """
)


def test_enable_caching_false_configures_a_dummy_cache_but_keeps_the_rate_limit_counters():
    caches_setting = run_django(_SETTINGS_WITH_CACHING_OFF, ENABLE_CACHING="false")
    dummy = {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
    assert caches_setting.keys() == {"default", "global", "flags", "ratelimit"}
    assert caches_setting["default"] == caches_setting["global"] == caches_setting["flags"] == dummy
    # Counters are not a cache: with them in a DummyCache every tenant would be unlimited.
    assert caches_setting["ratelimit"]["BACKEND"] == "degradation.cache.ResilientRedisCache"
    assert caches_setting["ratelimit"]["OPTIONS"]["FALLBACK"] is False


def test_with_caching_off_the_api_resolves_reads_and_writes_through_sql(
    settings, client, django_capture_on_commit_callbacks
):
    dummy = {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
    settings.CACHES = {**settings.CACHES, "default": dummy, "global": dummy, "flags": dummy}
    assert isinstance(caches["default"], DummyCache)
    tenant = TenantFactory(slug="acme", name="Acme Ltd")
    _, secret = issue_key(tenant)
    api = key_client(secret)
    assert api.get(URL).status_code == 200

    with CaptureQueriesContext(connection) as second:
        response = api.get(URL)
    assert response.status_code == 200, response.content
    sql = " ".join(query["sql"] for query in second.captured_queries)
    assert '"tenants_apikey"' in sql and '"tenants_tenant"' in sql  # nothing was cached

    with django_capture_on_commit_callbacks(execute=True):
        assert api.patch(URL, {"name": "Acme Group"}, format="json").status_code == 200
    assert api.get(URL).json()["name"] == "Acme Group"

    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["cache"] == "ok"
