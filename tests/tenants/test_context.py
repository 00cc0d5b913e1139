"""The tenant context: ``tenant_scope`` / ``unscoped`` / ``require_tenant`` and how they travel."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tenants import context
from tenants.context import (
    current_tenant,
    require_tenant,
    tenant_scope,
    unscoped,
)
from tenants.exceptions import TenantScopeMissing
from tenants.models import Tenant
from tests.factories import TenantFactory, plan

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


@pytest.fixture
def tenant_a() -> Tenant:
    return TenantFactory(slug="ctx-a")


@pytest.fixture
def tenant_b() -> Tenant:
    return TenantFactory(slug="ctx-b")


def test_no_tenant_outside_any_scope():
    assert current_tenant() is None


def test_tenant_scope_sets_and_resets(tenant_a):
    with tenant_scope(tenant_a) as entered:
        assert entered is tenant_a
        assert current_tenant() is tenant_a
        assert require_tenant() is tenant_a
    assert current_tenant() is None


def test_tenant_scope_resets_when_the_body_raises(tenant_a):
    with pytest.raises(Boom), tenant_scope(tenant_a):
        assert current_tenant() is tenant_a
        raise Boom()
    assert current_tenant() is None


def test_nested_scopes_restore_the_outer_tenant(tenant_a, tenant_b):
    with tenant_scope(tenant_a):
        with tenant_scope(tenant_b):
            assert current_tenant() is tenant_b
        assert current_tenant() is tenant_a
        with pytest.raises(Boom), tenant_scope(tenant_b):
            raise Boom()
        assert current_tenant() is tenant_a
    assert current_tenant() is None


def test_tenant_scope_refuses_an_unsaved_tenant():
    unsaved = Tenant(slug="not-saved", name="Not saved", plan=plan())
    with pytest.raises(ValueError, match="saved Tenant"), tenant_scope(unsaved):
        pass
    with pytest.raises(ValueError), tenant_scope(None):
        pass
    assert current_tenant() is None


def test_unscoped_clears_then_restores(tenant_a):
    with tenant_scope(tenant_a):
        with unscoped():
            assert current_tenant() is None
            with pytest.raises(TenantScopeMissing):
                require_tenant()
        assert current_tenant() is tenant_a
        with pytest.raises(Boom), unscoped():
            raise Boom()
        assert current_tenant() is tenant_a


def test_unscoped_outside_a_scope_stays_unscoped():
    with unscoped():
        assert current_tenant() is None
    assert current_tenant() is None


def test_require_tenant_raises_outside_a_scope():
    with pytest.raises(TenantScopeMissing) as caught:
        require_tenant()
    assert caught.value.default_code == "tenant_scope_missing"


def test_a_new_thread_does_not_inherit_the_scope(tenant_a):
    """threading.Thread starts with an empty context: a scope never leaks into a worker thread."""
    seen: list[object] = []

    def worker() -> None:
        seen.append(current_tenant())
        try:
            require_tenant()
        except TenantScopeMissing as error:
            seen.append(error)

    with tenant_scope(tenant_a):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert current_tenant() is tenant_a

    assert seen[0] is None
    assert isinstance(seen[1], TenantScopeMissing)


def test_a_scope_set_in_a_thread_does_not_leak_out(tenant_a, tenant_b):
    seen: list[object] = []

    def worker() -> None:
        with tenant_scope(tenant_b):
            seen.append(current_tenant())

    with tenant_scope(tenant_a):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert current_tenant() is tenant_a
    assert seen == [tenant_b]


def test_asyncio_tasks_inherit_the_scope_but_do_not_leak_back(tenant_a, tenant_b):
    async def child(events: list[tuple[str, object]]) -> None:
        events.append(("child sees", current_tenant()))
        with tenant_scope(tenant_b):
            events.append(("child scoped", current_tenant()))
            await asyncio.sleep(0)
        # even a scope set without the context manager must not leak back to the parent
        context._current_scope.set(context.Scope(tenant_b))
        events.append(("child set", current_tenant()))

    async def parent() -> list[tuple[str, object]]:
        events: list[tuple[str, object]] = []
        with tenant_scope(tenant_a):
            await asyncio.gather(asyncio.create_task(child(events)), child(events))
            events.append(("parent after", current_tenant()))
        events.append(("parent outside", current_tenant()))
        return events

    events = asyncio.run(parent())
    assert events.count(("child sees", tenant_a)) == 2
    assert events.count(("child scoped", tenant_b)) == 2
    assert events.count(("child set", tenant_b)) == 2
    assert events[-2:] == [("parent after", tenant_a), ("parent outside", None)]
    assert current_tenant() is None


def test_concurrent_tasks_keep_their_own_scopes(tenant_a, tenant_b):
    async def scoped_worker(tenant: Tenant) -> list[Tenant | None]:
        seen = []
        with tenant_scope(tenant):
            for _ in range(5):
                seen.append(current_tenant())
                await asyncio.sleep(0)
        seen.append(current_tenant())
        return seen

    async def main():
        return await asyncio.gather(*(scoped_worker(t) for t in [tenant_a, tenant_b] * 4))

    results = asyncio.run(main())
    for index, seen in enumerate(results):
        expected = tenant_a if index % 2 == 0 else tenant_b
        assert seen == [expected] * 5 + [None]
