"""``manage.py create_api_key --tenant SLUG --name N``: issue a key; its secret is the last line.

The secret exists only in this command's output (only its hash is stored), so it is printed alone
on the last line of stdout for scripts: ``KEY=$(manage.py create_api_key ... | tail -1)``.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from tenants import services
from tenants.exceptions import QuotaExceeded
from tenants.management.base import OneLineErrorCommand
from tenants.models import ApiKey, Tenant

SCOPES = tuple(ApiKey.Scope.values)


def parse_scopes(raw: str) -> list[str]:
    scopes = sorted({part.strip() for part in raw.split(",") if part.strip()})
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown or not scopes:
        raise CommandError(
            f"Invalid scopes '{raw}'. Use a comma-separated list of: {', '.join(SCOPES)}."
        )
    return scopes


class Command(OneLineErrorCommand):
    help = "Create an API key for a tenant and print it (the key is the last line of output)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="The tenant's slug.")
        parser.add_argument("--name", required=True, help="What the key is for.")
        parser.add_argument(
            "--scopes", default=",".join(SCOPES), help="Comma-separated (default: read,write)."
        )
        parser.add_argument(
            "--expires-in-days", type=int, default=None, help="Default: never expires."
        )

    def handle(self, *args, tenant: str, name: str, scopes: str, **options) -> None:
        found = Tenant.objects.select_related("plan").filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"No tenant has the slug '{tenant}'.")
        if not name.strip() or len(name) > ApiKey._meta.get_field("name").max_length:
            raise CommandError("--name must be 1 to 100 characters.")
        days = options["expires_in_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be a positive number of days.")
        expires_at = timezone.now() + timedelta(days=days) if days else None
        try:
            issued = services.api_key_create(
                tenant=found, name=name, scopes=parse_scopes(scopes), expires_at=expires_at
            )
        except QuotaExceeded as error:
            raise CommandError(str(error.detail)) from error
        key = issued.api_key
        expiry = key.expires_at.isoformat(timespec="seconds") if key.expires_at else "never"
        self.stdout.write(
            f"Created API key '{key.name}' for tenant {found.slug} "
            f"(prefix {key.prefix}, scopes {','.join(key.scopes)}, expires {expiry}):"
        )
        self.stdout.write(issued.secret)
