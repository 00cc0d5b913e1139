"""The files console (Django Admin): stored files, usage per tenant, file policies, storage
migrations and their manifests, orphan reports.

Why almost everything here is read-only (data loss and tenancy):

* A ``StoredFile`` row is the only record of where a tenant's bytes are and the only thing that
  counts them in the tenant's ``storage_bytes`` quota. Its ``key``, ``size``, ``sha256``,
  ``storage`` and ``content_type`` are written by the files API (``storage.services``) and by
  ``manage.py migrate_storage`` only: an edited ``storage`` or ``key`` would point the row at
  bytes that are not there, an edited ``size`` would make the quota wrong for ever, and deleting
  a row would leave its bytes behind with nothing that lists, counts or purges them. Files are
  deleted through the API (a soft delete, then a purge job), never here.
* Migrations and their items are the journal of ``migrate_storage``, which takes over a killed
  run from them: a row edited or deleted by hand would make the next run skip or repeat files.
* Orphan reports are evidence for an operator; they are never edited.

Tenant-owned rows (``StoredFile``, ``MigrationItem``) are read through ``all_tenants``
(``AllTenantsAdmin``): the console works across tenants, and ``objects`` raises outside a scope.

Cheap on millions of rows: the changelists never count the whole table (a capped count,
``show_full_result_count`` off), show the tenant by a join, and their filters list known values
(configured storages, allowed types, states) instead of a ``DISTINCT`` over the table.
"""

from __future__ import annotations

import re

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from storage.models import (
    FilePolicy,
    MigrationItem,
    OrphanReport,
    StorageMigration,
    StoredFile,
    of_type,
)
from storage.transfer import file_storages
from tenants.admin import AllTenantsAdmin, CappedCountPaginator, ReadOnlyAdmin
from tenants.models import Tenant
from tenants.params import ASCII_INT

#: Tenants per page of the usage page.
USAGE_PER_PAGE = 100
#: Items not moved yet shown on a migration's page (the rest: the items changelist).
OPEN_ITEMS_SHOWN = 50

#: A key names its tenant: ``tenants/<tenant id>/...`` (``storage.keys``).
KEY_TERM = re.compile(r"^tenants/(\d+)/")
#: A policy entry: a type (``image/png``) or a family (``image/``), RFC 6838 characters.
_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
POLICY_ENTRY = re.compile(rf"^{_NAME}/(?:{_NAME})?$")


def _size(value: int | None) -> SafeString | str:
    if value is None:
        return "-"
    return format_html('<span title="{} bytes">{}</span>', f"{value:,}", filesizeformat(value))


def _tenant_link(tenant: Tenant | None) -> SafeString | str:
    if tenant is None:
        return "all tenants"
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    return format_html('<a href="{}">{}</a>', url, tenant.slug)


class StorageFilter(admin.SimpleListFilter):
    """The configured file storages (no ``DISTINCT`` over the table to find them)."""

    title = "storage"
    parameter_name = "storage"

    def lookups(self, request, model_admin):
        return [(name, name) for name in file_storages()]

    def queryset(self, request, queryset):
        return queryset.filter(storage=self.value()) if self.value() else queryset


class ContentTypeFilter(admin.SimpleListFilter):
    """The types and families uploads may have (the default list and every plan's policy); a
    family (``image/``) matches each of its types."""

    title = "content type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        entries = set(settings.FILES_ALLOWED_TYPES)
        for allowed in FilePolicy.objects.values_list("allowed_types", flat=True):
            entries.update(entry for entry in allowed if isinstance(entry, str))
        return [(entry, entry) for entry in sorted(entries)]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(of_type(value))


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return (("yes", "Soft-deleted, awaiting purge"), ("no", "Live"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


@admin.register(StoredFile)
class StoredFileAdmin(AllTenantsAdmin, ReadOnlyAdmin):
    """Stored files, view only (module docstring): no add, no change, no delete, no actions.

    No delete, by design: deleting a row here would leave its bytes in the storage with nothing
    that lists, counts or purges them (an orphan), and the tenant's ``storage_bytes`` usage would
    never be given back. A file is deleted through the API (``services.file_delete``, then the
    purge job)."""

    list_display = (
        "id",
        "tenant",
        "original_name",
        "size_shown",
        "content_type",
        "storage",
        "created_at",
        "deleted",
    )
    list_filter = (StorageFilter, ContentTypeFilter, DeletedFilter, "created_at")
    list_select_related = ("tenant",)
    search_fields = ("original_name",)
    search_help_text = (
        "A file id, a tenant's slug (exact), a key or its beginning (tenants/<tenant id>/...), "
        "or part of a file name."
    )
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    ordering = ("-id",)
    fields = (
        "tenant_link",
        "key",
        "original_name",
        "size_shown",
        "content_type",
        "sha256",
        "storage",
        "uploaded_by",
        "uploaded_by_key",
        "created_at",
        "deleted_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("tenant")

    def get_search_results(self, request, queryset, search_term):
        """Indexed where it can be: an id, a tenant (its unique slug, then the tenant's rows), a
        key within the tenant it names; only other text scans names (bounded by the page)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if ASCII_INT.fullmatch(term):
            return queryset.filter(pk=int(term)), False
        key = KEY_TERM.match(term)
        if key:
            return queryset.filter(tenant_id=int(key[1]), key__startswith=term), False
        tenant_id = Tenant.objects.filter(slug=term.lower()).values_list("pk", flat=True).first()
        if tenant_id is not None:
            return queryset.filter(tenant_id=tenant_id), False
        return super().get_search_results(request, queryset, term)

    @admin.display(description="Size", ordering="size")
    def size_shown(self, stored: StoredFile) -> SafeString | str:
        return _size(stored.size)

    @admin.display(description="Deleted", boolean=True, ordering="deleted_at")
    def deleted(self, stored: StoredFile) -> bool:
        return stored.deleted_at is not None

    @admin.display(description="Tenant")
    def tenant_link(self, stored: StoredFile) -> SafeString:
        files = (
            reverse("admin:storage_storedfile_changelist")
            + "?"
            + urlencode({"q": stored.tenant.slug})
        )
        return format_html(
            '{} (<a href="{}">all its files</a>)', _tenant_link(stored.tenant), files
        )

    def get_urls(self):
        usage = self.admin_site.admin_view(self.usage_view)
        return [path("usage/", usage, name="storage_storedfile_usage"), *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra = {"usage_url": reverse("admin:storage_storedfile_usage"), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)

    def usage_view(self, request: HttpRequest) -> TemplateResponse:
        """Per tenant: live files, files soft-deleted and not purged yet, and the bytes of both
        (what the tenant's ``storage_bytes`` counts) in all and per storage, largest first.

        A page costs two queries whatever the number of tenants: the count of tenants with files
        and the page's grouped sums (one ``GROUP BY tenant`` with a conditional sum per storage).
        """
        if not self.has_view_permission(request):
            raise PermissionDenied
        names = file_storages()
        per_storage = {
            f"bytes_in_{i}": Sum("size", filter=Q(storage=name), default=0)
            for i, name in enumerate(names)
        }
        sums = (
            StoredFile.all_tenants.values("tenant_id", "tenant__slug")
            .annotate(
                files=Count("id", filter=Q(deleted_at__isnull=True)),
                deleted_files=Count("id", filter=Q(deleted_at__isnull=False)),
                bytes=Sum("size"),
                **per_storage,
            )
            .order_by("-bytes", "tenant_id")
        )
        page = Paginator(sums, USAGE_PER_PAGE).get_page(request.GET.get("p"))
        rows = []
        files_url = reverse("admin:storage_storedfile_changelist")
        for row in page.object_list:
            in_storages = [row[f"bytes_in_{i}"] for i in range(len(names))]
            rows.append(
                {
                    "tenant_id": row["tenant_id"],
                    "slug": row["tenant__slug"],
                    "tenant_url": reverse("admin:tenants_tenant_change", args=[row["tenant_id"]]),
                    "files_url": f"{files_url}?{urlencode({'q': row['tenant__slug']})}",
                    "files": row["files"],
                    "deleted_files": row["deleted_files"],
                    "bytes": row["bytes"],
                    "storages": in_storages,
                    "elsewhere": row["bytes"] - sum(in_storages),
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "File usage per tenant",
            "opts": self.model._meta,
            "page": page,
            "rows": rows,
            "storages": names,
            "show_elsewhere": any(row["elsewhere"] for row in rows),
            "files_url": files_url,
        }
        return TemplateResponse(request, "admin/storage/storedfile/usage.html", context)


class FilePolicyAdminForm(forms.ModelForm):
    """``allowed_types`` must be a JSON list of types (``image/png``) or families (``image/``),
    stored lowercased (detected types are) and without repeats. ``[]`` allows no upload: it must
    be written out, an emptied field is an error, not a silent ban of every upload."""

    class Meta:
        model = FilePolicy
        fields = ("plan", "allowed_types")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["allowed_types"].required = False  # so that [] can be saved

    def clean_allowed_types(self) -> list[str]:
        value = self.cleaned_data.get("allowed_types")
        example = '["image/", "application/pdf"]'
        if value is None:
            raise forms.ValidationError(f"Enter a JSON list such as {example}; [] allows none.")
        if not isinstance(value, list):
            raise forms.ValidationError(f"Enter a JSON list such as {example}.")
        cleaned, errors = [], []
        for entry in value:
            normal = entry.strip().lower() if isinstance(entry, str) else None
            if normal is None or not POLICY_ENTRY.match(normal):
                errors.append(
                    forms.ValidationError(
                        '%(entry)s is not a type such as "image/png" or a family ending with '
                        '"/" such as "image/".',
                        params={"entry": repr(entry)},
                    )
                )
            elif normal not in cleaned:
                cleaned.append(normal)
        if errors:
            raise forms.ValidationError(errors)
        return cleaned


@admin.register(FilePolicy)
class FilePolicyAdmin(admin.ModelAdmin):
    """A plan's allowed upload types. Read by every upload (``services.allowed_types``, not
    cached), so a saved change applies to the next upload; files already stored stay."""

    form = FilePolicyAdminForm
    list_display = ("plan", "allowed_types_shown", "updated_at")
    list_select_related = ("plan",)
    readonly_fields = ("updated_at",)

    @admin.display(description="Allowed types")
    def allowed_types_shown(self, policy: FilePolicy) -> str:
        return ", ".join(map(str, policy.allowed_types)) or "none"


def _items_url(migration_id: int, **filters: str) -> str:
    query = urlencode({"migration": migration_id, **filters})
    return f"{reverse('admin:storage_migrationitem_changelist')}?{query}"


@admin.register(StorageMigration)
class StorageMigrationAdmin(ReadOnlyAdmin):
    """``migrate_storage`` runs, view only: they and their items are written by the command
    only, and a killed run is taken over from them (an edit would skip or repeat files)."""

    list_display = (
        "id",
        "route",
        "tenant_shown",
        "status",
        "progress",
        "bytes_progress",
        "failed_files",
        "runner",
        "heartbeat_at",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "source", "target")
    list_select_related = ("tenant",)
    fields = (
        "route",
        "tenant_shown",
        "status",
        "verify",
        "delete_source",
        "progress",
        "bytes_progress",
        "failed_files",
        "runner",
        "heartbeat_at",
        "started_at",
        "finished_at",
        "items_by_state",
        "open_items",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("tenant")

    @admin.display(description="Route", ordering="source")
    def route(self, migration: StorageMigration) -> str:
        return f"{migration.source} → {migration.target}"

    @admin.display(description="Tenant", ordering="tenant__slug")
    def tenant_shown(self, migration: StorageMigration) -> SafeString | str:
        return _tenant_link(migration.tenant)

    @admin.display(description="Files moved")
    def progress(self, migration: StorageMigration) -> str:
        moved, total = migration.moved_files, migration.total_files
        percent = f" ({moved * 100 // total}%)" if total else ""
        return f"{moved:,}/{total:,} files{percent}"

    @admin.display(description="Bytes moved")
    def bytes_progress(self, migration: StorageMigration) -> str:
        return f"{filesizeformat(migration.moved_bytes)} / {filesizeformat(migration.total_bytes)}"

    @admin.display(description="Items by state")
    def items_by_state(self, migration: StorageMigration) -> SafeString:
        """One grouped count over the manifest (indexed by migration and state)."""
        counts = dict(
            MigrationItem.all_tenants.filter(migration=migration)
            .order_by()
            .values_list("state")
            .annotate(n=Count("id"))
        )
        cells = (
            (_items_url(migration.pk, state__exact=state), label, counts.get(state, 0))
            for state, label in MigrationItem.State.choices
        )
        links = format_html_join(", ", '<a href="{}">{}</a>: {}', cells)
        return format_html('{} (<a href="{}">all items</a>)', links, _items_url(migration.pk))

    @admin.display(description=f"Items not moved (first {OPEN_ITEMS_SHOWN})")
    def open_items(self, migration: StorageMigration) -> SafeString | str:
        items = (
            MigrationItem.all_tenants.filter(migration=migration)
            .exclude(state=MigrationItem.State.MOVED)
            .select_related("tenant")
            .order_by("id")[:OPEN_ITEMS_SHOWN]
        )
        rows = format_html_join(
            "\n",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (item.file_id, item.tenant.slug, _size(item.size), item.state, _short(item.error))
                for item in items
            ),
        )
        if not rows:
            return "none"
        return format_html(
            '<table class="open-items"><tr><th>File</th><th>Tenant</th><th>Size</th>'
            "<th>State</th><th>Error</th></tr>{}</table>",
            rows,
        )


def _short(text: str, length: int = 120) -> str:
    line = (text.strip().splitlines() or [""])[-1]
    return line if len(line) <= length else f"{line[: length - 1]}…"


class MigrationFilter(admin.SimpleListFilter):
    """The latest migrations (the links of a migration's page name any)."""

    title = "migration"
    parameter_name = "migration"

    def lookups(self, request, model_admin):
        latest = StorageMigration.objects.select_related("tenant").order_by("-id")[:20]
        return [(str(migration.pk), str(migration)) for migration in latest]

    def queryset(self, request, queryset):
        value = self.value()
        return (
            queryset.filter(migration_id=int(value))
            if value and ASCII_INT.fullmatch(value)
            else queryset
        )


@admin.register(MigrationItem)
class MigrationItemAdmin(AllTenantsAdmin, ReadOnlyAdmin):
    """The manifest of each migration, view only (``StorageMigrationAdmin`` says why)."""

    list_display = (
        "id",
        "migration_shown",
        "file_shown",
        "tenant",
        "size_shown",
        "state",
        "copies",
        "error_shown",
        "updated_at",
    )
    list_filter = ("state", MigrationFilter)
    list_select_related = ("tenant",)
    search_fields = ("=file__id",)
    search_help_text = "A file id."
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    ordering = ("-id",)
    fields = (
        "migration_shown",
        "file_shown",
        "tenant",
        "size_shown",
        "state",
        "copies",
        "error",
        "updated_at",
    )
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(file_id=int(term)) if ASCII_INT.fullmatch(
            term
        ) else queryset.none(), False

    @admin.display(description="Migration", ordering="migration_id")
    def migration_shown(self, item: MigrationItem) -> SafeString:
        url = reverse("admin:storage_storagemigration_change", args=[item.migration_id])
        return format_html('<a href="{}">#{}</a>', url, item.migration_id)

    @admin.display(description="File", ordering="file_id")
    def file_shown(self, item: MigrationItem) -> SafeString:
        url = reverse("admin:storage_storedfile_change", args=[item.file_id])
        return format_html('<a href="{}">{}</a>', url, item.file_id)

    @admin.display(description="Size", ordering="size")
    def size_shown(self, item: MigrationItem) -> SafeString | str:
        return _size(item.size)

    @admin.display(description="Error")
    def error_shown(self, item: MigrationItem) -> str:
        return _short(item.error)


@admin.register(OrphanReport)
class OrphanReportAdmin(ReadOnlyAdmin):
    """Orphan checks, view only: a report is evidence for an operator, who decides what to do
    with each key (docs/FILES.md); nothing here deletes bytes or rows."""

    list_display = (
        "id",
        "storage",
        "started_at",
        "finished_at",
        "objects_scanned",
        "rows_scanned",
        "objects_without_row",
        "rows_without_object",
        "error_shown",
    )
    list_filter = ("storage",)
    fields = (
        "storage",
        "started_at",
        "finished_at",
        "objects_scanned",
        "rows_scanned",
        "objects_without_row",
        "rows_without_object",
        "error",
        "sample_objects_without_row",
        "sample_rows_without_object",
    )
    readonly_fields = fields

    @admin.display(description="Error")
    def error_shown(self, report: OrphanReport) -> str:
        return _short(report.error)

    def _samples(self, report: OrphanReport, kind: str, link: bool) -> SafeString | str:
        keys = [key for key in (report.samples or {}).get(kind, []) if isinstance(key, str)]
        if not keys:
            return "none"
        files = reverse("admin:storage_storedfile_changelist")
        items = (
            (format_html('<a href="{}?{}">{}</a>', files, urlencode({"q": key}), key),)
            if link
            else (key,)
            for key in keys
        )
        return format_html(
            '<ul class="orphan-samples">{}</ul>', format_html_join("", "<li>{}</li>", items)
        )

    @admin.display(description="Objects without a row (sample)")
    def sample_objects_without_row(self, report: OrphanReport) -> SafeString | str:
        return self._samples(report, "objects_without_row", link=False)

    @admin.display(description="Rows without an object (sample; each links to its row)")
    def sample_rows_without_object(self, report: OrphanReport) -> SafeString | str:
        return self._samples(report, "rows_without_object", link=True)
