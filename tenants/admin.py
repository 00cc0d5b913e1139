"""Django Admin of plans, tenants, memberships and API keys (staff only).

Tenancy rules here:

* Tenant-owned models are listed through their explicit ``all_tenants`` manager: the admin is ops
  code and works across tenants, while ``Model.objects`` would raise outside a tenant scope.
* Writes of a tenant-owned row run in that row's tenant scope, so an admin page opened on a
  tenant's subdomain (which the middleware scopes to that tenant) still writes the right tenant.
* Status changes and key revocations go through ``services`` one row at a time, never through
  ``QuerySet.update``: the services' saves fire the signals that drop cached resolutions, so the
  change is seen by the API on its next request.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from tenants import services
from tenants.admin_usage import NEAR_LIMIT, UsageFilter, count_per_tenant, near_limit_expression
from tenants.context import tenant_scope
from tenants.forms import ApiKeyAdminForm, MembershipAdminForm, TenantAdminForm
from tenants.models import LIMIT_FIELDS, ApiKey, Membership, Plan, Tenant
from tenants.selectors import QuotaLine, quota_report

admin.site.site_header = admin.site.site_title = "ILS platform admin"
admin.site.index_title = "Operations"


#: How a quota's figures read on the tenant's change page.
_QUOTA_LABELS = {
    "max_members": "Members",
    "max_api_keys": "Active API keys",
    "storage_bytes": "Stored bytes",
    "max_file_bytes": "Bytes per file",
    "jobs_per_day": "Jobs today",
    "api_calls_per_month": "API calls this month",
}


def _amount(resource: str, value: int) -> str:
    text = f"{value:,}"
    return f"{text} ({filesizeformat(value)})" if resource.endswith("_bytes") else text


def _usage_row(line: QuotaLine) -> tuple[str, str, SafeString, str]:
    label = _QUOTA_LABELS.get(line.resource, line.resource)
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


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("code", "name", *LIMIT_FIELDS)
    list_editable = LIMIT_FIELDS
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
        """The highest percentage over the counted quotas (``tenants.admin_usage``)."""
        percent = getattr(tenant, NEAR_LIMIT)
        return "-" if percent is None else f"{percent}%"

    @admin.display(description="Usage")
    def usage(self, tenant: Tenant) -> str:
        """Each quota: used / limit and a bar, from ``selectors.quota_report`` (live figures).

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
    form = MembershipAdminForm
    list_display = ("tenant", "user", "role", "created_at")
    list_filter = ("role",)
    list_select_related = ("tenant", "user")
    search_fields = ("tenant__slug", "user__email")
    autocomplete_fields = ("user",)
    fields = ("tenant", "user", "role")

    def get_deleted_objects(self, objs, request: HttpRequest):
        """Refuse (as "protected") to delete the last owner of a tenant that stays."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        doomed = {m.pk for m in objs}
        for membership in objs:
            if membership.role != Membership.Role.OWNER:
                continue
            owners = Membership.all_tenants.filter(
                tenant_id=membership.tenant_id, role=Membership.Role.OWNER
            ).values_list("pk", flat=True)
            if set(owners) <= doomed:
                protected.append(f"{membership} (the last owner of {membership.tenant})")
        return deleted, counts, perms_needed, protected


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
