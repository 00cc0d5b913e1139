"""Tenant isolation, proved per route: a second tenant's key can neither read nor change the first's.

The suite WALKS THE URL CONF (``get_resolver()``, recursively) and runs once per route under
``/api/v1/``, so a route added later is covered without anyone adding it here. Tenant A gets rows
of every ``TenantScopedModel`` (found with ``apps.get_models()``) whose text carries unique marker
strings, and global rows that target A (``TARGETED_BUILDERS``: a feature flag for A alone) carry
markers too; tenant B gets a write key. For each route, B calls every method with every one of A's
primary keys in the path. Detail routes must answer 404 (405 for a method the route does not
have), no answer may contain A's markers, slug or key prefixes, and A's rows must be unchanged
afterwards. A canary per detail route shows A's own key reaching A's rows through the same
route, so B's 404 is meaningful.

A new tenant-scoped model gets rows from ``_build_generic`` (text fields carry markers); a model
it cannot fill makes ``test_every_scoped_model_has_rows_for_tenant_a`` fail with a hint: add a
builder to ``BUILDERS``.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import itertools
import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import models
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.utils import timezone
from django.utils.regex_helper import normalize
from rest_framework.test import APIClient
from waffle import get_waffle_flag_model

from metrics.models import TenantUsageDay, TenantUsageHour
from storage.keys import file_key
from storage.models import MigrationItem, StorageMigration, StoredFile
from tenants import limits
from tenants.context import current_tenant, tenant_scope
from tenants.exceptions import TenantScopeMissing
from tenants.limits import quotas
from tenants.models import ApiKey, Membership, Tenant, TenantUsage
from tenants.scoping import TenantScopedModel
from tests.factories import MembershipFactory, TenantFactory, UserFactory, issue_key, key_client

API_PREFIX = "api/v1/"
METHODS = ("get", "post", "put", "patch", "delete")
#: The routes the walker must find (templates, parameters as <name>).
KNOWN_ROUTES = {
    "/api/v1/tenant/",
    "/api/v1/usage/",
    "/api/v1/members/",
    "/api/v1/members/<pk>/",
    "/api/v1/api-keys/",
    "/api/v1/api-keys/<pk>/",
    "/api/v1/api-keys/<pk>/revoke/",
    "/api/v1/invitations/",
    "/api/v1/invitations/<pk>/",
    "/api/v1/invitations/<pk>/revoke/",
    "/api/v1/invitations/accept/",
    "/api/v1/flags/",
    "/api/v1/jobs/",
    "/api/v1/jobs/<pk>/",
    "/api/v1/jobs/<pk>/cancel/",
    "/api/v1/jobs/kinds/",
    "/api/v1/files/",
    "/api/v1/files/<pk>/",
    "/api/v1/files/<pk>/download/",
    "/api/v1/files/signed/<token>/",
}
#: Routes that act for the signed-in user, not for a tenant (an API key is refused there); they
#: are checked by ``test_a_user_route_gives_nothing_of_a_to_b``, not as tenant lists.
USER_ROUTES = {"/api/v1/invitations/accept/"}
#: Tenant-API routes whose answer is the same for every tenant (the platform's job kinds): no row
#: of A's to find, so they have no canary; B's calls there are still checked for A's markers.
SHARED_ROUTES = {"/api/v1/jobs/kinds/"}
#: A signed link is its own credential (storage.links): it answers without a key, for the one file
#: it names; B's calls with A's ids or markers as the token are still checked for 404s and leaks.
SIGNED_ROUTES = {"/api/v1/files/signed/<token>/"}
#: Detail routes whose success is a redirect (to a signed link).
REDIRECT_ROUTES = {"/api/v1/files/<pk>/download/"}
MIN_MARKER_LENGTH = 10


# --- The URL conf walker --------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One URL pattern under /api/v1/, with the format string Django itself reverses with."""

    template: str  # "/api/v1/members/<pk>/"
    url_format: str  # "/api/v1/members/%(pk)s/"
    params: tuple[str, ...]
    pattern: URLPattern = field(compare=False)

    @property
    def is_detail(self) -> bool:
        return bool(self.params)

    def url(self, value: object) -> str:
        return self.url_format % {name: value for name in self.params}

    def allowed_methods(self) -> set[str] | None:
        """The methods the view answers (DRF viewset actions, or a class view's handlers).

        ``None`` for a view whose methods cannot be read (a plain function view).
        """
        callback = self.pattern.callback
        view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        if view_class is None:
            return None
        names = set(view_class.http_method_names) - {"head", "options", "trace"}
        actions = getattr(callback, "actions", None)
        if actions:  # a DRF viewset route: the router's method -> action mapping
            return {m for m in actions if m in names}
        return {m for m in names if hasattr(view_class, m)}

    def resolves(self, path: str) -> bool:
        try:
            match = resolve(path)
        except Resolver404:
            return False
        return match.func is self.pattern.callback


def _walk(patterns, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        regex = entry.pattern.regex.pattern
        regex = regex[1:] if regex.startswith("^") else regex
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + regex)
        elif isinstance(entry, URLPattern):
            yield prefix + regex, entry


def discover_api_routes() -> list[Route]:
    """Every URL pattern under /api/v1/ in the project's URL conf, found by walking it."""
    routes: dict[str, Route] = {}
    for regex, pattern in _walk(get_resolver().url_patterns):
        for url_format, params in normalize(regex):
            if not url_format.startswith(API_PREFIX):
                continue
            template = "/" + url_format % {name: f"<{name}>" for name in params}
            routes.setdefault(template, Route(template, "/" + url_format, tuple(params), pattern))
    return sorted(routes.values(), key=lambda route: route.template)


API_ROUTES = discover_api_routes()
DETAIL_ROUTES = [route for route in API_ROUTES if route.is_detail]
LIST_ROUTES = [
    route for route in API_ROUTES if not route.is_detail and route.template not in USER_ROUTES
]


def _route_id(route: Route) -> str:
    return route.template


# --- Tenant A's rows, with markers ----------------------------------------------------------


def _marker(label: str) -> str:
    return f"mk{label[:6]}{secrets.token_hex(6)}"


@dataclass
class TenantAData:
    tenant: Tenant
    rows: dict[type[models.Model], list[models.Model]] = field(default_factory=dict)
    markers: set[str] = field(default_factory=set)
    own_secret: str = ""

    def pks(self) -> list[object]:
        return [row.pk for rows in self.rows.values() for row in rows]

    def forbidden_strings(self) -> set[str]:
        prefixes = {key.prefix for key in ApiKey.all_tenants.filter(tenant=self.tenant)}
        return {self.tenant.slug, self.tenant.name, *prefixes, *self.markers}

    def snapshot(self) -> dict[str, list[dict]]:
        state = {"tenant": list(Tenant.objects.filter(pk=self.tenant.pk).values())}
        for model in scoped_models():
            state[model._meta.label] = list(
                model.all_tenants.filter(tenant=self.tenant).order_by("pk").values()
            )
        return state


def scoped_models() -> list[type[TenantScopedModel]]:
    return [m for m in apps.get_models() if issubclass(m, TenantScopedModel)]


def _build_memberships(data: TenantAData) -> list[Membership]:
    rows = []
    for role in Membership.Role.values:
        marker = _marker("member")
        data.markers.add(marker)
        user = UserFactory(username=marker, email=f"{marker}@example.com", first_name=marker)
        rows.append(MembershipFactory(tenant=data.tenant, user=user, role=role))
    return rows


def _build_api_keys(data: TenantAData) -> list[ApiKey]:
    rows = []
    for scopes in (["read"], ["read", "write"]):
        marker = _marker("key")
        data.markers.add(marker)
        api_key, _ = issue_key(data.tenant, scopes=scopes, name=marker)
        rows.append(api_key)
    own_key, data.own_secret = issue_key(data.tenant, name=_marker("own"))
    data.markers.add(own_key.name)
    rows.append(own_key)
    return rows


def _build_usage(data: TenantAData) -> list[TenantUsage]:
    """Usage counters whose values are markers: numbers only A's usage answer may show."""
    rows = []
    for resource in (limits.STORAGE_BYTES, limits.JOBS_PER_DAY):
        used = secrets.randbelow(9 * 10**12) + 10**12  # 13 digits: never a count B could have
        data.markers.add(str(used))
        rows.append(
            TenantUsage.all_tenants.create(
                tenant=data.tenant, resource=resource, period=quotas.period_key(resource), used=used
            )
        )
    return rows


def _build_files(data: TenantAData) -> list[StoredFile]:
    """Real stored files (bytes in the storage) whose names and contents are markers. Written
    past the quota on purpose: A's usage counters hold marker values (``_build_usage``)."""
    rows = []
    backend = storages[settings.FILES_STORAGE]
    for _ in range(2):
        marker = _marker("file")
        data.markers.add(marker)
        content = f"{marker}\n".encode()
        key = backend.save(
            file_key(data.tenant.pk, f"{marker}.txt", timezone.now()), ContentFile(content)
        )
        rows.append(
            StoredFile.all_tenants.create(
                tenant=data.tenant,
                key=key,
                original_name=f"{marker}.txt",
                size=len(content),
                content_type="text/plain",
                sha256=hashlib.sha256(content).hexdigest(),
                storage=settings.FILES_STORAGE,
            )
        )
    return rows


def _build_migration_items(data: TenantAData) -> list[MigrationItem]:
    """A's files in the manifest of a (global, finished) storage migration; errors are markers."""
    files = list(StoredFile.all_tenants.filter(tenant=data.tenant)) or _build_files(data)
    migration = StorageMigration.objects.create(
        source=settings.FILES_STORAGE,
        target="s3",
        runner="isolation:0",
        heartbeat_at=timezone.now(),
        status=StorageMigration.Status.INCOMPLETE,
    )
    rows = []
    for stored in files:
        marker = _marker("migration-error")
        data.markers.add(marker)
        rows.append(
            MigrationItem.all_tenants.create(
                migration=migration,
                file=stored,
                tenant=data.tenant,
                size=stored.size,
                state=MigrationItem.State.FAILED,
                error=marker,
            )
        )
    return rows


def _build_usage_figures(model):
    """Per-tenant usage rows (an hour, a day apart) whose request counts are markers."""

    def build(data: TenantAData) -> list[models.Model]:
        rows = []
        for back in range(2):
            requests = secrets.randbelow(9 * 10**12) + 10**12  # 13 digits: never B's count
            data.markers.add(str(requests))
            moment = timezone.now() - datetime.timedelta(days=back)
            period = (
                {"hour": moment.replace(minute=0, second=0, microsecond=0)}
                if model is TenantUsageHour
                else {"day": moment.date()}
            )
            rows.append(model.all_tenants.create(tenant=data.tenant, requests=requests, **period))
        return rows

    return build


#: Explicit builders for models the generic builder cannot fill sensibly.
BUILDERS: dict[type[models.Model], Callable[[TenantAData], list[models.Model]]] = {
    Membership: _build_memberships,
    ApiKey: _build_api_keys,
    TenantUsage: _build_usage,
    StoredFile: _build_files,
    MigrationItem: _build_migration_items,
    TenantUsageHour: _build_usage_figures(TenantUsageHour),
    TenantUsageDay: _build_usage_figures(TenantUsageDay),
}


def _build_targeted_flag(data: TenantAData) -> None:
    """A feature flag (a global row) targeted at A alone, named with a marker: only A may see it."""
    marker = _marker("flag")
    data.markers.add(marker)
    flag = get_waffle_flag_model().objects.create(name=marker, superusers=False)
    flag.tenants.add(data.tenant)


#: Global rows (not tenant-scoped) that target tenant A; their markers must reach A's key only.
TARGETED_BUILDERS: list[Callable[[TenantAData], None]] = [_build_targeted_flag]


class CannotBuild(Exception):
    pass


def _value_for(model_field: models.Field, data: TenantAData, index: int) -> object:
    """A value for a required field; text gets a marker string."""
    if model_field.choices:
        return model_field.choices[0][0]
    if isinstance(model_field, models.ForeignKey):
        related = model_field.related_model
        if related is Tenant:
            return data.tenant
        if isinstance(related, type) and issubclass(related, TenantScopedModel):
            return _rows_for(related, data)[0]
        if related is get_user_model():
            return UserFactory()
        existing = related._default_manager.order_by("pk").first()
        if existing is None:
            raise CannotBuild(f"no {related._meta.label} row to point {model_field.name} at")
        return existing
    if isinstance(model_field, models.EmailField):
        marker = _marker(model_field.name)
        data.markers.add(marker)
        return f"{marker}@example.com"
    if isinstance(model_field, models.CharField | models.TextField):
        marker = _marker(model_field.name)[: model_field.max_length or 64]
        if len(marker) >= MIN_MARKER_LENGTH:
            data.markers.add(marker)
        return marker
    if isinstance(model_field, models.FileField):
        marker = _marker(model_field.name)
        data.markers.add(marker)
        return f"{marker}.txt"
    if isinstance(model_field, models.JSONField):
        marker = _marker(model_field.name)
        data.markers.add(marker)
        return {"marker": marker}
    if isinstance(model_field, models.BooleanField):
        return False
    if isinstance(model_field, models.IntegerField | models.FloatField):
        return 1 + index
    if isinstance(model_field, models.DecimalField):
        return decimal.Decimal(1)
    if isinstance(model_field, models.DateTimeField):
        return timezone.now()
    if isinstance(model_field, models.DateField):
        return datetime.date.today()
    if isinstance(model_field, models.DurationField):
        return datetime.timedelta(seconds=1)
    if isinstance(model_field, models.UUIDField):
        return uuid.uuid4()
    if isinstance(model_field, models.BinaryField):
        return b"probe"
    raise CannotBuild(f"no value for {type(model_field).__name__} {model_field.name}")


def _build_generic(model: type[TenantScopedModel], data: TenantAData) -> list[models.Model]:
    rows = []
    for index in range(2):
        values = {}
        for model_field in model._meta.concrete_fields:
            if model_field.primary_key or model_field.name == "tenant":
                continue
            is_text = isinstance(model_field, models.CharField | models.TextField)
            optional = model_field.has_default() or model_field.null or model_field.blank
            if optional and not (is_text and not model_field.choices):
                continue
            if getattr(model_field, "auto_now", False) or getattr(
                model_field, "auto_now_add", False
            ):
                continue
            values[model_field.name] = _value_for(model_field, data, index)
        with tenant_scope(data.tenant):
            rows.append(model.objects.create(**values))
    return rows


def _rows_for(model: type[models.Model], data: TenantAData) -> list[models.Model]:
    if model not in data.rows:
        builder = BUILDERS.get(model)
        try:
            data.rows[model] = builder(data) if builder else _build_generic(model, data)
        except Exception as error:
            raise CannotBuild(
                f"Could not make rows of {model._meta.label} for the isolation suite ({error!r}). "
                "Add a builder for it to BUILDERS in tests/integration/test_isolation.py."
            ) from error
    return data.rows[model]


def make_tenant_a() -> TenantAData:
    tenant_marker = _marker("tenant")
    tenant = TenantFactory(slug=f"iso-a-{secrets.token_hex(4)}", name=f"Company {tenant_marker}")
    data = TenantAData(tenant=tenant, markers={tenant_marker})
    for model in scoped_models():
        _rows_for(model, data)
    for build in TARGETED_BUILDERS:
        build(data)
    return data


@dataclass
class TenantBData:
    tenant: Tenant
    client: APIClient
    pks: set[object]
    spare_user_email: str


def make_tenant_b() -> TenantBData:
    tenant = TenantFactory(slug=f"iso-b-{secrets.token_hex(4)}", name="Company B")
    MembershipFactory(tenant=tenant, role=Membership.Role.OWNER)
    _, secret = issue_key(tenant, scopes=["read", "write"], name="b key")
    pks = {
        pk
        for model in scoped_models()
        for pk in model.all_tenants.filter(tenant=tenant).values_list("pk", flat=True)
    }
    return TenantBData(tenant, key_client(secret), pks, UserFactory().email)


@pytest.fixture
def tenant_a(db) -> TenantAData:
    return make_tenant_a()


@pytest.fixture
def tenant_b(db, tenant_a) -> TenantBData:
    return make_tenant_b()


def _probe_pks(route: Route, a: TenantAData, b: TenantBData) -> list[object]:
    """A's primary keys that fit the route's path, leaving out any that B also owns (in any table,
    so a 200 can only mean A's row)."""
    candidates = [pk for pk in dict.fromkeys(a.pks()) if pk not in b.pks]
    return [pk for pk in candidates if route.resolves(route.url(pk))]


def _body_for(b: TenantBData) -> dict[str, object]:
    """A body valid for the current write endpoints, naming nothing of A's."""
    return {
        "name": "written by b",
        "role": Membership.Role.MEMBER,
        "email": b.spare_user_email,
        "scopes": ["read"],
    }


def _call(client: APIClient, method: str, path: str, body: dict | None = None):
    if method in ("get", "delete"):
        return getattr(client, method)(path)
    return getattr(client, method)(
        path, data=json.dumps(body or {}), content_type="application/json"
    )


def _expected_statuses(method: str, allowed: set[str] | None) -> set[int]:
    """404 for a method the route has (A's row is not there for B); 405 for one it has not."""
    if allowed is None:  # a function view: its methods cannot be read
        return {404, 405}
    return {404} if method in allowed else {405}


def _leaks(response, forbidden: set[str]) -> list[str]:
    text = response.content.decode(errors="replace")
    headers = json.dumps(dict(response.items()))
    return sorted(s for s in forbidden if s and (s in text or s in headers))


# --- The walker finds the routes ------------------------------------------------------------


def test_the_walker_finds_the_known_routes():
    found = {route.template for route in API_ROUTES}
    assert found >= KNOWN_ROUTES, f"missing: {KNOWN_ROUTES - found}"
    assert {r.template for r in DETAIL_ROUTES} >= {t for t in KNOWN_ROUTES if "<" in t}
    for route in API_ROUTES:
        assert route.template.startswith("/api/v1/")
        if route.template in KNOWN_ROUTES:  # the format strings build paths that resolve back
            assert route.resolves(route.url(1) if route.is_detail else route.url_format)


def test_the_walker_reads_the_methods_of_each_route():
    by_template = {route.template: route for route in API_ROUTES}
    assert by_template["/api/v1/members/<pk>/"].allowed_methods() == {"get", "patch", "delete"}
    assert by_template["/api/v1/api-keys/<pk>/"].allowed_methods() == {"get"}
    assert by_template["/api/v1/api-keys/<pk>/revoke/"].allowed_methods() == {"post"}
    assert by_template["/api/v1/tenant/"].allowed_methods() == {"get", "patch"}


@pytest.mark.django_db
def test_every_scoped_model_has_rows_for_tenant_a(tenant_a):
    assert {Membership, ApiKey} <= set(scoped_models())
    for model in scoped_models():
        assert len(tenant_a.rows[model]) >= 2, model
        assert model.all_tenants.filter(tenant=tenant_a.tenant).count() >= 2, model
    assert all(len(marker) >= MIN_MARKER_LENGTH for marker in tenant_a.markers)


# --- Per route: B can neither read nor change A's rows --------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("route", DETAIL_ROUTES, ids=_route_id)
def test_another_tenants_key_cannot_reach_a_detail_route(route, tenant_a, tenant_b):
    before = tenant_a.snapshot()
    forbidden = tenant_a.forbidden_strings()
    pks = _probe_pks(route, tenant_a, tenant_b)
    assert pks, f"no primary key of tenant A fits {route.template}"
    allowed = route.allowed_methods()
    failures = []

    for pk, method in itertools.product(pks, METHODS):
        path = route.url(pk)
        response = _call(tenant_b.client, method, path, _body_for(tenant_b))
        expected = _expected_statuses(method, allowed)
        if response.status_code not in expected:
            failures.append(f"{method.upper()} {path}: {response.status_code} not in {expected}")
        if leaked := _leaks(response, forbidden):
            failures.append(f"{method.upper()} {path}: answer contains {leaked}")

    assert not failures, "\n".join(failures)
    assert tenant_a.snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("route", LIST_ROUTES, ids=_route_id)
def test_another_tenants_key_sees_nothing_of_a_on_a_list_route(route, tenant_a, tenant_b):
    before = tenant_a.snapshot()
    forbidden = tenant_a.forbidden_strings()
    path = route.url_format
    failures = []

    listing = tenant_b.client.get(path)
    if listing.status_code != 200:
        failures.append(f"GET {path}: B's own key got {listing.status_code}")
    for method in METHODS:
        response = _call(tenant_b.client, method, path, _body_for(tenant_b))
        if response.status_code >= 500:
            failures.append(f"{method.upper()} {path}: {response.status_code}")
        if leaked := _leaks(response, forbidden):
            failures.append(f"{method.upper()} {path}: answer contains {leaked}")

    assert not failures, "\n".join(failures)
    assert tenant_a.snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("template", sorted(USER_ROUTES))
def test_a_user_route_gives_nothing_of_a_to_b(template, tenant_a, tenant_b):
    """B's key, and a signed-in member of B sending A's stored values as tokens, get refusals
    that show nothing of A, and change nothing of A's."""
    before = tenant_a.snapshot()
    forbidden = tenant_a.forbidden_strings()
    member = MembershipFactory(tenant=tenant_b.tenant).user
    session = APIClient()
    session.force_login(member)
    failures = []
    for method in METHODS:
        response = _call(tenant_b.client, method, template, _body_for(tenant_b))
        if response.status_code not in (403, 405):
            failures.append(f"{method.upper()} {template} with B's key: {response.status_code}")
        if leaked := _leaks(response, forbidden):
            failures.append(f"{method.upper()} {template}: answer contains {leaked}")
    for value in sorted(forbidden):
        response = _call(session, "post", template, {"token": value})
        if response.status_code not in (400, 404):
            failures.append(f"POST {template} token={value!r}: {response.status_code}")
        if leaked := _leaks(response, forbidden):
            failures.append(f"POST {template} token={value!r}: answer contains {leaked}")

    assert not failures, "\n".join(failures)
    assert tenant_a.snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "route", [r for r in DETAIL_ROUTES if r.template not in SIGNED_ROUTES], ids=_route_id
)
def test_canary_tenant_a_reaches_its_own_rows_on_the_route(route, tenant_a, tenant_b):
    """The route and fixture are live: A's own key gets a 2xx for one of A's rows."""
    client = key_client(tenant_a.own_secret)
    allowed = route.allowed_methods() or {"get"}
    method = "get" if "get" in allowed else sorted(allowed)[0]
    statuses = {}
    for pk in _probe_pks(route, tenant_a, tenant_b):
        response = _call(client, method, route.url(pk))
        statuses[pk] = response.status_code
        if 200 <= response.status_code < 300 or (
            route.template in REDIRECT_ROUTES and response.status_code == 302
        ):
            if method == "get":
                assert response.status_code == (302 if route.template in REDIRECT_ROUTES else 200)
            break
    else:
        pytest.fail(
            f"{method.upper()} {route.template} with A's own key never answered 2xx: {statuses}"
        )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "route", [r for r in LIST_ROUTES if r.template not in SHARED_ROUTES], ids=_route_id
)
def test_canary_tenant_a_sees_its_own_rows_on_a_list_route(route, tenant_a, tenant_b):
    """A's own key sees A's data on the route, so B not seeing it there is meaningful."""
    response = key_client(tenant_a.own_secret).get(route.url_format)
    assert response.status_code == 200, response.content
    assert _leaks(response, tenant_a.forbidden_strings()), response.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    "route", [r for r in API_ROUTES if r.template not in SIGNED_ROUTES], ids=_route_id
)
def test_a_request_without_credentials_gets_nothing(route, tenant_a):
    """No key, no session, no tenant named: refused on every route, and nothing of A shown."""
    before = tenant_a.snapshot()
    forbidden = tenant_a.forbidden_strings()
    failures = []
    paths = [route.url(pk) for pk in dict.fromkeys(tenant_a.pks())] if route.is_detail else []
    for path, method in itertools.product(paths or [route.url_format], METHODS):
        if route.is_detail and not route.resolves(path):
            continue
        response = _call(APIClient(), method, path, {"name": "anonymous"})
        if response.status_code not in (401, 403, 405):
            failures.append(f"{method.upper()} {path}: {response.status_code}")
        if leaked := _leaks(response, forbidden):
            failures.append(f"{method.upper()} {path}: answer contains {leaked}")
    assert not failures, "\n".join(failures)
    assert tenant_a.snapshot() == before


# --- Outside a scope, a scoped query is an error --------------------------------------------


@pytest.mark.django_db
def test_membership_queries_outside_a_scope_raise(tenant_a):
    assert current_tenant() is None
    user = UserFactory()
    some_pk = tenant_a.rows[Membership][0].pk
    queries = [
        lambda: list(Membership.objects.all()),
        lambda: Membership.objects.count(),
        lambda: Membership.objects.create(user=user, tenant=tenant_a.tenant),
        lambda: Membership.objects.filter(role=Membership.Role.MEMBER).update(role="owner"),
        lambda: Membership.objects.get(pk=some_pk),
        lambda: Membership.objects.filter(pk=some_pk).delete(),
        lambda: Membership.objects.exists(),
    ]
    before = tenant_a.snapshot()
    for query in queries:
        with pytest.raises(TenantScopeMissing):
            query()
    assert tenant_a.snapshot() == before
    assert Membership.all_tenants.count() == len(before["tenants.Membership"])


@pytest.mark.django_db
@pytest.mark.parametrize("model", scoped_models(), ids=lambda m: m._meta.label)
def test_every_scoped_model_raises_outside_a_scope(model, tenant_a):
    counts = model.all_tenants.count()
    for query in (
        lambda: list(model.objects.all()),
        lambda: model.objects.count(),
        lambda: model.objects.first(),
        lambda: model.objects.filter(pk=tenant_a.rows[model][0].pk).update(),
        lambda: model.objects.create(),
    ):
        with pytest.raises(TenantScopeMissing):
            query()
    assert model.all_tenants.count() == counts
