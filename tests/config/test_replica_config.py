"""Replica configuration and routing rules that need no running replica."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.db_router import ReplicaRouter

ROOT = Path(__file__).resolve().parents[2]


def test_malformed_replica_url_fails_the_system_check_naming_the_variable():
    env = dict(
        os.environ,
        DATABASE_URL="postgres://app@db.invalid:5432/app",
        USE_READ_REPLICAS="1",
        DATABASE_READ_REPLICAS="mysql://replica.invalid/app",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "config.E001" in result.stderr
    assert "DATABASE_READ_REPLICAS (entry 1)" in result.stderr


def test_migrations_only_on_the_primary():
    router = ReplicaRouter()
    assert router.allow_migrate("default", "tenants") is True
    assert router.allow_migrate("replica_1", "tenants") is False


@pytest.mark.django_db
def test_ops_endpoint_refuses_non_staff_in_the_error_shape(api_client, django_user_model):
    user = django_user_model.objects.create_user(username="member", password="x" * 12)
    api_client.force_login(user)
    response = api_client.get("/api/ops/replicas")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    api_client.logout()
    assert api_client.get("/api/ops/replicas").status_code in (401, 403)


@pytest.mark.django_db
def test_ops_endpoint_without_replicas(api_client, django_user_model):
    staff = django_user_model.objects.create_user(username="ops", password="x" * 12, is_staff=True)
    api_client.force_login(staff)
    body = api_client.get("/api/ops/replicas").json()
    assert body["enabled"] is False
    assert [row["alias"] for row in body["databases"]] == ["default"]
