"""The files console in Django Admin: pages, permissions, usage per tenant, read-only journals."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from storage import admin as storage_admin
from storage.admin import FilePolicyAdminForm
from storage.models import (
    FilePolicy,
    MigrationItem,
    OrphanReport,
    StorageMigration,
    StoredFile,
    type_allowed,
)
from tenants import admin as tenants_admin
from tests.factories import TenantFactory, UserFactory, plan

pytestmark = pytest.mark.django_db

MODELS = ("storedfile", "filepolicy", "storagemigration", "migrationitem", "orphanreport")


def _url(model: str, view: str = "changelist", *args) -> str:
    return reverse(f"admin:storage_{model}_{view}", args=args)


def _file(tenant, size: int = 10, storage: str = "local", deleted: bool = False, **fields):
    name = fields.pop("original_name", "report.pdf")
    return StoredFile.all_tenants.create(
        tenant=tenant,
        key=f"tenants/{tenant.pk}/2026/01/{uuid.uuid4().hex}/{name}",
        original_name=name,
        size=size,
        content_type=fields.pop("content_type", "application/pdf"),
        sha256="0" * 64,
        storage=storage,
        deleted_at=timezone.now() if deleted else None,
        **fields,
    )


def _migration(tenant=None, **fields) -> StorageMigration:
    return StorageMigration.objects.create(
        source="local", target="s3", tenant=tenant, runner="host:1", heartbeat_at=timezone.now(),
        **fields,
    )  # fmt: skip


@pytest.fixture
def rows():
    """One row of each model, and what its change page must show."""
    tenant = TenantFactory(slug="acme")
    stored = _file(tenant, size=2048, original_name="invoice.pdf")
    policy = FilePolicy.objects.create(plan=plan("pro"), allowed_types=["image/", "text/plain"])
    migration = _migration(tenant, total_files=4, moved_files=1, total_bytes=4096, moved_bytes=1024)
    item = MigrationItem.all_tenants.create(
        tenant=tenant, migration=migration, file=stored, size=2048, state="failed", error="boom"
    )
    report = OrphanReport.objects.create(
        storage="local",
        objects_without_row=1,
        samples={
            "objects_without_row": ["tenants/9/2026/01/x/lost.bin"],
            "rows_without_object": [],
        },
    )
    return {
        "storedfile": (stored, "invoice.pdf"),
        "filepolicy": (policy, "text/plain"),
        "storagemigration": (migration, "1/4 files (25%)"),
        "migrationitem": (item, "boom"),
        "orphanreport": (report, "tenants/9/2026/01/x/lost.bin"),
    }


def _pages(rows) -> list[str]:
    pages = [_url(model) for model in MODELS] + [_url("storedfile", "usage")]
    return pages + [_url(model, "change", obj.pk) for model, (obj, _) in rows.items()]


@pytest.mark.parametrize("model", MODELS)
def test_a_superuser_opens_each_changelist_and_change_page(admin_client, rows, model):
    obj, shown = rows[model]

    listed = admin_client.get(_url(model))
    page = admin_client.get(_url(model, "change", obj.pk))

    assert listed.status_code == 200
    assert [row.pk for row in listed.context["cl"].result_list] == [obj.pk]
    assert page.status_code == 200
    assert shown in page.text


def test_a_user_who_is_not_staff_is_sent_to_the_login_page(client, rows):
    client.force_login(UserFactory(is_staff=False))
    for url in _pages(rows):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("admin:login")), url


def test_staff_without_permissions_are_refused(client, rows):
    client.force_login(UserFactory(is_staff=True))
    for url in _pages(rows):
        assert client.get(url).status_code == 403, url
    assert "Stored files" not in client.get(reverse("admin:index")).text


def test_staff_with_the_view_permission_see_files_and_usage(client, rows):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_storedfile"))
    client.force_login(user)

    assert "invoice.pdf" in client.get(_url("storedfile")).text
    assert client.get(_url("storedfile", "usage")).context["rows"][0]["slug"] == "acme"
    assert client.get(_url("storagemigration")).status_code == 403


def test_usage_per_tenant_sums_files_and_bytes_per_storage(admin_client, settings):
    settings.STORAGES = {**settings.STORAGES, "s3": {"BACKEND": "storages.backends.s3.S3Storage"}}
    TenantFactory(slug="no-files")
    small, large = TenantFactory(slug="small"), TenantFactory(slug="large")
    _file(small, 100)
    _file(small, 1000, storage="s3")
    _file(small, 300, deleted=True)  # counted until purged
    _file(large, 10)
    _file(large, 5000, storage="retired")

    response = admin_client.get(_url("storedfile", "usage"))

    assert response.status_code == 200
    names = response.context["storages"]
    got = [
        (row["slug"], row["files"], row["deleted_files"], row["bytes"], row["elsewhere"])
        for row in response.context["rows"]
    ]
    assert got == [("large", 2, 0, 5010, 5000), ("small", 2, 1, 1400, 0)]
    per_storage = [
        dict(zip(names, row["storages"], strict=True)) for row in response.context["rows"]
    ]
    assert [(p["local"], p["s3"]) for p in per_storage] == [(10, 0), (400, 1000)]
    text = response.text
    assert text.index(">large<") < text.index(">small<")
    assert "no-files" not in text
    assert "In storages not configured here" in text


def test_usage_is_paginated_and_costs_the_same_queries_for_more_tenants(admin_client, monkeypatch):
    monkeypatch.setattr(storage_admin, "USAGE_PER_PAGE", 2)
    url = _url("storedfile", "usage")

    def queries_for(count: int) -> int:
        for _ in range(count):
            _file(TenantFactory(), 1)
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(url).status_code == 200
        return len(queries)

    assert queries_for(1) == queries_for(6)
    top = TenantFactory(slug="top")
    _file(top, 10**9)
    first, second = admin_client.get(url), admin_client.get(url, {"p": 2})
    assert first.context["rows"][0]["slug"] == "top"
    assert len(first.context["rows"]) == 2
    assert first.context["page"].paginator.num_pages == 4  # 1 + 6 + 1 tenants, 2 a page
    assert "top" not in [row["slug"] for row in second.context["rows"]]


def test_the_files_changelist_links_to_the_usage_page(admin_client):
    response = admin_client.get(_url("storedfile"))

    assert f'href="{_url("storedfile", "usage")}"' in response.text


def test_the_file_admin_adds_changes_and_deletes_nothing(admin_client, rows):
    stored, _ = rows["storedfile"]
    page = admin_client.get(_url("storedfile", "change", stored.pk))

    assert page.context["has_add_permission"] is False
    assert page.context["has_delete_permission"] is False
    assert page.context["has_change_permission"] is False
    assert admin_client.get(_url("storedfile", "add")).status_code == 403
    assert admin_client.get(_url("storedfile", "delete", stored.pk)).status_code == 403
    changelist = admin_client.get(_url("storedfile"))
    assert changelist.context["action_form"] is None
    assert "delete_selected" not in changelist.text

    response = admin_client.post(
        _url("storedfile", "change", stored.pk),
        {"storage": "s3", "key": "tenants/1/elsewhere", "size": "1", "original_name": "x"},
    )

    assert response.status_code == 403
    stored.refresh_from_db()
    assert (stored.storage, stored.size, stored.original_name) == ("local", 2048, "invoice.pdf")
    assert StoredFile.all_tenants.count() == 1


def test_the_file_page_links_to_its_tenant_and_shows_a_readable_size(admin_client, rows):
    stored, _ = rows["storedfile"]

    page = admin_client.get(_url("storedfile", "change", stored.pk))
    listed = admin_client.get(_url("storedfile"))

    assert f'href="{reverse("admin:tenants_tenant_change", args=[stored.tenant_id])}"' in page.text
    assert "2.0\xa0KB" in listed.text


def test_file_search_and_filters(admin_client):
    acme, other = TenantFactory(slug="acme"), TenantFactory(slug="globex")
    invoice = _file(acme, original_name="invoice.pdf")
    photo = _file(acme, original_name="photo.png", content_type="image/png", storage="s3")
    deleted = _file(acme, deleted=True)
    elsewhere = _file(other, original_name="invoice-2.pdf")

    def listed(**params) -> set[int]:
        response = admin_client.get(_url("storedfile"), params)
        assert response.status_code == 200
        return {stored.pk for stored in response.context["cl"].result_list}

    assert listed(q="acme") == {invoice.pk, photo.pk, deleted.pk}
    assert listed(q="invoice") == {invoice.pk, elsewhere.pk}
    assert listed(q=photo.key[:-4]) == {photo.pk}
    assert listed(q=str(elsewhere.pk)) == {elsewhere.pk}
    assert listed(type="image/") == {photo.pk}
    assert listed(storage="s3") == {photo.pk}
    assert listed(deleted="yes") == {deleted.pk}
    assert listed(deleted="no") == {invoice.pk, photo.pk, elsewhere.pk}
    # digits that are not ASCII (int() refuses them) and ids past bigint are a name search, not a 500
    assert listed(q="²") == set() and listed(q="9" * 30) == set()
    for params in ({"q": "²"}, {"q": "9" * 30}, {"migration": "²"}):
        assert admin_client.get(_url("migrationitem"), params).status_code == 200


def test_the_files_changelist_does_not_count_the_table_or_grow_its_queries(
    admin_client, monkeypatch
):
    monkeypatch.setattr(tenants_admin, "COUNT_CAP", 3)

    def queries_for(count: int) -> tuple[int, int]:
        for _ in range(count):
            _file(TenantFactory())
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(_url("storedfile"))
        return len(queries), response.context["cl"].result_count

    few, many = queries_for(2), queries_for(8)
    assert few[0] == many[0]
    assert (few[1], many[1]) == (2, 4)  # capped: 3, plus one for "more"


def test_the_policy_form_refuses_what_is_not_a_type():
    form = FilePolicyAdminForm(
        data={"plan": plan("free").pk, "allowed_types": '["image/png", "not a type"]'}
    )

    assert not form.is_valid()
    assert form.errors["allowed_types"] == [
        '\'not a type\' is not a type such as "image/png" or a family ending with "/" '
        'such as "image/".'
    ]
    for bad in ('"image/"', '["image/", 3]', "", '["*/*"]'):
        data = {"plan": plan("free").pk, "allowed_types": bad}
        assert "allowed_types" in FilePolicyAdminForm(data=data).errors, bad


def test_the_policy_admin_saves_types_and_families(admin_client):
    free = plan("free")

    response = admin_client.post(
        _url("filepolicy", "add"),
        {"plan": free.pk, "allowed_types": '["image/", "Application/PDF", "image/"]'},
    )

    assert response.status_code == 302
    policy = FilePolicy.objects.get(plan=free)
    assert policy.allowed_types == ["image/", "application/pdf"]
    allowed = policy.allowed_types
    assert type_allowed("image/webp", allowed) and not type_allowed("text/plain", allowed)

    refused = admin_client.post(
        _url("filepolicy", "change", policy.pk), {"plan": free.pk, "allowed_types": '["nope"]'}
    )
    assert refused.status_code == 200
    assert "is not a type such as" in refused.text
    policy.refresh_from_db()
    assert policy.allowed_types == ["image/", "application/pdf"]


def test_an_empty_policy_must_be_written_out(admin_client):
    free = plan("free")

    assert FilePolicyAdminForm(data={"plan": free.pk, "allowed_types": "[]"}).is_valid()
    admin_client.post(_url("filepolicy", "add"), {"plan": free.pk, "allowed_types": "[]"})
    assert FilePolicy.objects.get(plan=free).allowed_types == []


def test_migrations_and_items_are_view_only(admin_client, rows):
    migration, _ = rows["storagemigration"]
    item, _ = rows["migrationitem"]

    page = admin_client.get(_url("storagemigration", "change", migration.pk))

    assert (page.context["has_add_permission"], page.context["has_delete_permission"]) == (
        False,
        False,
    )
    assert page.context["has_change_permission"] is False
    for model, obj in (("storagemigration", migration), ("migrationitem", item)):
        assert admin_client.get(_url(model, "add")).status_code == 403
        assert admin_client.get(_url(model, "delete", obj.pk)).status_code == 403
        assert admin_client.post(_url(model, "change", obj.pk), {}).status_code == 403
    assert StorageMigration.objects.count() == MigrationItem.all_tenants.count() == 1


def test_a_migration_shows_its_progress_and_links_to_its_items(admin_client, rows):
    migration, _ = rows["storagemigration"]
    failed_file, _ = rows["storedfile"]
    moved_file = _file(failed_file.tenant, original_name="moved.pdf")
    MigrationItem.all_tenants.create(
        tenant=moved_file.tenant, migration=migration, file=moved_file, size=10, state="moved"
    )
    other = _migration()
    MigrationItem.all_tenants.create(
        tenant=failed_file.tenant, migration=other, file=failed_file, size=1, state="pending"
    )

    listed = admin_client.get(_url("storagemigration"))
    page = admin_client.get(_url("storagemigration", "change", migration.pk))
    items = admin_client.get(_url("migrationitem"), {"migration": migration.pk})
    pending = admin_client.get(_url("migrationitem"), {"state__exact": "pending"})

    assert "local → s3" in listed.text and "1.0\xa0KB / 4.0\xa0KB" in listed.text
    assert "all tenants" in listed.text  # the migration of every tenant
    assert "Failed</a>: 1" in page.text and "Moved</a>: 1" in page.text
    assert "Pending</a>: 0" in page.text  # the other migration's item is not counted here
    assert f"?migration={migration.pk}&amp;state__exact=failed" in page.text
    assert f"<td>{failed_file.pk}</td>" in page.text  # not moved: listed
    assert f"<td>{moved_file.pk}</td>" not in page.text  # moved: only counted
    assert {i.migration_id for i in items.context["cl"].result_list} == {migration.pk}
    assert len(items.context["cl"].result_list) == 2
    assert [i.migration_id for i in pending.context["cl"].result_list] == [other.pk]


def test_an_orphan_report_shows_its_sample_keys(admin_client):
    report = OrphanReport.objects.create(
        storage="s3",
        rows_scanned=7,
        rows_without_object=1,
        samples={
            "objects_without_row": ["tenants/3/2026/01/a/stray.bin"],
            "rows_without_object": ["tenants/4/2026/01/b/missing.pdf"],
        },
    )

    page = admin_client.get(_url("orphanreport", "change", report.pk))
    listed = admin_client.get(_url("orphanreport"))

    assert "tenants/3/2026/01/a/stray.bin" in page.text
    assert "?q=tenants%2F4%2F2026%2F01%2Fb%2Fmissing.pdf" in page.text
    assert page.context["has_change_permission"] is False
    assert [r.rows_without_object for r in listed.context["cl"].result_list] == [1]
    assert admin_client.get(_url("orphanreport", "add")).status_code == 403
