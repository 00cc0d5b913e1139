"""System checks of the storage app."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_files_storage(app_configs=None, **kwargs) -> list[Error]:
    """storage.E001: ``STORAGE_PROVIDER`` must name a configured storage (its bucket set)."""
    if settings.FILES_STORAGE not in settings.STORAGES:
        configured = sorted(set(settings.STORAGES) - {"default", "staticfiles"})
        return [
            Error(
                f"STORAGE_PROVIDER={settings.FILES_STORAGE!r} has no storage configured "
                f"(configured: {', '.join(configured)}).",
                hint="Set its bucket: AWS_S3_BUCKET for s3 and s3-compatible, "
                "CLOUDFLARE_R2_BUCKET (and CLOUDFLARE_R2_ACCOUNT_ID) for cloudflare-r2.",
                id="storage.E001",
            )
        ]
    return []
