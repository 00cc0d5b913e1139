"""Factories for the tenants app. Tenant-owned rows are written through ``all_tenants``."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tenants import services
from tenants.models import Membership, Plan, Tenant

PLAN_LIMITS = {
    "free": dict(requests_per_minute=60, max_members=3, max_api_keys=2, jobs_in_flight=2),
    "starter": dict(requests_per_minute=300, max_members=10, max_api_keys=5, jobs_in_flight=5),
    "pro": dict(requests_per_minute=1200, max_members=50, max_api_keys=25, jobs_in_flight=10),
    "enterprise": dict(
        requests_per_minute=6000, max_members=None, max_api_keys=100, jobs_in_flight=25
    ),
}


def plan(code: str = "pro") -> Plan:
    """The plan with that code (made by the data migration; remade after a flushing test)."""
    found, _ = Plan.objects.get_or_create(
        code=code, defaults={"name": code.title(), **PLAN_LIMITS.get(code, {})}
    )
    return found


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda tenant: f"Company {tenant.slug}")
    plan = factory.LazyFunction(plan)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.MEMBER

    @classmethod
    def _get_manager(cls, model_class):
        return model_class.all_tenants


def issue_key(tenant: Tenant, scopes: list[str] | None = None, name: str = "test key"):
    """A new API key of the tenant: ``(ApiKey, secret)``."""
    issued = services.api_key_create(tenant=tenant, name=name, scopes=scopes)
    return issued.api_key, issued.secret


def key_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client
