"""Model rules of the tenants app that no API path reaches directly."""

import pytest
from django.core.exceptions import ValidationError

from tenants.models import MAX_LIMIT_VALUE, Tenant
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def test_a_tenants_slug_cannot_change_after_creation():
    tenant = TenantFactory(slug="fixed")
    reloaded = Tenant.objects.get(pk=tenant.pk)
    reloaded.slug = "renamed"
    with pytest.raises(ValidationError):
        reloaded.save()
    assert Tenant.objects.get(pk=tenant.pk).slug == "fixed"
    reloaded.slug, reloaded.name = "fixed", "Renamed Inc"
    reloaded.save()
    assert Tenant.objects.get(pk=tenant.pk).name == "Renamed Inc"


@pytest.mark.parametrize("slug", ["-lead", "trail-", "UPPER", "dot.ted", "www", "a" * 64, ""])
def test_invalid_and_reserved_slugs_are_rejected(slug):
    with pytest.raises(ValidationError) as error:
        Tenant(slug=slug, name="x", plan=TenantFactory().plan).full_clean()
    assert "slug" in error.value.message_dict


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        {"max_members": -1},
        {"max_members": "5"},
        {"no_such_limit": 1},
        {"max_members": True},
        {"storage_bytes": MAX_LIMIT_VALUE + 1},
    ],
)
def test_bad_limit_overrides_are_rejected(overrides):
    tenant = TenantFactory()
    tenant.limit_overrides = overrides
    with pytest.raises(ValidationError) as error:
        tenant.full_clean()
    assert "limit_overrides" in error.value.message_dict


def test_overrides_replace_only_the_limits_they_name():
    tenant = TenantFactory(limit_overrides={"max_members": 7, "jobs_per_day": None})
    limits = tenant.limits()
    assert limits["max_members"] == 7
    assert limits["jobs_per_day"] is None
    assert limits["max_api_keys"] == tenant.plan.max_api_keys
