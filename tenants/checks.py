"""System checks of the tenants app."""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, register

from tenants.scoping import TenantScopedManager, TenantScopedModel


@register(Tags.models)
def check_scoped_models(app_configs, **kwargs):
    """Every tenant-owned model keeps the fail-closed manager as ``objects`` (tenants.E001)."""
    errors = []
    for model in apps.get_models():
        if issubclass(model, TenantScopedModel) and not isinstance(
            model._default_manager, TenantScopedManager
        ):
            errors.append(
                Error(
                    f"{model._meta.label}: the default manager must be a TenantScopedManager.",
                    hint="Declare `objects = TenantScopedManager()` first; use all_tenants in ops code.",
                    obj=model,
                    id="tenants.E001",
                )
            )
    return errors


@register()
def check_tenancy_settings(app_configs, **kwargs):
    """Resolution cache and last-used interval must be positive (tenants.E002)."""
    errors = []
    for name in ("TENANT_RESOLUTION_CACHE_SECONDS", "API_KEY_LAST_USED_INTERVAL_SECONDS"):
        if getattr(settings, name) <= 0:
            errors.append(Error(f"{name} must be a positive number of seconds.", id="tenants.E002"))
    return errors
