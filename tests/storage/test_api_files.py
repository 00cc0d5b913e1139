"""``/api/v1/files/``: uploads that stream and trust nothing, listing, links, deletion, isolation.

Every test runs on local disk and on the harness's S3 server (the ``backend`` fixture)."""

from __future__ import annotations

import hashlib
import urllib.request
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from queues.models import Job
from storage.models import StoredFile
from tenants.limits.quotas import quota_usage
from tenants.limits.registry import STORAGE_BYTES
from tests.assertions import assert_error
from tests.factories import TenantFactory, issue_key, key_client, plan

pytestmark = pytest.mark.django_db

URL = "/api/v1/files/"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 40


@pytest.fixture
def tenant():
    return TenantFactory(plan=plan("pro"))


@pytest.fixture
def writer(tenant):
    return key_client(issue_key(tenant)[1])


def upload(client, data: bytes, name: str = "photo.png", raw: bool = False):
    if raw:
        return client.post(
            f"{URL}?filename={name}", data=data, content_type="application/octet-stream"
        )
    from django.core.files.uploadedfile import SimpleUploadedFile

    claimed = SimpleUploadedFile(name, data, content_type="text/html")  # a lie, never trusted
    return client.post(URL, {"file": claimed}, format="multipart")


def _fetch(client, response) -> bytes:
    """Follow a download redirect: a local signed link through Django, an S3 one over HTTP."""
    location = response["Location"]
    if location.startswith("/"):
        answer = client.get(location)
        assert answer.status_code == 200, answer.content
        return b"".join(answer.streaming_content)
    with urllib.request.urlopen(location, timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Disposition"].startswith("attachment")
        return answer.read()


@pytest.mark.parametrize("raw", [False, True])
def test_an_upload_is_stored_from_its_bytes_and_reads_back(backend, tenant, writer, raw):
    response = upload(writer, PNG, name="../holiday photo.txt", raw=raw)

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["size"], body["content_type"]) == (len(PNG), "image/png")
    assert body["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert body["name"].endswith("holiday photo.txt")  # Django strips a multipart path
    assert backend() == [StoredFile.all_tenants.get(pk=body["id"]).key]
    assert writer.get(f"{URL}{body['id']}/").json() == body
    download = writer.get(f"{URL}{body['id']}/download/")
    assert download.status_code == 302 and download["Cache-Control"] == "no-store, private"
    assert _fetch(writer, download) == PNG
    assert quota_usage(tenant, STORAGE_BYTES) == len(PNG)


def test_html_is_refused_whatever_it_claims_to_be(backend, writer):
    response = upload(writer, b"<html><script>alert(1)</script></html>", name="cat.png")

    error = assert_error(response, 415, "unsupported_file_type")
    assert error["details"]["detected"] == "text/html"
    assert backend() == []


def test_an_upload_past_the_file_size_stops_with_413_and_keeps_nothing(backend):
    tenant = TenantFactory(limit_overrides={"max_file_bytes": 1000})
    client = key_client(issue_key(tenant)[1])

    error = assert_error(upload(client, PNG), 413, "quota_exceeded")

    assert error["details"]["resource"] == "max_file_bytes"
    assert backend() == [] and quota_usage(tenant, STORAGE_BYTES) == 0


def test_an_upload_past_the_storage_left_stops_with_403(backend):
    tenant = TenantFactory(limit_overrides={"storage_bytes": len(PNG) + 100})
    client = key_client(issue_key(tenant)[1])
    assert upload(client, PNG).status_code == 201

    error = assert_error(upload(client, PNG), 403, "quota_exceeded")

    assert error["details"]["resource"] == "storage_bytes"
    assert len(backend()) == 1 and quota_usage(tenant, STORAGE_BYTES) == len(PNG)


@override_settings(FILES_MAX_UPLOAD_BYTES=5000)
def test_a_declared_body_over_the_ceiling_is_refused_before_it_is_read(writer):
    response = writer.generic(
        "POST", URL, b"x" * 10, CONTENT_TYPE="application/octet-stream", CONTENT_LENGTH="6000"
    )

    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "body", [{}, {"file": "not a file"}, {"other": "x"}], ids=["empty", "text", "other"]
)
def test_a_multipart_body_without_one_file_is_invalid(backend, writer, body):
    error = assert_error(writer.post(URL, body, format="multipart"), 400, "invalid")

    assert "file" in error["details"]
    assert backend() == []


def test_a_json_body_is_unsupported(writer):
    assert_error(writer.post(URL, {"file": "x"}, format="json"), 415, "unsupported_media_type")


def test_the_list_is_the_tenants_own_live_files_filtered(backend, tenant, writer):
    other = key_client(issue_key(TenantFactory())[1])
    upload(other, PNG)
    png = upload(writer, PNG).json()
    text = upload(writer, b"plain notes\n", name="notes.txt").json()
    gone = upload(writer, PNG).json()
    writer.delete(f"{URL}{gone['id']}/")

    def ids(**params):
        return [row["id"] for row in writer.get(URL, params).json()["results"]]

    assert ids() == [text["id"], png["id"]]  # newest first; the deleted one is gone
    assert ids(type="image/") == [png["id"]] and ids(type="text/plain") == [text["id"]]
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert ids(created_after=future) == [] and ids(created_before=future) == ids()
    assert_error(writer.get(URL, {"created_after": "yesterday"}), 400, "invalid")
    # an offset Python takes and PostgreSQL would refuse; a naive moment is UTC
    assert ids(created_after="0774-08-08T17:58:14.8+20:30") == ids()
    assert ids(created_before="2000-01-01T00:00:00") == []


def test_an_empty_raw_body_is_an_empty_file(backend, tenant, writer):
    response = writer.post(
        f"{URL}?filename=empty.bin", data=b"", content_type="application/octet-stream"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["size"], body["content_type"]) == (0, "application/octet-stream")


def test_deleting_hides_the_file_and_a_job_purges_its_bytes_later(backend, tenant, writer):
    body = upload(writer, PNG).json()

    assert writer.delete(f"{URL}{body['id']}/").status_code == 204

    assert_error(writer.get(f"{URL}{body['id']}/"), 404, "not_found")
    assert_error(writer.get(f"{URL}{body['id']}/download/"), 404, "not_found")
    purge = Job.all_tenants.get(kind="storage.purge_file")
    assert purge.payload == {"file": body["id"]} and purge.status == "scheduled"
    assert purge.run_at > timezone.now() + timedelta(hours=23)
    assert len(backend()) == 1  # kept until the purge

    from queues import runner

    Job.all_tenants.filter(pk=purge.pk).update(run_at=timezone.now())
    assert runner.run_job(purge.pk, worker="test") == "succeeded"
    assert backend() == [] and not StoredFile.all_tenants.exists()
    assert quota_usage(tenant, STORAGE_BYTES) == 0


def test_another_tenant_can_neither_see_read_link_nor_delete_a_file(backend, writer):
    body = upload(writer, PNG).json()
    other = key_client(issue_key(TenantFactory())[1])

    for call in (
        lambda: other.get(f"{URL}{body['id']}/"),
        lambda: other.get(f"{URL}{body['id']}/download/"),
        lambda: other.delete(f"{URL}{body['id']}/"),
    ):
        assert_error(call(), 404, "not_found")
    assert other.get(URL).json()["results"] == []
    assert StoredFile.all_tenants.get(pk=body["id"]).deleted_at is None


def test_a_local_link_is_for_one_file_only_and_expires(tenant, writer, settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "local": {**settings.STORAGES["local"], "OPTIONS": {"location": tmp_path}},
    }
    settings.FILES_STORAGE = "local"
    first = upload(writer, PNG).json()
    link = writer.get(f"{URL}{first['id']}/download/")["Location"]
    anonymous = APIClient()  # a link needs no key

    answer = anonymous.get(link)
    assert answer.status_code == 200
    assert answer["Content-Disposition"].startswith("attachment")
    assert (
        answer["X-Content-Type-Options"] == "nosniff"
        and "sandbox" in answer["Content-Security-Policy"]
    )

    token = link.rstrip("/").rsplit("/", 1)[-1]
    assert_error(anonymous.get(link.replace(token, token[:-2] + "xx")), 404, "not_found")
    settings.FILE_URL_SECONDS = -1  # every link is now past its life
    assert_error(anonymous.get(link), 403, "link_expired")
