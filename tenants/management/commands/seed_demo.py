"""``manage.py seed_demo [--tenants N] [--rotate-demo-keys]``: idempotent demo data.

* One showcase tenant per plan (``demo-free`` ... ``demo-enterprise``) with an owner, an admin and a
  member user and an API key named "demo key". A key's secret exists only when it is made, so keys
  are made when missing (and printed then) or, with ``--rotate-demo-keys``, replaced and printed.
* With ``--tenants N``: bulk demo tenants ``demo-00001`` ... (plans round-robin), each with one
  owner. Written with ``bulk_create`` in batches (10,000 tenants take seconds, not minutes).

Demo users get one shared, precomputed unusable password: no hashing per user, no way to log in.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from tenants import resolution, services
from tenants.context import tenant_scope, unscoped
from tenants.exceptions import QuotaExceeded
from tenants.management.base import OneLineErrorCommand
from tenants.mirror import global_mirror
from tenants.models import ApiKey, Membership, Plan, Tenant

SHOWCASE_PLANS = ("free", "starter", "pro", "enterprise")
SHOWCASE_ROLES = (Membership.Role.OWNER, Membership.Role.ADMIN, Membership.Role.MEMBER)
DEMO_KEY_NAME = "demo key"
BATCH_SIZE = 2_000
MAX_BULK_TENANTS = 1_000_000


def demo_email(role: str, slug: str) -> str:
    return f"{role}@{slug}.example"


def bulk_slug(number: int) -> str:
    return f"demo-{number:05d}"


class Command(OneLineErrorCommand):
    help = (
        "Create demo tenants, users and keys. Safe to run again: it creates only what is missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tenants", type=int, default=0, help="Bulk demo tenants to have in total."
        )
        parser.add_argument(
            "--rotate-demo-keys",
            action="store_true",
            help="Replace each showcase tenant's demo key and print the new keys.",
        )

    def handle(self, *args, tenants: int, rotate_demo_keys: bool, **options) -> None:
        if not 0 <= tenants <= MAX_BULK_TENANTS:
            raise CommandError(f"--tenants must be between 0 and {MAX_BULK_TENANTS:,}.")
        plans = {plan.code: plan for plan in Plan.objects.filter(code__in=SHOWCASE_PLANS)}
        missing = [code for code in SHOWCASE_PLANS if code not in plans]
        if missing:
            raise CommandError(f"Missing plans: {', '.join(missing)}. Run `manage.py migrate`.")
        self.unusable_password = make_password(None)
        ordered = [plans[code] for code in SHOWCASE_PLANS]

        with unscoped():
            created, keys = 0, []
            for plan in ordered:
                tenant, was_created = self._showcase_tenant(plan)
                created += was_created
                key = self._demo_key(tenant, rotate=rotate_demo_keys)
                if key:
                    keys.append((tenant.slug, plan.code, key))
            bulk_created = sum(
                self._bulk_batch(range(start, min(start + BATCH_SIZE, tenants + 1)), ordered)
                for start in range(1, tenants + 1, BATCH_SIZE)
            )

        self.stdout.write(
            f"Showcase tenants: {created} created, {len(ordered) - created} already present."
        )
        if tenants:
            self.stdout.write(
                f"Bulk demo tenants: {bulk_created} created, "
                f"{tenants - bulk_created} already present."
            )
        self._print_keys(keys)

    @transaction.atomic
    def _showcase_tenant(self, plan: Plan) -> tuple[Tenant, bool]:
        slug = f"demo-{plan.code}"
        tenant = Tenant.objects.filter(slug=slug).first()
        created = tenant is None
        if created:
            tenant = services.tenant_create(slug=slug, name=f"Demo {plan.name}", plan=plan)
        User = get_user_model()
        with tenant_scope(tenant):
            for role in SHOWCASE_ROLES:
                email = demo_email(role, slug)
                user, _ = User.objects.get_or_create(
                    username=email, defaults={"email": email, "password": self.unusable_password}
                )
                Membership.objects.get_or_create(user=user, defaults={"role": role})
        return tenant, created

    def _demo_key(self, tenant: Tenant, *, rotate: bool) -> str | None:
        """The secret of a new demo key, or ``None`` when the tenant keeps the one it has."""
        with transaction.atomic(), tenant_scope(tenant):
            demo_keys = ApiKey.objects.filter(name=DEMO_KEY_NAME)
            if rotate:
                demo_keys.delete()  # per-row delete signals drop the cached resolutions
            elif demo_keys.filter(revoked_at__isnull=True).exists():
                return None
            try:
                return services.api_key_create(tenant=tenant, name=DEMO_KEY_NAME).secret
            except QuotaExceeded as error:
                self.stderr.write(f"No demo key for {tenant.slug}: {error.detail}")
                return None

    @transaction.atomic
    def _bulk_batch(self, numbers: Sequence[int], plans: list[Plan]) -> int:
        """Make the batch's missing tenants, owners and memberships; return the tenants made.

        Bulk inserts skip ``TenantScopedModel.save``, so ``tenant_id`` is set explicitly. No
        cross-tenant reference is possible by construction: a membership's only tenant-owned
        reference is its ``tenant_id``, looked up from the same slug its owner user is named by.
        """
        User = get_user_model()
        slugs = [bulk_slug(number) for number in numbers]
        owners = {slug: demo_email(Membership.Role.OWNER, slug) for slug in slugs}
        present = set(Tenant.objects.filter(slug__in=slugs).values_list("slug", flat=True))
        Tenant.objects.bulk_create(
            [
                Tenant(
                    slug=slug,
                    name=f"Demo company {number:05d}",
                    plan=plans[(number - 1) % len(plans)],
                )
                for number, slug in zip(numbers, slugs, strict=True)
                if slug not in present
            ],
            ignore_conflicts=True,
        )
        User.objects.bulk_create(
            [
                User(username=email, email=email, password=self.unusable_password)
                for email in owners.values()
            ],
            ignore_conflicts=True,
        )
        tenant_ids = dict(Tenant.objects.filter(slug__in=slugs).values_list("slug", "pk"))
        user_ids = dict(
            User.objects.filter(username__in=owners.values()).values_list("username", "pk")
        )
        Membership.all_tenants.bulk_create(
            [
                Membership(
                    tenant_id=tenant_ids[slug],
                    user_id=user_ids[owners[slug]],
                    role=Membership.Role.OWNER,
                )
                for slug in slugs
            ],
            ignore_conflicts=True,
        )
        new_slugs = [slug for slug in slugs if slug not in present]
        # A lookup of a not-yet-existing slug may have cached "missing"; drop it with the commit.
        transaction.on_commit(
            lambda: global_mirror.delete_many(
                [resolution.tenant_slug_cache_key(s) for s in new_slugs]
            )
        )
        return len(tenant_ids) - len(present)

    def _print_keys(self, keys: list[tuple[str, str, str]]) -> None:
        if not keys:
            self.stdout.write(
                "Demo keys: unchanged (a key is shown only when made; "
                "--rotate-demo-keys makes new ones)."
            )
            return
        self.stdout.write("Demo API keys (copy them now; they will not be shown again):")
        self.stdout.write(f"{'tenant':<18}{'plan':<12}key")
        for slug, plan, key in keys:
            self.stdout.write(f"{slug:<18}{plan:<12}{key}")
