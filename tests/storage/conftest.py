"""Storage tests run on local disk and on the harness's S3 server (moto), through boto3."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from django.conf import settings


def _s3_endpoint() -> str:
    endpoint = os.environ.get("AWS_S3_ENDPOINT_URL")
    if not endpoint:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail("REQUIRE_SERVICES=1 and no AWS_S3_ENDPOINT_URL")
        pytest.skip("needs AWS_S3_ENDPOINT_URL (an S3 server); run with `make test`")
    return endpoint


def _local_files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


@dataclass
class Bucket:
    """A fresh bucket on the harness's S3 server and the ``STORAGES`` entry that uses it."""

    endpoint: str
    name: str

    @classmethod
    def create(cls) -> Bucket:
        bucket = cls(_s3_endpoint(), f"files-{uuid.uuid4().hex[:12]}")
        bucket.client.create_bucket(Bucket=bucket.name)
        return bucket

    @property
    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def keys(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def storage(self) -> dict:
        """The ``STORAGES`` entry the settings would make for this bucket (``FILES_S3_OPTIONS``)."""
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                **settings.FILES_S3_OPTIONS,
                "bucket_name": self.name,
                "endpoint_url": self.endpoint,
                "region_name": "us-east-1",
            },
        }


@pytest.fixture(params=["local", "s3"])
def backend(request, settings, tmp_path):
    """The files storage, on local disk or on the harness's S3 server; yields a lister of keys."""
    if request.param == "local":
        settings.STORAGES = {
            **settings.STORAGES,
            "local": {**settings.STORAGES["local"], "OPTIONS": {"location": tmp_path}},
        }
        settings.FILES_STORAGE = "local"
        yield lambda: _local_files(tmp_path)
        return
    bucket = Bucket.create()
    settings.STORAGES = {**settings.STORAGES, "s3": bucket.storage()}
    settings.FILES_STORAGE = "s3"
    yield bucket.keys


@dataclass
class StoragePair:
    """``local`` (files under ``upload_dir``/files) and ``s3`` (``bucket``), both configured; ``env``
    configures a ``manage.py`` process the same way (the settings read these variables)."""

    upload_dir: Path
    bucket: Bucket

    @property
    def local_root(self) -> Path:
        return self.upload_dir / "files"

    def local_keys(self) -> list[str]:
        return _local_files(self.local_root)

    def env(self, database_url: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": database_url,
            "UPLOAD_DIR": str(self.upload_dir),
            "AWS_S3_BUCKET": self.bucket.name,
            "AWS_S3_ENDPOINT_URL": self.bucket.endpoint,
            "AWS_S3_REGION": "us-east-1",
        }


@pytest.fixture
def storage_pair(settings, tmp_path) -> StoragePair:
    """Uploads go to ``local``; ``s3`` is configured beside it (what ``migrate_storage`` moves
    between)."""
    pair = StoragePair(tmp_path / "uploads", Bucket.create())
    settings.STORAGES = {
        **settings.STORAGES,
        "local": {**settings.STORAGES["local"], "OPTIONS": {"location": pair.local_root}},
        "s3": pair.bucket.storage(),
    }
    settings.FILES_STORAGE = "local"
    return pair
