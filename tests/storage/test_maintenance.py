"""Beat maintenance of files on local disk and on the S3 server: overdue purges, orphan reports
both ways, storage usage reconciled from the rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.utils import timezone

from config.celery import app
from storage.maintenance import purge_overdue, reconcile_storage_usage, report_orphans
from storage.models import StoredFile
from storage.services import file_delete
from tenants.limits.quotas import quota_release, quota_reserve, quota_usage
from tenants.limits.registry import STORAGE_BYTES
from tests.factories import TenantFactory
from tests.storage.helpers import random_bytes, store

pytestmark = pytest.mark.django_db


def test_overdue_deleted_files_are_purged_and_recent_ones_kept(backend):
    tenant = TenantFactory()
    old, recent, live = (store(tenant, random_bytes(500), f"f{i}.bin") for i in range(3))
    for stored in (old, recent):
        file_delete(stored=stored)
    StoredFile.all_tenants.filter(pk=old.pk).update(
        deleted_at=timezone.now() - timedelta(hours=django_settings.FILES_PURGE_AFTER_HOURS + 2)
    )

    assert purge_overdue() == 1

    assert set(StoredFile.all_tenants.values_list("pk", flat=True)) == {recent.pk, live.pk}
    assert backend() == sorted([recent.key, live.key])
    assert quota_usage(tenant, STORAGE_BYTES) == 1000  # the purged file's bytes given back


def test_orphans_are_reported_both_ways_and_young_objects_are_left_alone(backend):
    tenant = TenantFactory()
    kept, lost = store(tenant, b"a" * 100, "kept.bin"), store(tenant, b"b" * 100, "lost.bin")
    files = storages[django_settings.FILES_STORAGE]
    files.delete(lost.key)  # a row without its object
    stray = files.save(f"tenants/{tenant.pk}/2026/01/stray/left.bin", ContentFile(b"x"))
    files.save("health/not-a-tenant-file.txt", ContentFile(b"x"))  # outside tenants/: ignored

    young = report_orphans(django_settings.FILES_STORAGE)  # the stray object is minutes old
    assert (young.objects_without_row, young.rows_without_object) == (0, 1)

    later = timezone.now() + timedelta(hours=2)
    report = report_orphans(django_settings.FILES_STORAGE, now=later)

    assert report.error == ""
    assert (report.objects_without_row, report.rows_without_object) == (1, 1)
    assert report.samples == {"objects_without_row": [stray], "rows_without_object": [lost.key]}
    assert (report.objects_scanned, report.rows_scanned) == (2, 2)
    assert report.finished_at is not None
    assert kept.key not in str(report.samples)


def test_storage_usage_is_reconciled_from_the_rows(backend):
    drifting, emptied = TenantFactory(), TenantFactory()
    stored = store(drifting, b"z" * 700, "z.bin")
    quota_release(drifting, STORAGE_BYTES, 700)  # usage that escaped counting
    with quota_reserve(emptied, STORAGE_BYTES, 300):  # counted, with no file behind it
        pass

    drifts = reconcile_storage_usage()

    assert drifts == {drifting.pk: -700, emptied.pk: 300}
    assert quota_usage(drifting, STORAGE_BYTES) == stored.size
    assert quota_usage(emptied, STORAGE_BYTES) == 0
    assert reconcile_storage_usage() == {}  # nothing left to mend


def test_the_maintenance_tasks_are_registered_and_scheduled_on_the_cleanup_queue():
    app.loader.import_default_modules()
    for name in ("storage.purge_overdue", "storage.report_orphans", "storage.reconcile_usage"):
        assert name in app.tasks
        entry = django_settings.CELERY_BEAT_SCHEDULE[name]
        assert entry["task"] == name and entry["options"]["queue"] == "cleanup"
