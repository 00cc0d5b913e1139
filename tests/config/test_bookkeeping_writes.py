"""Bookkeeping writes (``tenants.bookkeeping``) never pin a unit of work's reads to the primary.

The router is asked as a request asks it, with a replica configured (never healthy here: whether a
read may leave the primary is decided before the replica's health, by the pin and the scope).
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from config.db_router import PIN_KEY_PREFIX, replica_pinning_scope
from degradation.breakers import breaker
from tenants.bookkeeping import bookkeeping_writes
from tenants.cache import global_cache
from tenants.context import tenant_scope
from tenants.models import ApiKey
from tests.factories import TenantFactory, issue_key

pytestmark = [pytest.mark.django_db, pytest.mark.redis]


@pytest.fixture
def replica_configured(settings):
    settings.READ_REPLICA_ALIASES = ["replica-never-healthy"]


def _pin(tenant) -> object:
    return global_cache().get(f"{PIN_KEY_PREFIX}:tenant:{tenant.pk}")


def test_a_bookkeeping_write_leaves_the_scope_unpinned(replica_configured):
    tenant = TenantFactory()
    api_key, _ = issue_key(tenant)
    with tenant_scope(tenant), replica_pinning_scope() as state:
        with bookkeeping_writes():
            ApiKey.all_tenants.filter(pk=api_key.pk).update(last_used_at=timezone.now())
        assert state.wrote is False
    assert _pin(tenant) is None


def test_an_ordinary_write_still_pins(replica_configured):
    tenant = TenantFactory()
    api_key, _ = issue_key(tenant)
    with tenant_scope(tenant), replica_pinning_scope() as state:
        ApiKey.all_tenants.filter(pk=api_key.pk).update(name="renamed")
        assert state.wrote is True
    assert _pin(tenant) is not None


def test_a_breaker_event_recorded_during_a_request_does_not_pin(replica_configured):
    tenant = TenantFactory()
    with tenant_scope(tenant), replica_pinning_scope() as state:
        breaker("webhooks").force("open")  # records a BreakerEvent row
        assert state.wrote is False
    assert _pin(tenant) is None
    breaker("webhooks").force("close")
