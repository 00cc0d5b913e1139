"""Cache state that belongs to a scope ends with it, seen from a long-lived second process.

A Celery worker, a management command or a thread pool keeps one ``Tenant`` object for many units
of work. These tests run such a process (a child that stays alive across scopes) while this test
process invalidates, and check that the child's next scope sees the change:

* a bumped tenant generation (``tenant_cache_invalidate``) makes the child's next scope recompute,
  even though it reuses the very same ``Tenant`` object;
* a revoked API key is answered as revoked in the child's next scope, even though the child first
  resolved it inside a tenant scope.

They commit (``transaction=True``) so the child sees the rows, and need PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tenants import services
from tenants.cache import tenant_cache_invalidate
from tenants.models import ApiKey
from tests.child_process import ROOT
from tests.degradation.flag_helpers import test_database_url
from tests.factories import TenantFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.redis,
]


class LongLivedChild:
    """A Django process that runs ``first``, waits for ``resume()``, then runs ``second``.

    Both snippets run in the same interpreter with the same objects (names ``first`` defines are
    there for ``second``); each prints a JSON line that ``resume`` and ``__init__`` read.
    """

    def __init__(self, first: str, second: str, **variables: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
        env.update(DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL=test_database_url())
        env.update(variables)
        script = "\n".join(
            [
                "import django, json, sys",
                "django.setup()",
                textwrap.dedent(first),
                "sys.stdout.flush()",
                "sys.stdin.readline()",
                textwrap.dedent(second),
            ]
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.first = self._read()

    def _read(self):
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=30)
            raise AssertionError(f"child failed: {self.process.stderr.read()}")
        return json.loads(line)

    def resume(self):
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        second = self._read()
        self.process.wait(timeout=30)
        return second

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture
def child_factory():
    children: list[LongLivedChild] = []

    def start(first: str, second: str, **variables: str) -> LongLivedChild:
        children.append(LongLivedChild(first, second, **variables))
        return children[-1]

    yield start
    for child in children:
        child.kill()


def test_a_long_lived_process_sees_a_generation_bump_made_elsewhere_in_its_next_scope(
    child_factory,
):
    tenant = TenantFactory()
    child = child_factory(
        """
        import os
        from tenants.cache import tenant_cache
        from tenants.context import tenant_scope
        from tenants.models import Tenant

        tenant = Tenant.objects.select_related("plan").get(pk=int(os.environ["TENANT_ID"]))
        with tenant_scope(tenant):
            before = tenant_cache.get_or_set("answer", lambda: "computed first")
        print(json.dumps(before))
        """,
        """
        with tenant_scope(tenant):  # the same Tenant object, a new scope
            after = tenant_cache.get_or_set("answer", lambda: "computed again")
        print(json.dumps(after))
        """,
        TENANT_ID=str(tenant.pk),
    )
    assert child.first == "computed first"

    tenant_cache_invalidate(tenant.pk)  # another process: this one

    assert child.resume() == "computed again"


def test_a_key_revoked_elsewhere_is_revoked_in_the_next_scope_of_a_long_lived_process(
    child_factory,
):
    tenant = TenantFactory()
    issued = services.api_key_create(tenant=tenant, name="worker")
    child = child_factory(
        """
        import os
        from tenants.context import tenant_scope
        from tenants.models import Tenant
        from tenants.resolution import resolve_api_key

        tenant = Tenant.objects.select_related("plan").get(pk=int(os.environ["TENANT_ID"]))
        with tenant_scope(tenant):  # e.g. a job that calls our own API with the tenant's key
            print(json.dumps(resolve_api_key(os.environ["SECRET"]).error))
        """,
        """
        with tenant_scope(tenant):
            print(json.dumps(resolve_api_key(os.environ["SECRET"]).error))
        """,
        TENANT_ID=str(tenant.pk),
        SECRET=issued.secret,
    )
    assert child.first is None  # valid

    services.api_key_revoke(api_key=ApiKey.all_tenants.get(pk=issued.api_key.pk))

    assert child.resume() == "revoked"
