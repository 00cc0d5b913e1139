"""Drop cached resolutions, and invalidate the tenant's cache, when the rows behind them change.

Deletion waits for the transaction to commit: dropping the entry earlier would let a concurrent
request cache the old row again before the new one is visible. Resolutions live in the global cache,
whose keys are the same in and out of any tenant scope; the deletion is announced to every
process's mirror of it (``tenants.mirror``).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from tenants import resolution
from tenants.cache import cache_invalidated_by
from tenants.mirror import global_mirror
from tenants.models import ApiKey, Membership, Plan, Tenant

# The tenant's cached answers (GET /api/v1/tenant/ shows its plan, members and keys).
cache_invalidated_by(Membership, ApiKey)
cache_invalidated_by(Tenant, tenant_ids=lambda tenant: [tenant.pk])
cache_invalidated_by(
    Plan,
    tenant_ids=lambda plan: Tenant.objects.filter(plan_id=plan.pk).values_list("pk", flat=True),
)


def _drop_after_commit(*keys: str) -> None:
    transaction.on_commit(lambda: global_mirror.delete_many(list(keys)))


@receiver([post_save, post_delete], sender=ApiKey)
def _api_key_changed(sender, instance: ApiKey, **kwargs) -> None:
    _drop_after_commit(resolution.api_key_cache_key(instance.prefix))


@receiver([post_save, post_delete], sender=Tenant)
def _tenant_changed(sender, instance: Tenant, **kwargs) -> None:
    _drop_after_commit(
        resolution.tenant_cache_key(instance.pk), resolution.tenant_slug_cache_key(instance.slug)
    )


@receiver([post_save, post_delete], sender=Plan)
def _plan_changed(sender, instance: Plan, **kwargs) -> None:
    _drop_after_commit(resolution.plan_cache_key(instance.pk))


@receiver([post_save, post_delete], sender=Membership)
def _membership_changed(sender, instance: Membership, **kwargs) -> None:
    _drop_after_commit(resolution.membership_cache_key(instance.tenant_id, instance.user_id))
