"""Storage tests run on local disk and on the harness's S3 server (moto), through boto3."""

from __future__ import annotations

import os
import uuid

import boto3
import pytest


@pytest.fixture(params=["local", "s3"])
def backend(request, settings, tmp_path):
    """The files storage, on local disk or on the harness's S3 server; yields a lister of keys."""
    if request.param == "local":
        settings.STORAGES = {
            **settings.STORAGES,
            "local": {**settings.STORAGES["local"], "OPTIONS": {"location": tmp_path}},
        }
        settings.FILES_STORAGE = "local"
        yield lambda: sorted(
            str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file()
        )
        return
    endpoint = os.environ.get("AWS_S3_ENDPOINT_URL")
    if not endpoint:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail("REQUIRE_SERVICES=1 and no AWS_S3_ENDPOINT_URL")
        pytest.skip("needs AWS_S3_ENDPOINT_URL (an S3 server); run with `make test`")
    bucket = f"files-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **settings.STORAGES,
        "s3": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": endpoint,
                "region_name": "us-east-1",
                "default_acl": None,
                "querystring_auth": True,
                "file_overwrite": False,
                "signature_version": "s3v4",
            },
        },
    }
    settings.FILES_STORAGE = "s3"
    yield lambda: sorted(
        o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])
    )
