"""The tenant-keyed cache, the global cache, tenant generations and the ``tenant_cache`` API.

Two aliases, so that no key depends on whether its caller happens to be inside a scope:

- ``default``, the tenant cache. Key function ``tenants.cache.make_key``:
  ``<KEY_PREFIX>:<VERSION>:t:<tenant_id>:<generation>:<key>``. It needs a tenant scope: outside one
  it raises ``TenantScopeMissing`` (fails closed), so tenant data can never land under a global key;
- ``global`` (``global_cache()``), for data that is global by nature: tenant generations, cached
  resolutions of keys, tenants, plans and memberships (``tenants.resolution``), replica pins
  (``config.db_router``), health probes. Django's plain key function: its keys are the same in and
  out of every scope, and nobody has to remember ``unscoped()``.

Invariant (isolation): the current scope, never the caller, puts the tenant id into the key, so two
tenants' identical keys can never name the same entry.

Invariant (invalidation): a tenant's generation is an integer in the global cache under
``tenants:gen:<tenant_id>``. ``tenant_cache_invalidate`` increments it (one INCR, no SCAN): every
key the tenant wrote before is unreachable from then on and expires by its TTL. A generation that
is missing (never read, evicted, Redis restarted) is seeded from the clock in microseconds, never
from 1, so a re-seeded generation cannot make old entries reachable again.

Invariant (the generation is the scope's): it is read at most once per scope and remembered on the
scope (``tenants.context.Scope``), never across scopes: a worker that keeps one ``Tenant`` object
for many jobs reads it afresh in each, so it sees another process's bump in its next scope. A
request's resolution reads it together with the key, tenant and plan and hands it to the scope.
Reads of generations go through this process's mirror of the global cache (``tenants.mirror``),
which every bump here announces, so a warm read costs no round trip.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest, HttpResponse
from rest_framework.request import Request
from rest_framework.response import Response

from tenants.context import Scope, current_scope, current_tenant, require_tenant
from tenants.exceptions import TenantScopeMissing
from tenants.mirror import GLOBAL_ALIAS, global_mirror

if TYPE_CHECKING:
    from django.db.models import Model

    from tenants.models import Tenant

CACHE_ALIAS = "default"
_MISSING = object()
_BULK_CHUNK = 1000

_counters: defaultdict[int, dict[str, int]] = defaultdict(lambda: {"hits": 0, "misses": 0})
_counters_lock = threading.Lock()


def global_cache() -> BaseCache:
    """The cache of global data (see the module docstring); its keys never depend on a scope."""
    return caches[GLOBAL_ALIAS]


def make_key(key: str, key_prefix: str, version: int) -> str:
    """The tenant cache's KEY_FUNCTION: Django's ``prefix:version:key`` with ``t:<id>:<gen>:``."""
    scope = current_scope()
    if scope is None:
        raise TenantScopeMissing(
            "The tenant cache needs a tenant scope; keep global data in tenants.cache.global_cache()."
        )
    return f"{key_prefix}:{version}:t:{scope.tenant.pk}:{_generation(scope)}:{key}"


def generation_key(tenant_id: int) -> str:
    """The key of the tenant's generation in the global cache."""
    return f"tenants:gen:{tenant_id}"


def _seed() -> int:
    return time.time_ns() // 1000


def read_generation(tenant_id: int) -> int:
    """The tenant's generation (from this process's mirror when fresh), seeded when missing."""
    found = global_mirror.get_many([generation_key(tenant_id)]).get(generation_key(tenant_id))
    return found if found is not None else seed_generation(tenant_id)


def seed_generation(tenant_id: int) -> int:
    """The generation of a tenant that has none yet: a clock seed, or the one a racer just set."""
    store, key, seed = global_cache(), generation_key(tenant_id), _seed()
    return seed if store.add(key, seed, timeout=None) else store.get(key, seed)


def _generation(scope: Scope) -> int:
    if scope.cache_generation is None:
        scope.cache_generation = read_generation(scope.tenant.pk)
    return scope.cache_generation


def _forget_generation(tenant_id: int, generation: int | None) -> None:
    """A bump made in this scope applies to the rest of it at once."""
    scope = current_scope()
    if scope is not None and scope.tenant.pk == tenant_id:
        scope.cache_generation = generation


def tenant_cache_invalidate(tenant: Tenant | int) -> None:
    """Make every cached key of the tenant unreachable in O(1): INCR of its generation."""
    tenant_id = getattr(tenant, "pk", tenant)
    store, key = global_cache(), generation_key(tenant_id)
    try:
        generation = store.incr(key)
    except ValueError:
        # Never read or evicted. A reader may be seeding it right now with data read before
        # this write committed: overwrite with a later seed so that data is never reachable.
        generation = _seed()
        store.set(key, generation, timeout=None)
    global_mirror.changed([key])
    _forget_generation(tenant_id, generation)


def tenant_cache_invalidate_many(tenant_ids: Iterable[int]) -> None:
    """Invalidate many tenants (e.g. every tenant of a changed plan), one round trip per 1000.

    Deleting a generation key invalidates like an INCR: the next read seeds a new generation from
    the clock, which no entry of that tenant was written under. Deleting batches is one round trip
    per ``_BULK_CHUNK`` tenants where INCR would be one per tenant.
    """
    ids = list(tenant_ids)
    for start in range(0, len(ids), _BULK_CHUNK):
        chunk = ids[start : start + _BULK_CHUNK]
        global_mirror.delete_many([generation_key(tenant_id) for tenant_id in chunk])
    for tenant_id in ids:
        _forget_generation(tenant_id, None)


def _count(tenant_id: int, outcome: str) -> None:
    with _counters_lock:
        _counters[tenant_id][outcome] += 1


def cache_counters() -> dict[int, dict[str, int]]:
    """Hits and misses of ``tenant_cache`` and cached views in this process: ``{tenant_id: {...}}``.

    Counters only grow; a metrics exporter reads them as Prometheus counters.
    """
    with _counters_lock:
        return {tenant_id: dict(counts) for tenant_id, counts in _counters.items()}


class TenantCache:
    """The cache other apps use for per-tenant data. It needs a tenant scope (fails closed)."""

    def get_or_set(
        self, key: str, default: Callable[[], Any], timeout: Any = DEFAULT_TIMEOUT
    ) -> Any:
        """The cached value of ``key`` for the current tenant; on a miss ``default()`` is stored.

        ``timeout`` defaults to the cache's ``TIMEOUT``; ``None`` keeps the entry until evicted.
        """
        tenant = require_tenant()
        store = caches[CACHE_ALIAS]
        value = store.get(key, _MISSING)
        if value is not _MISSING:
            _count(tenant.pk, "hits")
            return value
        _count(tenant.pk, "misses")
        value = default()
        store.set(key, value, timeout)
        return value

    def invalidate(self, tenant: Tenant | int) -> None:
        tenant_cache_invalidate(tenant)


tenant_cache = TenantCache()


_view_keys: dict[tuple[str, str, str, str], str] = {}


def _view_key(view: Callable, request: HttpRequest | Request) -> str:
    """The view's key for the path and query (its parameters in sorted order), remembered per
    process by the raw query string (bounded: forgotten past 10,000)."""
    raw = (view.__module__, view.__qualname__, request.path, request.META.get("QUERY_STRING", ""))
    key = _view_keys.get(raw)
    if key is None:
        query = urlencode(sorted(request.GET.lists()), doseq=True)
        digest = hashlib.sha256(f"{request.path}?{query}".encode()).hexdigest()[:32]
        key = f"view:v2:{view.__module__}.{view.__qualname__}:{digest}"
        if len(_view_keys) >= 10_000:
            _view_keys.clear()
        _view_keys[raw] = key
    return key


def _to_cache(response: HttpResponse, expires_at: float | None) -> tuple | None:
    """``(expires_at, kind, ...)``: the wall-clock end of the entry's life travels with it."""
    if response.status_code != 200 or getattr(response, "streaming", False):
        return None
    if isinstance(response, Response):
        return (expires_at, "drf", response.data)
    return (expires_at, "http", response.content, response["Content-Type"])


def _from_cache(entry: tuple) -> HttpResponse:
    if entry[1] == "drf":
        return Response(entry[2])
    return HttpResponse(entry[2], content_type=entry[3])


class _LocalAnswers:
    """This process's copies of cached answers, by their full key (``t:<id>:<generation>:...``).

    Invariant (as fresh as the shared cache): a key carries the tenant's generation, which the
    request read from the shared cache (with its resolution) when its scope opened, so a bump made
    anywhere makes the old copies unreachable on the next request, exactly as for the shared
    entries. A copy lives no longer than the shared entry (its ``expires_at``), and is only taken
    from an answer read back from the shared cache, so with caching off (``DummyCache``) nothing is
    kept. Bounded to ``LOCAL_ANSWER_CACHE_ENTRIES`` (least recently used out; 0 turns it off).
    """

    def __init__(self) -> None:
        self.entries: OrderedDict[str, tuple] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str) -> tuple | None:
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                return None
            if entry[0] is not None and entry[0] <= time.time():
                del self.entries[key]
                return None
            self.entries.move_to_end(key)
            return entry

    def keep(self, key: str, entry: tuple) -> None:
        limit = settings.LOCAL_ANSWER_CACHE_ENTRIES
        if limit <= 0:
            return
        with self.lock:
            self.entries[key] = entry
            self.entries.move_to_end(key)
            while len(self.entries) > limit:
                self.entries.popitem(last=False)


_local_answers = _LocalAnswers()


def clear_local_answers() -> None:
    """Drop this process's copies of cached answers (tests; never needed for freshness)."""
    with _local_answers.lock:
        _local_answers.entries.clear()


def _expires_at(store: BaseCache, timeout: Any) -> float | None:
    seconds = store.default_timeout if timeout is DEFAULT_TIMEOUT else timeout
    return None if seconds is None else time.time() + seconds


def _cached_answer(store: BaseCache, key: str) -> tuple | None:
    """The answer from this process's copies, else from the shared cache (then kept here)."""
    full_key = store.make_key(key)
    entry = _local_answers.get(full_key)
    if entry is None:
        entry = store.get(key)
        if entry is not None:
            _local_answers.keep(full_key, entry)
    return entry


def _rendered_key(store: BaseCache, key: str, request: HttpRequest | Request) -> str | None:
    """Where this process keeps a DRF answer rendered as JSON; ``None`` for other renderers
    (the browsable API's page carries the caller's own details and is never kept)."""
    renderer = getattr(request, "accepted_renderer", None) if isinstance(request, Request) else None
    if renderer is None or renderer.format != "json":
        return None
    return f"{store.make_key(key)}|{request.accepted_media_type}"


def _keep_rendered(rendered_key: str, expires_at: float | None) -> Callable:
    """A post-render callback that keeps the rendered bytes of a DRF answer (public API of
    ``SimpleTemplateResponse``: DRF renders after the view returns)."""

    def keep(response: HttpResponse) -> None:
        entry = (expires_at, "http", response.content, response["Content-Type"])
        _local_answers.keep(rendered_key, entry)

    return keep


def tenant_cached_view(timeout: Any = DEFAULT_TIMEOUT) -> Callable:
    """Cache a read view's 200 answers per tenant, path and query string (GET and HEAD only).

    Decorates a function view ``view(request, ...)`` or a view method ``get(self, request, ...)``;
    on a DRF method it runs after authentication and permissions, and it keeps ``response.data`` so
    DRF still negotiates and renders the answer. Headers the view sets are not kept. The answer
    must depend only on the tenant, path and query (not on the caller) and the models it reads must
    be registered with ``cache_invalidated_by``. Outside a tenant scope the view is not cached.

    A warm answer is served from this process's copy (``_LocalAnswers``): no round trip, since the
    generation in its key came with the request's resolution. A process reads the shared cache
    once per answer and generation; a DRF answer rendered as JSON is kept rendered, per media type,
    so later hits skip rendering too.
    """

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            request = args[0] if isinstance(args[0], HttpRequest | Request) else args[1]
            tenant = current_tenant()
            if tenant is None or request.method not in ("GET", "HEAD"):
                return view(*args, **kwargs)
            store, key = caches[CACHE_ALIAS], _view_key(view, request)
            rendered_key = _rendered_key(store, key, request)
            if rendered_key and (rendered := _local_answers.get(rendered_key)):
                _count(tenant.pk, "hits")
                return _from_cache(rendered)
            entry = _cached_answer(store, key)
            if entry is not None:
                _count(tenant.pk, "hits")
                response = _from_cache(entry)
                if rendered_key and isinstance(response, Response):
                    response.add_post_render_callback(_keep_rendered(rendered_key, entry[0]))
                return response
            _count(tenant.pk, "misses")
            response = view(*args, **kwargs)
            entry = _to_cache(response, _expires_at(store, timeout))
            if entry is not None:
                store.set(key, entry, timeout)
            return response

        return wrapper

    return decorator


def _owning_tenant(instance: Model) -> list[int]:
    return [instance.tenant_id]


def cache_invalidated_by(
    *models: type[Model], tenant_ids: Callable[[Model], Iterable[int]] = _owning_tenant
) -> None:
    """After a save or delete of a row of ``models`` commits, invalidate the tenants it belongs to.

    ``tenant_ids(row)`` names them (default: ``row.tenant_id``). Invalidation waits for the commit:
    earlier, a concurrent request could cache the old row again before the new one is visible. One
    registration per model is enough, since invalidation covers every key of the tenant.
    """

    def receiver(sender, instance: Model, using: str | None = None, **kwargs) -> None:
        ids = list(tenant_ids(instance))
        if len(ids) == 1:
            transaction.on_commit(lambda: tenant_cache_invalidate(ids[0]), using=using)
        elif ids:
            transaction.on_commit(lambda: tenant_cache_invalidate_many(ids), using=using)

    for model in models:
        uid = f"tenants.cache:{model._meta.label}"
        post_save.connect(receiver, sender=model, weak=False, dispatch_uid=uid)
        post_delete.connect(receiver, sender=model, weak=False, dispatch_uid=uid)
