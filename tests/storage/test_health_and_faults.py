"""Storage health, a storage that goes down (a real S3 server, stopped), the per-plan allow-list,
and the CDN that never signs a tenant's file."""

from __future__ import annotations

import os
from contextlib import ExitStack

import pytest
from django.core.files.storage import storages

from scripts.services import s3_server
from storage.models import FilePolicy, StoredFile
from tenants.limits.quotas import quota_usage
from tenants.limits.registry import STORAGE_BYTES
from tests.child_process import run_django
from tests.factories import TenantFactory, issue_key, key_client, plan
from tests.storage.conftest import Bucket

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 200
PDF = b"%PDF-1.7\n" + b"0" * 200


def _upload(client, data: bytes, name: str):
    return client.post(
        f"/api/v1/files/?filename={name}", data=data, content_type="application/octet-stream"
    )


def test_health_writes_reads_and_deletes_a_probe_and_tells_details_only_to_staff(
    backend, api_client, admin_client, settings
):
    settings.STORAGE_HEALTH_CACHE_SECONDS = 0
    public = api_client.get("/api/storage/health")
    assert public.status_code == 200
    assert public.json() == {"status": "ok"}

    staff = admin_client.get("/api/storage/health").json()
    assert staff["status"] == "ok"
    assert staff["storage"] == settings.FILES_STORAGE
    assert set(staff["latency_ms"]) == {"write", "read", "delete"}
    assert staff["breaker"]["name"] == "storage"
    assert backend() == []  # no probe object left behind


@pytest.fixture
def doomed_s3(settings):
    """The files storage on an S3 server of its own, and a way to stop that server for real."""
    stack = ExitStack()
    endpoint = stack.enter_context(s3_server())
    bucket = Bucket(endpoint, "doomed")
    bucket.client.create_bucket(Bucket=bucket.name)
    settings.STORAGES = {**settings.STORAGES, "s3": bucket.storage()}
    settings.FILES_STORAGE = "s3"
    settings.STORAGE_HEALTH_CACHE_SECONDS = 0
    settings.CIRCUIT_BREAKERS = {
        **settings.CIRCUIT_BREAKERS, "storage": {"failures": 2, "reset_seconds": 30.0}
    }  # fmt: skip
    from degradation.breakers import reset_registry

    reset_registry()
    yield stack.close
    stack.close()
    reset_registry()


def test_storage_down_uploads_get_503_with_retry_after_and_nothing_is_left(doomed_s3, api_client):
    tenant = TenantFactory()
    client = key_client(issue_key(tenant)[1])
    before = _upload(client, PNG, "before.png")
    assert before.status_code == 201
    used = quota_usage(tenant, STORAGE_BYTES)

    doomed_s3()  # the S3 server is stopped: connections are refused

    failed = _upload(client, PNG, "during.png")
    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == "storage_unavailable"
    assert int(failed["Retry-After"]) >= 1
    assert StoredFile.all_tenants.count() == 1  # no row pointing at nothing
    assert quota_usage(tenant, STORAGE_BYTES) == used  # the reservation was released

    _upload(client, PNG, "again.png")  # the second failure opens the breaker (threshold 2)
    fast = _upload(client, PNG, "fast.png")
    assert fast.status_code == 503
    assert fast.json()["error"]["code"] == "dependency_unavailable"
    assert fast.json()["error"]["details"]["breaker"] == "storage"
    assert int(fast["Retry-After"]) >= 1
    download = client.get(f"/api/v1/files/{before.json()['id']}/download/")
    assert download.status_code == 503
    assert download.json()["error"]["details"]["breaker"] == "storage"

    health = api_client.get("/api/storage/health")
    assert health.status_code == 503
    assert health.json() == {"status": "down"}
    assert int(health["Retry-After"]) >= 1
    ready = api_client.get("/health/ready")
    assert ready.status_code == 200  # the rest of the API serves
    assert ready.json()["checks"]["storage"] == "degraded"
    assert ready.json()["status"] == "degraded"


def test_the_plans_allow_list_decides_what_the_bytes_may_be(backend):
    images_only = plan(code="images")
    FilePolicy.objects.create(plan=images_only, allowed_types=["image/"])
    limited, default = TenantFactory(plan=images_only), TenantFactory()
    limited_client = key_client(issue_key(limited)[1])
    default_client = key_client(issue_key(default)[1])

    refused = _upload(limited_client, PDF, "scan.png")  # a PDF, whatever its name says
    assert refused.status_code == 415
    assert refused.json()["error"]["details"] == {
        "detected": "application/pdf",
        "allowed": ["image/"],
    }
    assert _upload(limited_client, PNG, "photo.png").status_code == 201
    assert _upload(default_client, PDF, "scan.pdf").status_code == 201  # the default list
    assert StoredFile.all_tenants.filter(tenant=limited).count() == 1


def test_s3_objects_are_stored_as_attachments_of_no_renderable_type(settings):
    bucket = Bucket.create()
    settings.STORAGES = {**settings.STORAGES, "s3": bucket.storage()}
    settings.FILES_STORAGE = "s3"
    tenant = TenantFactory()
    client = key_client(issue_key(tenant)[1])
    created = _upload(client, b"just text <b>bold</b>", "page.html")
    assert created.status_code == 201
    key = StoredFile.all_tenants.get().key
    assert key.endswith("page.html")
    head = storages["s3"].connection.meta.client.head_object(
        Bucket=storages["s3"].bucket_name, Key=key
    )
    assert head["ContentType"] == "application/octet-stream"
    assert head["ContentDisposition"] == "attachment"


def test_with_a_cdn_public_files_use_it_and_tenant_files_stay_signed_against_the_endpoint():
    urls = run_django(
        """
        import json
        from django.core.files.storage import storages
        print(json.dumps({
            "public": storages["public"].url("logo.png"),
            "private": storages["s3"].url("tenants/1/2026/12/abc/report.pdf", expire=60),
        }))
        """,
        STORAGE_PROVIDER="s3",
        AWS_S3_BUCKET="files",
        AWS_S3_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        CDN_BASE_URL="https://cdn.example.com",
    )
    assert urls["public"] == "https://cdn.example.com/public/logo.png"
    assert urls["private"].startswith("http://127.0.0.1:9/files/tenants/1/")
    assert "X-Amz-Signature=" in urls["private"]
    assert "cdn.example.com" not in urls["private"]
