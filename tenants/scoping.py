"""``TenantScopedModel``: the base of every tenant-owned table, and the manager that fails closed.

Invariants (the tenant contract of DESIGN.md):

* ``Model.objects`` filters to the current tenant and RAISES ``TenantScopeMissing`` when there is no
  scope. A query that forgot its tenant is an error, never another tenant's data.
* ``Model.all_tenants`` is the explicitly named, unfiltered manager for admin and ops code.
* Saving a row outside a scope needs an explicit ``tenant``; saving inside a scope under another
  tenant, or pointing a foreign key at another tenant's row, raises ``CrossTenantReference``.
* Sharding-ready: ``tenant_id`` on every row, ``(tenant_id, id)`` unique, big-integer keys.
"""

from __future__ import annotations

from django.db import models

from tenants.context import current_tenant, require_tenant
from tenants.exceptions import CrossTenantReference


class TenantScopedQuerySet(models.QuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        """Bulk inserts skip ``save()``, so bind and check each row's tenant here instead."""
        tenant = require_tenant()
        objs = list(objs)
        for obj in objs:
            if obj.tenant_id is None:
                obj.tenant = tenant
            elif obj.tenant_id != tenant.pk:
                raise CrossTenantReference(
                    f"Cannot bulk-create a {type(obj).__name__} of tenant {obj.tenant_id} "
                    f"inside the scope of tenant {tenant.pk}."
                )
        return super().bulk_create(objs, *args, **kwargs)


class TenantScopedManager(models.Manager.from_queryset(TenantScopedQuerySet)):
    """Filters every query to the current tenant; raises outside a tenant scope.

    The filter is bound when the queryset is created (``Model.objects.filter(...)``), so build
    querysets inside the scope that should own them.
    """

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(tenant_id=require_tenant().pk)


class TenantScopedModel(models.Model):
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.CASCADE,
        related_name="%(app_label)s_%(class)s_set",
        editable=False,
    )

    objects = TenantScopedManager()
    all_tenants = models.Manager()  # noqa: DJ012 (a manager, not a field)

    class Meta:
        abstract = True
        base_manager_name = "all_tenants"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "id"], name="%(app_label)s_%(class)s_tenant_id_uniq"
            )
        ]

    def save(self, *args, **kwargs) -> None:
        self._bind_tenant()
        self._check_references_stay_in_tenant()
        super().save(*args, **kwargs)

    def _bind_tenant(self) -> None:
        scope = current_tenant()
        if self.tenant_id is None:
            self.tenant = require_tenant()
        elif scope is not None and scope.pk != self.tenant_id:
            raise CrossTenantReference(
                f"Cannot save a {type(self).__name__} of tenant {self.tenant_id} "
                f"inside the scope of tenant {scope.pk}."
            )

    def _check_references_stay_in_tenant(self) -> None:
        for field in self._meta.concrete_fields:
            related = field.related_model
            if not field.many_to_one or related is None or field.name == "tenant":
                continue
            if not issubclass(related, TenantScopedModel):
                continue
            target_id = getattr(self, field.attname)
            if target_id is None:
                continue
            cached = field.get_cached_value(self, default=None)
            target_tenant = (
                cached.tenant_id
                if cached is not None
                else related.all_tenants.filter(pk=target_id)
                .values_list("tenant_id", flat=True)
                .first()
            )
            if target_tenant != self.tenant_id:
                raise CrossTenantReference(
                    f"{type(self).__name__}.{field.name} points at a row of another tenant."
                )
