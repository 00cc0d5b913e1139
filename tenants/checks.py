"""System checks of the tenants app."""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

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


@register(Tags.security, deploy=True)
def check_client_address_behind_a_proxy(app_configs, **kwargs):
    """Behind a proxy every request comes from the proxy's address: failed-key limits per address
    would then count every client together (tenants.W001)."""
    behind_proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None) is not None
    if behind_proxy and not settings.RATELIMIT_IP_META_KEY:
        return [
            Warning(
                "The deployment is behind a proxy (DJANGO_BEHIND_TLS_PROXY) but no client address "
                "header is configured: failed API-key attempts are counted per proxy address.",
                hint="Set RATELIMIT_IP_META_KEY to the header your proxy overwrites with the "
                "client's address, e.g. HTTP_X_REAL_IP (docs/RATELIMITS.md).",
                id="tenants.W001",
            )
        ]
    return []
