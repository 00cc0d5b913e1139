"""The S3-compatible HTTP server of the harness (moto's server mode, ``scripts/services.py``).

The first tests use the suite's server, ``AWS_S3_ENDPOINT_URL`` (started by
``python -m scripts.services run``): skipped without it, failed without it under
``REQUIRE_SERVICES=1``. The last one starts a server of its own to stop it.
"""

from __future__ import annotations

import hashlib
import os
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from scripts.services import ServiceUnavailable, s3_server
from tests.conftest import REQUIRE_SERVICES

MIB = 1024 * 1024
# S3 (and moto, like it) refuses a multipart upload whose parts but the last are under 5 MiB.
MIN_PART_SIZE = 5 * MIB


def _client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "testing",
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "testing",
        region_name=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=2,
            read_timeout=10,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


@pytest.fixture
def s3():
    endpoint = os.environ.get("AWS_S3_ENDPOINT_URL")
    if not endpoint:
        if REQUIRE_SERVICES:
            pytest.fail("REQUIRE_SERVICES=1 and AWS_S3_ENDPOINT_URL is not set")
        pytest.skip("needs AWS_S3_ENDPOINT_URL; run with `python -m scripts.services run -- ...`")
    return _client(endpoint)


@pytest.fixture
def bucket(s3):
    name = f"ils-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for item in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


def _multipart_upload(s3, bucket: str, key: str, parts: list[bytes]) -> dict:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = []
    for number, body in enumerate(parts, start=1):
        answer = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        done.append({"PartNumber": number, "ETag": answer["ETag"]})
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
    )


def test_multipart_object_round_trip_over_http(s3, bucket):
    parts = [os.urandom(MIN_PART_SIZE), os.urandom(1 * MIB)]
    expected = hashlib.sha256(b"".join(parts)).hexdigest()
    key = "reports/big.bin"

    _multipart_upload(s3, bucket, key, parts)

    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert len(body) == 6 * MIB
    assert hashlib.sha256(body).hexdigest() == expected
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="reports/")["Contents"]
    assert [(item["Key"], item["Size"]) for item in listed] == [(key, 6 * MIB)]

    s3.delete_object(Bucket=bucket, Key=key)

    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key=key)
    assert missing.value.response["Error"]["Code"] == "404"


def test_multipart_parts_under_5_mib_are_refused_like_s3(s3, bucket):
    """A 3 MB object in two parts: S3 refuses it, so the harness must not hide that."""
    parts = [os.urandom(3 * MIB // 2), os.urandom(3 * MIB // 2)]

    with pytest.raises(ClientError) as refused:
        _multipart_upload(s3, bucket, "small-parts.bin", parts)

    assert refused.value.response["Error"]["Code"] == "EntityTooSmall"


def test_requests_fail_once_its_own_server_is_stopped():
    try:
        with s3_server() as endpoint:
            s3 = _client(endpoint)
            s3.create_bucket(Bucket="short-lived")
            s3.put_object(Bucket="short-lived", Key="k", Body=b"v")
            assert s3.get_object(Bucket="short-lived", Key="k")["Body"].read() == b"v"
    except ServiceUnavailable as error:
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 and no S3 server could be started: {error}")
        pytest.skip(f"no S3 server: {error}")

    with pytest.raises(EndpointConnectionError):
        s3.get_object(Bucket="short-lived", Key="k")
