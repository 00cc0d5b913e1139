"""Quotas hold under concurrency: many writers at once never push a tenant past its plan's limit.

Each thread has its own database connection and transaction, as concurrent requests would; only
the row lock taken by the services (``SELECT ... FOR UPDATE`` on the tenant) keeps the count honest.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from tenants import services
from tenants.exceptions import QuotaExceeded
from tenants.models import ApiKey, Invitation, Membership, Tenant
from tests.factories import TenantFactory, plan

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WRITERS = 12


def _race(action: Callable[[int], object]) -> Counter:
    """Run ``action(i)`` for every writer at the same instant; count outcomes by kind."""
    barrier = threading.Barrier(WRITERS, timeout=30)

    def attempt(i: int) -> str:
        try:
            barrier.wait()
            action(i)
            return "created"
        except QuotaExceeded:
            return "quota_exceeded"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        return Counter(pool.map(attempt, range(WRITERS)))


@pytest.fixture
def free_tenant() -> Tenant:
    free = plan("free")
    assert (free.max_members, free.max_api_keys) == (3, 2)
    return TenantFactory(plan=free)


def test_concurrent_member_additions_stop_exactly_at_the_limit(free_tenant):
    User = get_user_model()
    users = User.objects.bulk_create(
        User(username=f"racer{i}", email=f"racer{i}@example.com") for i in range(WRITERS)
    )

    outcomes = _race(lambda i: services.membership_add(tenant=free_tenant, user=users[i]))

    assert outcomes == Counter(created=3, quota_exceeded=WRITERS - 3)
    assert Membership.all_tenants.filter(tenant=free_tenant).count() == 3


def test_concurrent_api_key_creations_stop_exactly_at_the_limit(free_tenant):
    outcomes = _race(lambda i: services.api_key_create(tenant=free_tenant, name=f"racer {i}"))

    assert outcomes == Counter(created=2, quota_exceeded=WRITERS - 2)
    assert ApiKey.all_tenants.filter(tenant=free_tenant, revoked_at__isnull=True).count() == 2


def test_concurrent_invitation_acceptances_through_the_api_stop_at_the_limit(free_tenant):
    """Twelve invitees accept at once: three become members, nine get the quota error, and
    their invitations stay open (to accept once a seat frees up)."""
    User = get_user_model()
    clients, tokens = [], []
    for i in range(WRITERS):
        user = User.objects.create(username=f"caller{i}", email=f"caller{i}@example.com")
        tokens.append(services.invitation_create(tenant=free_tenant, email=user.email).token)
        client = APIClient()
        client.force_login(user)
        clients.append(client)
    barrier = threading.Barrier(WRITERS, timeout=30)

    def accept(i: int) -> int:
        try:
            barrier.wait()
            response = clients[i].post(
                "/api/v1/invitations/accept/", {"token": tokens[i]}, format="json"
            )
            if response.status_code == 403:
                assert response.json()["error"]["code"] == "quota_exceeded"
            return response.status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        statuses = Counter(pool.map(accept, range(WRITERS)))

    assert statuses == Counter({200: 3, 403: WRITERS - 3})
    assert Membership.all_tenants.filter(tenant=free_tenant).count() == 3
    invitations = Invitation.all_tenants.filter(tenant=free_tenant)
    assert Counter(invitations.values_list("status", flat=True)) == Counter(
        {"accepted": 3, "pending": WRITERS - 3}
    )
