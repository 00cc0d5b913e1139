"""Management commands of the tenants app: create_tenant, create_api_key, seed_demo, ensure_staff_user."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tenants.models import ApiKey, Membership, Tenant
from tests.factories import TenantFactory, UserFactory, issue_key, key_client, plan

pytestmark = pytest.mark.django_db
User = get_user_model()
SHOWCASE = ("demo-free", "demo-starter", "demo-pro", "demo-enterprise")


def run(*args: str, **options) -> list[str]:
    """Run a command; its stdout lines."""
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue().splitlines()


# --- create_tenant ----------------------------------------------------------------------------


def test_create_tenant_makes_the_tenant_on_its_plan():
    lines = run("create_tenant", "--slug", "acme", "--name", "Acme Inc", "--plan", "starter")

    tenant = Tenant.objects.get(slug="acme")
    assert (tenant.name, tenant.plan.code, tenant.status) == ("Acme Inc", "starter", "active")
    assert lines == [f"Created tenant acme (Acme Inc) on plan starter, id {tenant.pk}."]


@pytest.mark.parametrize(
    ("slug", "plan_code", "message"),
    [
        ("acme", "gold", "Unknown plan 'gold'. Valid plans: free, starter, pro, enterprise."),
        ("Not A Slug", "pro", "Invalid tenant: slug: Use 1-63 lowercase letters"),
        ("-acme", "pro", "Invalid tenant: slug: Use 1-63 lowercase letters"),
        ("www", "pro", "Invalid tenant: slug: 'www' is reserved."),
        ("taken", "pro", "Invalid tenant: slug: Tenant with this Slug already exists."),
    ],
)
def test_create_tenant_rejects_bad_arguments(slug, plan_code, message):
    TenantFactory(slug="taken")
    with pytest.raises(CommandError) as raised:
        run("create_tenant", f"--slug={slug}", "--name", "X", "--plan", plan_code)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
    assert Tenant.objects.count() == 1


def test_create_tenant_requires_its_arguments():
    with pytest.raises(CommandError, match="required: --name, --plan"):
        run("create_tenant", "--slug", "acme")


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_command_line_errors_are_one_line_without_traceback(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "VAR_DIR": str(tmp_path)}
    migrated = _manage("migrate", "--verbosity", "0", **env)
    assert migrated.returncode == 0, migrated.stderr

    bad_plan = _manage("create_tenant", "--slug", "acme", "--name", "Acme", "--plan", "gold", **env)
    missing = _manage("create_tenant", "--slug", "acme", **env)

    assert bad_plan.returncode == 1
    assert bad_plan.stderr.splitlines() == [
        "CommandError: Unknown plan 'gold'. Valid plans: free, starter, pro, enterprise."
    ]
    assert missing.returncode != 0
    assert missing.stderr.splitlines() == [
        "manage.py create_tenant: error: the following arguments are required: --name, --plan"
    ]


# --- create_api_key ---------------------------------------------------------------------------


def test_create_api_key_prints_a_working_key_last():
    tenant = TenantFactory(slug="keyed")

    lines = run("create_api_key", "--tenant", "keyed", "--name", "ci")

    api_key = ApiKey.all_tenants.get(tenant=tenant)
    assert (api_key.name, api_key.scopes, api_key.expires_at) == ("ci", ["read", "write"], None)
    assert lines[0].startswith(f"Created API key 'ci' for tenant keyed (prefix {api_key.prefix}")
    response = key_client(lines[-1]).get("/api/v1/tenant/")
    assert response.status_code == 200
    assert response.json()["slug"] == "keyed"


def test_create_api_key_with_scopes_and_expiry():
    tenant = TenantFactory(slug="keyed")

    run(
        "create_api_key",
        "--tenant",
        "keyed",
        "--name",
        "ro",
        "--scopes",
        "read",
        "--expires-in-days",
        "7",
    )

    api_key = ApiKey.all_tenants.get(tenant=tenant)
    assert api_key.scopes == ["read"]
    assert abs(api_key.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nope"], "No tenant has the slug 'nope'."),
        (["--scopes", "read,admin"], "Invalid scopes 'read,admin'. Use a comma-separated list"),
        (["--scopes", ","], "Invalid scopes ','."),
        (["--expires-in-days", "0"], "--expires-in-days must be a positive number of days."),
        (["--expires-in-days", "soon"], "Error: argument --expires-in-days: invalid int value"),
        (["--name", " "], "--name must be 1 to 100 characters."),
    ],
)
def test_create_api_key_rejects_bad_arguments(args, message):
    TenantFactory(slug="keyed")
    with pytest.raises(CommandError) as raised:
        run("create_api_key", "--tenant", "keyed", "--name", "ci", *args)
    assert str(raised.value).startswith(message)
    assert not ApiKey.all_tenants.exists()


def test_create_api_key_respects_the_key_quota():
    tenant = TenantFactory(slug="small", plan=plan("free"))  # max_api_keys 2
    issue_key(tenant)
    issue_key(tenant)
    with pytest.raises(CommandError, match=r"allows 2 \(max_api_keys\)"):
        run("create_api_key", "--tenant", "small", "--name", "third")
    assert ApiKey.all_tenants.filter(tenant=tenant).count() == 2


# --- seed_demo --------------------------------------------------------------------------------


def _counts() -> tuple[int, int, int, int]:
    return (
        Tenant.objects.count(),
        User.objects.count(),
        Membership.all_tenants.count(),
        ApiKey.all_tenants.count(),
    )


def _demo_keys(lines: list[str]) -> dict[str, str]:
    """``{slug: key}`` from seed_demo's key table."""
    return {
        slug: key
        for slug, _plan, key in (line.split() for line in lines if line.startswith("demo-"))
    }


def test_seed_demo_makes_one_showcase_tenant_per_plan():
    lines = run("seed_demo")

    for slug, code in zip(SHOWCASE, ("free", "starter", "pro", "enterprise"), strict=True):
        tenant = Tenant.objects.get(slug=slug)
        assert tenant.plan.code == code
        members = Membership.all_tenants.filter(tenant=tenant).select_related("user")
        assert {(m.role, m.user.username, m.user.email) for m in members} == {
            (role, f"{role}@{slug}.example", f"{role}@{slug}.example")
            for role in ("owner", "admin", "member")
        }
        assert not any(m.user.has_usable_password() for m in members)
        assert ApiKey.all_tenants.filter(tenant=tenant, name="demo key").count() == 1
    assert "Showcase tenants: 4 created, 0 already present." in lines
    keys = _demo_keys(lines)
    assert set(keys) == set(SHOWCASE)
    assert key_client(keys["demo-pro"]).get("/api/v1/tenant/").json()["slug"] == "demo-pro"


def test_seed_demo_is_idempotent():
    run("seed_demo", "--tenants", "12")
    before = _counts()

    lines = run("seed_demo", "--tenants", "12")

    assert _counts() == before == (16, 24, 24, 4)
    assert "Showcase tenants: 0 created, 4 already present." in lines
    assert "Bulk demo tenants: 0 created, 12 already present." in lines
    assert _demo_keys(lines) == {}  # existing keys are kept, and their secrets are gone


def test_seed_demo_makes_a_missing_demo_key_only():
    run("seed_demo")
    ApiKey.all_tenants.filter(tenant__slug="demo-starter").delete()

    keys = _demo_keys(run("seed_demo"))

    assert list(keys) == ["demo-starter"]
    assert ApiKey.all_tenants.filter(name="demo key").count() == 4


def test_seed_demo_bulk_tenants_have_one_owner_each():
    lines = run("seed_demo", "--tenants", "50")

    bulk = Tenant.objects.filter(slug__regex=r"^demo-[0-9]{5}$")
    assert sorted(bulk.values_list("slug", flat=True)) == [f"demo-{n:05d}" for n in range(1, 51)]
    owners = Membership.all_tenants.filter(tenant__in=bulk).select_related("tenant", "user")
    assert len(owners) == 50
    for owner in owners:
        assert owner.role == "owner"
        assert owner.user.username == f"owner@{owner.tenant.slug}.example"
        assert not owner.user.has_usable_password()
    per_plan = {
        code: bulk.filter(plan__code=code).count()
        for code in ("free", "starter", "pro", "enterprise")
    }
    assert per_plan == {"free": 13, "starter": 13, "pro": 12, "enterprise": 12}
    assert "Bulk demo tenants: 50 created, 0 already present." in lines


def test_seed_demo_grows_the_bulk_set_to_the_requested_total():
    run("seed_demo", "--tenants", "5")
    lines = run("seed_demo", "--tenants", "8")
    assert "Bulk demo tenants: 3 created, 5 already present." in lines
    assert Membership.all_tenants.filter(tenant__slug__startswith="demo-0").count() == 8


def test_seed_demo_bulk_queries_do_not_grow_per_tenant():
    run("seed_demo")  # the showcase tenants, made one by one through the services

    def queries_for(total: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            run("seed_demo", "--tenants", str(total))
        return len(queries)

    for_100, for_500 = queries_for(100), queries_for(500)  # 100 new tenants, then 400 more

    assert Membership.all_tenants.filter(tenant__slug__startswith="demo-0").count() == 500
    assert for_500 - for_100 < 40  # a few more INSERT batches; per-row saves would add 1,200+


def test_rotate_demo_keys_replaces_the_old_keys(django_capture_on_commit_callbacks):
    old = _demo_keys(run("seed_demo"))["demo-pro"]
    assert key_client(old).get("/api/v1/tenant/").status_code == 200  # cached now

    with django_capture_on_commit_callbacks(execute=True):
        lines = run("seed_demo", "--rotate-demo-keys")

    new = _demo_keys(lines)
    assert set(new) == set(SHOWCASE)
    assert key_client(old).get("/api/v1/tenant/").status_code == 401
    assert key_client(new["demo-pro"]).get("/api/v1/tenant/").status_code == 200
    assert ApiKey.all_tenants.filter(name="demo key").count() == 4


def test_seed_demo_rejects_a_bad_count():
    with pytest.raises(CommandError, match="--tenants must be between 0 and"):
        run("seed_demo", "--tenants", "-1")
    assert not Tenant.objects.exists()


# --- ensure_staff_user ------------------------------------------------------------------------


@pytest.fixture
def no_admin_env(monkeypatch):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("ADMIN_USERNAME", raising=False)


def test_ensure_staff_user_creates_a_superuser_with_a_printed_password(no_admin_env):
    lines = run("ensure_staff_user", "--email", "ops@example.com")

    user = User.objects.get(username="admin")
    assert (user.is_staff, user.is_superuser, user.email) == (True, True, "ops@example.com")
    assert lines[0] == "Created staff superuser 'admin'."
    password = lines[1].removeprefix("Password (shown once): ")
    assert len(password) >= 20
    assert user.check_password(password)


def test_ensure_staff_user_keeps_an_existing_password(no_admin_env):
    run("ensure_staff_user")
    hashed = User.objects.get(username="admin").password

    lines = run("ensure_staff_user")

    assert User.objects.get(username="admin").password == hashed
    assert lines == [
        "Staff user 'admin' exists; password unchanged. To reset it: ADMIN_PASSWORD=... make run"
    ]


def test_ensure_staff_user_takes_its_password_and_name_from_the_environment(monkeypatch):
    monkeypatch.setenv("ADMIN_USERNAME", "root")
    monkeypatch.setenv("ADMIN_PASSWORD", "first long passphrase")
    run("ensure_staff_user")
    assert User.objects.get(username="root").check_password("first long passphrase")

    monkeypatch.setenv("ADMIN_PASSWORD", "second long passphrase")
    lines = run("ensure_staff_user")

    assert User.objects.get(username="root").check_password("second long passphrase")
    assert lines == ["Password of 'root' set from ADMIN_PASSWORD."]
    assert User.objects.count() == 1


def test_ensure_staff_user_promotes_an_existing_plain_user(no_admin_env):
    UserFactory(username="admin", is_staff=False, password="!")

    lines = run("ensure_staff_user")

    user = User.objects.get(username="admin")
    assert user.is_staff and user.is_superuser
    assert lines[0] == "Made the existing user 'admin' an active staff superuser."


def test_ensure_staff_user_rejects_a_bad_username(no_admin_env):
    with pytest.raises(CommandError, match="Invalid username 'bad name!'"):
        run("ensure_staff_user", "--username", "bad name!")
    assert not User.objects.exists()
