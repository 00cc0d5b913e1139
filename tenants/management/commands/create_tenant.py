"""``manage.py create_tenant --slug S --name N --plan CODE``: make a tenant through the service."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import IntegrityError

from tenants import services
from tenants.management.base import OneLineErrorCommand
from tenants.models import Plan


def validation_message(error: ValidationError) -> str:
    """A ``ValidationError`` as one line: ``field: message; field: message``."""
    if hasattr(error, "error_dict"):
        return "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items()
        )
    return " ".join(error.messages)


class Command(OneLineErrorCommand):
    help = "Create a tenant on a plan."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True, help="Subdomain and X-Tenant name.")
        parser.add_argument("--name", required=True, help="Display name.")
        parser.add_argument("--plan", required=True, help="Plan code, e.g. free or pro.")

    def handle(self, *args, slug: str, name: str, plan: str, **options) -> None:
        found = Plan.objects.filter(code=plan).first()
        if found is None:
            codes = ", ".join(Plan.objects.values_list("code", flat=True)) or "none; run migrate"
            raise CommandError(f"Unknown plan '{plan}'. Valid plans: {codes}.")
        try:
            tenant = services.tenant_create(slug=slug, name=name, plan=found)
        except ValidationError as error:
            raise CommandError(f"Invalid tenant: {validation_message(error)}") from error
        except IntegrityError as error:  # a concurrent create won the slug
            raise CommandError(f"Invalid tenant: slug '{slug}' is taken.") from error
        self.stdout.write(
            f"Created tenant {tenant.slug} ({tenant.name}) on plan {found.code}, id {tenant.pk}."
        )
