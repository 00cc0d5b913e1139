"""Storing a tenant's file (``storage.services.file_store``) on local disk and on a real
S3-compatible server (moto's server mode, started by the harness), through boto3 over HTTP."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.core.files.storage import storages

from storage.exceptions import UnsupportedFileType
from storage.models import StoredFile
from tenants.exceptions import CrossTenantReference, FileTooLarge, QuotaExceeded
from tenants.limits.quotas import quota_usage
from tenants.limits.registry import STORAGE_BYTES
from tests.factories import TenantFactory, issue_key, plan
from tests.storage.helpers import store

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 200
HTML = b"<!DOCTYPE html><html><script>alert(1)</script></html>"


def test_a_file_is_stored_under_a_key_the_platform_makes(backend):
    tenant = TenantFactory(plan=plan("pro"))

    stored = store(tenant, PNG, name="../../etc/Passwörd notes.TXT")

    assert re.fullmatch(
        rf"tenants/{tenant.pk}/\d{{4}}/\d{{2}}/[A-Za-z0-9_-]{{16}}/Password-notes.TXT", stored.key
    ), stored.key
    assert (stored.size, stored.content_type) == (len(PNG), "image/png")  # the bytes, not the name
    assert stored.sha256 == hashlib.sha256(PNG).hexdigest()
    assert stored.original_name == "../../etc/Passwörd notes.TXT"
    assert backend() == [stored.key]
    with storages[stored.storage].open(stored.key) as handle:
        assert handle.read() == PNG
    assert quota_usage(tenant, STORAGE_BYTES) == len(PNG)


def test_a_type_not_allowed_is_refused_whatever_its_name(backend):
    tenant = TenantFactory()

    with pytest.raises(UnsupportedFileType) as refused:
        store(tenant, HTML, name="innocent.png")

    assert refused.value.details["detected"] == "text/html"
    assert refused.value.status_code == 415
    assert backend() == [] and not StoredFile.all_tenants.exists()
    assert quota_usage(tenant, STORAGE_BYTES) == 0


def test_a_file_over_the_plans_file_size_is_413_and_nothing_is_kept(backend):
    tenant = TenantFactory(limit_overrides={"max_file_bytes": 100})

    with pytest.raises(FileTooLarge):
        store(tenant, PNG)

    assert backend() == [] and quota_usage(tenant, STORAGE_BYTES) == 0


def test_over_the_storage_quota_nothing_is_kept(backend):
    tenant = TenantFactory(limit_overrides={"storage_bytes": len(PNG) + 10})
    store(tenant, PNG)

    with pytest.raises(QuotaExceeded):
        store(tenant, PNG)

    assert len(backend()) == 1
    assert quota_usage(tenant, STORAGE_BYTES) == len(PNG)


def test_a_failure_after_the_bytes_are_stored_removes_them_and_the_usage(backend):
    """The row cannot be written (the key of another tenant named as the uploader): the object
    is deleted and the reservation released before the error propagates."""
    tenant, other = TenantFactory(), TenantFactory()
    foreign_key, _ = issue_key(other)

    with pytest.raises(CrossTenantReference):
        store(tenant, PNG, uploaded_by_key=foreign_key)

    assert backend() == [] and not StoredFile.all_tenants.exists()
    assert quota_usage(tenant, STORAGE_BYTES) == 0


def test_two_tenants_files_live_under_their_own_prefixes(backend):
    first, second = TenantFactory(), TenantFactory()

    keys = [store(first, PNG).key, store(second, PNG).key]

    assert keys[0].startswith(f"tenants/{first.pk}/") and keys[1].startswith(
        f"tenants/{second.pk}/"
    )
    assert len(set(keys)) == 2
