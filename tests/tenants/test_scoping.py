"""``TenantScopedModel``: the fail-closed manager, tenant binding on save, cross-tenant checks."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection, models
from django.test.utils import isolate_apps

from metrics.models import TenantUsageHour
from queues.models import Job
from storage.models import MigrationItem
from tenants import checks
from tenants.context import tenant_scope
from tenants.exceptions import CrossTenantReference, TenantScopeMissing
from tenants.models import ApiKey, Invitation, Membership
from tenants.scoping import TenantScopedManager, TenantScopedModel
from tests.factories import MembershipFactory, TenantFactory, UserFactory, issue_key

pytestmark = pytest.mark.django_db

SCOPED_MODELS = [m for m in apps.get_models() if issubclass(m, TenantScopedModel)]


@pytest.fixture
def two_tenants():
    tenant_a, tenant_b = TenantFactory(slug="scope-a"), TenantFactory(slug="scope-b")
    members_a = [MembershipFactory(tenant=tenant_a) for _ in range(2)]
    members_b = [MembershipFactory(tenant=tenant_b) for _ in range(3)]
    return tenant_a, tenant_b, members_a, members_b


def test_the_known_models_are_scoped():
    assert {Membership, ApiKey} <= set(SCOPED_MODELS)


def test_objects_filters_to_the_current_tenant(two_tenants):
    tenant_a, tenant_b, members_a, members_b = two_tenants
    with tenant_scope(tenant_a):
        assert list(Membership.objects.all()) == members_a
        assert Membership.objects.count() == 2
        assert not Membership.objects.filter(pk=members_b[0].pk).exists()
        with pytest.raises(Membership.DoesNotExist):
            Membership.objects.get(pk=members_b[0].pk)
        # a filter naming the other tenant explicitly still cannot escape the scope
        assert not Membership.objects.filter(tenant=tenant_b).exists()
        assert not Membership.objects.filter(pk__in=[m.pk for m in members_b]).update(role="owner")
    with tenant_scope(tenant_b):
        assert list(Membership.objects.all()) == members_b
    assert {m.role for m in Membership.all_tenants.filter(tenant=tenant_b)} == {"member"}


def test_reverse_relations_stay_inside_the_scope(two_tenants):
    tenant_a, tenant_b, members_a, _ = two_tenants
    with tenant_scope(tenant_a):
        assert list(tenant_b.tenants_membership_set.all()) == []
        assert list(tenant_a.tenants_membership_set.all()) == members_a
    with pytest.raises(TenantScopeMissing):
        list(tenant_a.tenants_membership_set.all())


def test_all_tenants_sees_every_tenant(two_tenants):
    tenant_a, _, members_a, members_b = two_tenants
    assert list(Membership.all_tenants.order_by("id")) == members_a + members_b
    with tenant_scope(tenant_a):
        assert Membership.all_tenants.count() == 5


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m._meta.label)
def test_objects_raises_outside_a_scope(model):
    with pytest.raises(TenantScopeMissing):
        model.objects.count()
    with pytest.raises(TenantScopeMissing):
        list(model.objects.all())


def test_save_outside_a_scope_without_a_tenant_raises():
    user = UserFactory()
    with pytest.raises(TenantScopeMissing):
        Membership(user=user).save()
    assert Membership.all_tenants.count() == 0


def test_save_inside_a_scope_binds_the_tenant(two_tenants):
    tenant_a, *_ = two_tenants
    with tenant_scope(tenant_a):
        membership = Membership(user=UserFactory())
        membership.save()
    assert membership.tenant_id == tenant_a.pk


def test_save_outside_a_scope_with_an_explicit_tenant_works(two_tenants):
    tenant_a, *_ = two_tenants
    membership = Membership(tenant=tenant_a, user=UserFactory())
    membership.save()
    assert Membership.all_tenants.get(pk=membership.pk).tenant_id == tenant_a.pk


def test_save_of_another_tenants_row_inside_a_scope_raises(two_tenants):
    tenant_a, tenant_b, _, members_b = two_tenants
    row_of_b = members_b[0]
    with tenant_scope(tenant_a):
        row_of_b.role = Membership.Role.OWNER
        with pytest.raises(CrossTenantReference):
            row_of_b.save()
        with pytest.raises(CrossTenantReference):
            Membership(tenant=tenant_b, user=UserFactory()).save()
    assert Membership.all_tenants.get(pk=row_of_b.pk).role == Membership.Role.MEMBER
    assert Membership.all_tenants.filter(tenant=tenant_b).count() == 3


def test_api_key_save_of_another_tenant_inside_a_scope_raises(two_tenants):
    tenant_a, tenant_b, *_ = two_tenants
    key_of_b, _ = issue_key(tenant_b)
    with tenant_scope(tenant_a):
        key_of_b.name = "renamed"
        with pytest.raises(CrossTenantReference):
            key_of_b.save()
    assert ApiKey.all_tenants.get(pk=key_of_b.pk).name == "test key"


def test_the_scoped_manager_check_passes_for_the_real_models():
    assert [e for e in checks.check_scoped_models(None) if e.id == "tenants.E001"] == []
    for model in SCOPED_MODELS:
        assert isinstance(model._default_manager, TenantScopedManager), model


@isolate_apps("tenants")
def test_the_scoped_manager_check_flags_a_model_without_it(monkeypatch):
    class Leaky(TenantScopedModel):
        objects = models.Manager()

        class Meta(TenantScopedModel.Meta):
            app_label = "tenants"
            default_manager_name = "objects"

    monkeypatch.setattr(checks.apps, "get_models", lambda: [Membership, Leaky])
    errors = checks.check_scoped_models(None)
    assert [(e.id, e.obj) for e in errors] == [("tenants.E001", Leaky)]


@isolate_apps("tenants")
def test_a_foreign_key_to_another_tenants_row_raises(two_tenants):
    """There is no FK between tenant tables yet, so a model made only for this test has one.

    It lives in an isolated app registry and has no table: the check runs before the INSERT, so
    the cases that must raise never reach the database. (Its ``tenant`` relation is unresolved in
    that registry, so the rows name their tenant by id and cannot take it from a scope.)
    """
    tenant_a, _, members_a, members_b = two_tenants

    class Note(TenantScopedModel):
        membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="+")

        class Meta(TenantScopedModel.Meta):
            app_label = "tenants"

    # the related row already loaded (the check reads its tenant_id)
    with pytest.raises(CrossTenantReference, match="membership"):
        Note(tenant_id=tenant_a.pk, membership=members_b[0]).save()
    # only the id set (the check looks the row's tenant up through all_tenants)
    with pytest.raises(CrossTenantReference, match="membership"):
        Note(tenant_id=tenant_a.pk, membership_id=members_b[0].pk).save()
    # a reference inside the tenant passes the check
    Note(tenant_id=tenant_a.pk, membership=members_a[0])._check_references_stay_in_tenant()
    Note(tenant_id=tenant_a.pk, membership_id=members_a[1].pk)._check_references_stay_in_tenant()
    Note(tenant_id=tenant_a.pk, membership=None)._check_references_stay_in_tenant()


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m._meta.label)
def test_tenant_and_id_are_unique_together(model):
    unique_field_sets = [
        tuple(c.fields)
        for c in model._meta.constraints
        if isinstance(c, models.UniqueConstraint) and c.condition is None
    ]
    assert ("tenant", "id") in unique_field_sets
    # every unique constraint includes the tenant (sharding by tenant keeps them enforceable)
    for fields in unique_field_sets:
        assert "tenant" in fields, (model, fields)
    for field in model._meta.concrete_fields:
        assert not field.unique or field.primary_key, (model, field.name)
    assert isinstance(model._meta.pk, models.BigAutoField | models.UUIDField)


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m._meta.label)
def test_tenant_and_id_unique_constraint_exists_in_the_database(model):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    unique_columns = [
        c["columns"] for c in constraints.values() if c["unique"] and not c["primary_key"]
    ]
    assert ["tenant_id", "id"] in unique_columns


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m._meta.label)
def test_indexes_lead_with_the_tenant(model):
    """Indexes lead with tenant_id, except the documented lookups made before the tenant is known
        (an API key by prefix, an invitation by its token's hash), the job rescuer's scan of running
        jobs across tenants (a partial index), the console's and pruner's scan of finished jobs by
        time, migrate_storage's walk of one migration's manifest (all its tenants at once), and the
    per-tenant usage rows of one hour across tenants (the top-tenants gauge, rollups, pruning)."""
    exceptions = {
        (ApiKey, "tenants_apikey_prefix_idx"),
        (Invitation, "tenants_invitation_token_idx"),
        (Job, "queues_job_lease_idx"),
        (Job, "queues_job_finished_idx"),
        (MigrationItem, "storage_item_state_idx"),
        (TenantUsageHour, "metrics_usage_hour_idx"),
    }
    for index in model._meta.indexes:
        if (model, index.name) in exceptions:
            continue
        assert index.fields[0] in ("tenant", "tenant_id"), (model, index.name)


def test_bulk_create_binds_rows_to_the_scope_and_refuses_another_tenant(two_tenants):
    tenant_a, tenant_b, _, _ = two_tenants
    users = [UserFactory() for _ in range(3)]
    with tenant_scope(tenant_a):
        created = Membership.objects.bulk_create([Membership(user=users[0])])
        assert created[0].tenant_id == tenant_a.pk
        with pytest.raises(CrossTenantReference):
            Membership.objects.bulk_create(
                [Membership(user=users[1]), Membership(user=users[2], tenant=tenant_b)]
            )
    assert not Membership.all_tenants.filter(user__in=users[1:]).exists()
    with pytest.raises(TenantScopeMissing):
        Membership.objects.bulk_create([Membership(user=users[1], tenant=tenant_a)])
