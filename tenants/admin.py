"""Django Admin of plans, tenants, memberships, invitations and API keys (staff only).

Tenancy rules here:

* Tenant-owned models are listed through their explicit ``all_tenants`` manager: the admin is ops
  code and works across tenants, while ``Model.objects`` would raise outside a tenant scope.
* Writes of a tenant-owned row run in that row's tenant scope, so an admin page opened on a
  tenant's subdomain (which the middleware scopes to that tenant) still writes the right tenant.
* Status changes, key creation and revocation, and every membership change go through
  ``services`` one row at a time, never through ``QuerySet.update`` or a bare ``save``: the row
  lock, the quotas and the last-owner rule are the API's, and the services' saves fire the signals
  that drop cached resolutions, so the change is seen by the API on its next request.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from tenants import services
from tenants.context import tenant_scope
from tenants.forms import (
    ApiKeyAdminForm,
    MembershipAdminForm,
    TenantAdminForm,
    check_with_service,
)
from tenants.limits.admin_usage import (
    NEAR_LIMIT,
    UsageFilter,
    count_per_tenant,
    near_limit_expression,
)
from tenants.limits.registry import LIMIT_NAMES, resource
from tenants.limits.usage import QuotaLine, quota_report
from tenants.models import ApiKey, Invitation, Membership, Plan, Tenant

admin.site.site_header = admin.site.site_title = "ILS platform admin"
admin.site.index_title = "Operations"


def _amount(name: str, value: int) -> str:
    text = f"{value:,}"
    return f"{text} ({filesizeformat(value)})" if resource(name).is_bytes else text


def _usage_row(line: QuotaLine) -> tuple[str, str, SafeString, str]:
    label = line.label
    limit = "unlimited" if line.limit is None else _amount(line.resource, line.limit)
    if line.used is None:
        figures = f"per file, at most {limit}"
    else:
        figures = f"{_amount(line.resource, line.used)} / {limit}"
    percent = line.percent
    if percent is None:
        bar = format_html("{}", "")
    else:
        colour = "#ba2121" if percent >= 100 else "#c78a00" if percent >= 80 else "#417690"
        bar = format_html(
            '<span class="quota-bar" title="{}%" style="display:inline-block;width:120px;'
            'height:10px;background:#eee;border:1px solid #ccc;vertical-align:middle">'
            '<span style="display:block;height:100%;width:{}%;background:{}"></span></span> {}%',
            percent,
            min(percent, 100),
            colour,
            percent,
        )
    resets = f"resets {line.resets_at:%Y-%m-%d %H:%M} UTC" if line.resets_at else ""
    return label, figures, bar, resets


#: A changelist of a big table counts at most this many rows (then shows "10000+" pages' worth).
COUNT_CAP = 10_000


class CappedCountPaginator(Paginator):
    """Counts at most ``COUNT_CAP + 1`` rows (``COUNT(*)`` over a ``LIMIT`` subquery), so a page
    of a million-row table costs a bounded count."""

    @cached_property
    def count(self) -> int:
        return self.object_list[: COUNT_CAP + 1].count()


class AllTenantsAdmin(admin.ModelAdmin):
    """Admin of a tenant-owned model: reads through ``all_tenants``, writes in the row's scope."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = self.model.all_tenants.get_queryset()
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def save_model(self, request, obj, form, change) -> None:
        with tenant_scope(obj.tenant):
            obj.save()

    def delete_model(self, request, obj) -> None:
        with tenant_scope(obj.tenant):
            obj.delete()

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        readonly = tuple(super().get_readonly_fields(request, obj))
        return (*readonly, "tenant") if obj is not None else readonly


class ReadOnlyAdmin(admin.ModelAdmin):
    """View only: no add, change or delete for anyone (rows that only the code writes: the
    storage commands and jobs, the metrics flushes)."""

    actions = None

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("code", "name", *LIMIT_NAMES)
    list_editable = LIMIT_NAMES
    search_fields = ("code", "name")
    readonly_fields = ("created_at", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        # Commands and the demo seed find plans by code.
        return (*self.readonly_fields, "code") if obj is not None else self.readonly_fields


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantAdminForm
    list_display = (
        "slug",
        "name",
        "plan",
        "status",
        "members_count",
        "active_api_keys_count",
        "near_limit",
        "created_at",
    )
    list_filter = ("plan", "status", UsageFilter)
    list_select_related = ("plan",)
    search_fields = ("slug", "name")
    fields = (
        "slug",
        "name",
        "plan",
        "status",
        "limit_overrides",
        "usage",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("usage", "created_at", "updated_at")
    actions = ("suspend_tenants", "reactivate_tenants")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(
                members_count=count_per_tenant(Membership),
                active_api_keys_count=count_per_tenant(ApiKey, revoked_at__isnull=True),
                **{NEAR_LIMIT: near_limit_expression()},
            )
        )

    def get_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        fields = tuple(super().get_fields(request, obj))
        return fields if obj is not None else tuple(f for f in fields if f != "usage")

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        # The slug names the tenant's subdomain, cache keys and API answers: fixed once made.
        return (*self.readonly_fields, "slug") if obj is not None else self.readonly_fields

    @admin.display(description="Members", ordering="members_count")
    def members_count(self, tenant: Tenant) -> int:
        return tenant.members_count

    @admin.display(description="Active API keys", ordering="active_api_keys_count")
    def active_api_keys_count(self, tenant: Tenant) -> int:
        return tenant.active_api_keys_count

    @admin.display(description="Near limit", ordering=NEAR_LIMIT)
    def near_limit(self, tenant: Tenant) -> str:
        """The highest percentage over the counted quotas (``tenants.limits.admin_usage``)."""
        percent = getattr(tenant, NEAR_LIMIT)
        return "-" if percent is None else f"{percent}%"

    @admin.display(description="Usage")
    def usage(self, tenant: Tenant) -> str:
        """Each quota: used / limit and a bar, from ``usage.quota_report`` (live figures).

        Read from the saved row: a form sent back with errors has put its unsaved (maybe invalid)
        plan and overrides on ``tenant``.
        """
        saved = Tenant.objects.select_related("plan").get(pk=tenant.pk)
        rows = format_html_join(
            "\n",
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
            (_usage_row(line) for line in quota_report(saved)),
        )
        return format_html('<table class="quota-usage">{}</table>', rows)

    def _set_status(self, request: HttpRequest, queryset: QuerySet, status: Tenant.Status) -> None:
        changed = 0
        for tenant in queryset.exclude(status=status).select_related(None):
            services.tenant_set_status(tenant=tenant, status=status)
            changed += 1
        self.message_user(request, f"{changed} tenant(s) now {status.label.lower()}.")

    @admin.action(description="Suspend selected tenants", permissions=["change"])
    def suspend_tenants(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_status(request, queryset, Tenant.Status.SUSPENDED)

    @admin.action(description="Reactivate selected tenants", permissions=["change"])
    def reactivate_tenants(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_status(request, queryset, Tenant.Status.ACTIVE)


@admin.register(Membership)
class MembershipAdmin(AllTenantsAdmin):
    """Memberships, written only through ``services`` (the form checks with the same services)."""

    form = MembershipAdminForm
    list_display = ("tenant", "user", "role", "created_at")
    list_filter = ("role",)
    list_select_related = ("tenant", "user")
    search_fields = ("tenant__slug", "user__email")
    autocomplete_fields = ("user",)
    fields = ("tenant", "user", "role")

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        # Another user is another membership: remove this one and add that one.
        readonly = super().get_readonly_fields(request, obj)
        return (*readonly, "user") if obj is not None else readonly

    def save_model(self, request, obj, form, change) -> None:
        if change:
            services.membership_change_role(membership=obj, role=obj.role)
            return
        membership = services.membership_add(
            tenant=form.cleaned_data["tenant"], user=obj.user, role=obj.role
        )
        obj.pk, obj.created_at = membership.pk, membership.created_at

    def delete_model(self, request, obj) -> None:
        services.membership_remove(membership=obj)

    def delete_queryset(self, request, queryset) -> None:
        for membership in queryset.select_related("tenant"):
            services.membership_remove(membership=membership)

    def get_deleted_objects(self, objs, request: HttpRequest):
        """Refuse (as "protected") what ``services.membership_remove`` would refuse (the last
        owner of a tenant that stays): removing them all is tried, then rolled back."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        pks = [membership.pk for membership in objs]
        trial = Membership.all_tenants.filter(pk__in=pks).select_related("tenant", "user")

        def remove_all() -> None:
            for membership in trial:
                services.membership_remove(membership=membership)

        try:
            check_with_service(remove_all)
        except ValidationError as error:
            protected.extend(error.messages)
        return deleted, counts, perms_needed, protected


class InvitationStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [*Invitation.Status.choices, ("expired", "Expired")]

    def queryset(self, request, queryset):
        now = Now()
        if self.value() == "expired":
            return queryset.filter(status=Invitation.Status.PENDING, expires_at__lte=now)
        if self.value() == Invitation.Status.PENDING:
            return queryset.filter(status=self.value(), expires_at__gt=now)
        if self.value():
            return queryset.filter(status=self.value())
        return queryset


@admin.register(Invitation)
class InvitationAdmin(AllTenantsAdmin):
    """Invitations, read-only: they are made through the API and accepted by the invitee; staff
    add a member directly under Memberships. The token's hash is never shown."""

    list_display = (
        "email",
        "tenant",
        "role",
        "status_shown",
        "invited_by",
        "invited_by_key",
        "created_at",
        "expires_at",
    )
    list_filter = (InvitationStatusFilter, "role")
    list_select_related = ("tenant", "invited_by", "invited_by_key")
    search_fields = ("email", "tenant__slug")
    fields = (
        "tenant",
        "email",
        "role",
        "status_shown",
        "invited_by",
        "invited_by_key",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
    )
    readonly_fields = fields
    actions = ("revoke_invitations",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Status", ordering="status")
    def status_shown(self, invitation: Invitation) -> str:
        return invitation.display_status

    @admin.action(description="Revoke selected invitations", permissions=["change"])
    def revoke_invitations(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = 0
        for invitation in queryset.filter(status=Invitation.Status.PENDING).select_related(
            "tenant"
        ):
            services.invitation_revoke(invitation=invitation)
            revoked += 1
        self.message_user(request, f"{revoked} invitation(s) revoked.")


class _YesNoFilter(admin.SimpleListFilter):
    condition: Q

    def lookups(self, request, model_admin):
        return (("yes", "Yes"), ("no", "No"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(self.condition)
        if self.value() == "no":
            return queryset.exclude(self.condition)
        return queryset


class RevokedFilter(_YesNoFilter):
    title = parameter_name = "revoked"
    condition = Q(revoked_at__isnull=False)


class ExpiredFilter(_YesNoFilter):
    title = parameter_name = "expired"
    condition = Q(expires_at__isnull=False, expires_at__lte=Now())


@admin.register(ApiKey)
class ApiKeyAdmin(AllTenantsAdmin):
    """API keys. The hash is never shown; a key is made by the service and then only revoked."""

    form = ApiKeyAdminForm
    list_display = (
        "name",
        "prefix",
        "tenant",
        "scopes",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked",
    )
    list_filter = (RevokedFilter, ExpiredFilter)
    list_select_related = ("tenant",)
    search_fields = ("name", "prefix", "tenant__slug")
    actions = ("revoke_keys",)
    add_fields = ("tenant", "name", "scopes", "expires_at", "requests_per_minute")
    change_fields = (
        "tenant",
        "name",
        "prefix",
        "scopes",
        "requests_per_minute",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )

    def get_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        return self.change_fields if obj is not None else self.add_fields

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        return self.change_fields if obj is not None else ()

    @admin.display(description="Revoked", boolean=True, ordering="revoked_at")
    def revoked(self, api_key: ApiKey) -> bool:
        return api_key.is_revoked

    def save_model(self, request, obj, form, change) -> None:
        """Make the key through the service and show its secret once, in a message."""
        if change:
            return  # nothing is editable after creation; revoke instead
        issued = services.api_key_create(
            tenant=form.cleaned_data["tenant"],
            name=obj.name,
            scopes=form.cleaned_data["scopes"],
            expires_at=obj.expires_at,
            created_by=request.user,
            requests_per_minute=obj.requests_per_minute,
        )
        obj.pk = issued.api_key.pk
        obj.refresh_from_db()
        self.message_user(
            request,
            f"API key for {obj.tenant.slug}: {issued.secret} "
            "Copy it now; it will not be shown again.",
            messages.SUCCESS,
        )

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            with tenant_scope(api_key.tenant):
                services.api_key_revoke(api_key=api_key)
            revoked += 1
        self.message_user(request, f"{revoked} key(s) revoked.")
