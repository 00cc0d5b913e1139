"""The API conventions of DESIGN.md: one JSON error shape, cursor pagination, OpenAPI and its docs.

``urlpatterns`` below is a test-only URL conf (``@pytest.mark.urls(__name__)``) with views that fail
in ways the product's views must never fail, to prove an API client still gets the JSON 500.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.http import Http404
from django.test import Client
from django.urls import path
from django.utils import timezone
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from config.negotiation import ApiContentNegotiation
from degradation.exceptions import CircuitOpen
from tenants.models import ApiKey, Membership, Tenant
from tests.assertions import assert_error
from tests.factories import MembershipFactory, TenantFactory, issue_key, key_client, plan

pytestmark = pytest.mark.django_db

User = get_user_model()
SECRET_DETAIL = "db password is hunter2"  # must never reach a client


# --- A test-only URL conf with failing views ------------------------------------------------------


def _failing_django_view(request):
    raise RuntimeError(SECRET_DETAIL)


class _FailingApiView(APIView):
    def get(self, request):
        raise RuntimeError(SECRET_DETAIL)


def _app_error_in_django_view(request):
    raise CircuitOpen("storage", retry_after=7.2)


urlpatterns = [
    path("api/v1/app-error-django/", _app_error_in_django_view),
    path("api/v1/failing-django/", _failing_django_view),
    path("api/v1/failing-drf/", _FailingApiView.as_view()),
]


@pytest.fixture
def tenant() -> Tenant:
    return TenantFactory(slug="acme", plan=plan("enterprise"))


@pytest.fixture
def writer(tenant) -> APIClient:
    return key_client(issue_key(tenant)[1])


# --- Errors ---------------------------------------------------------------------------------------

TENANT_API_URLS = ["/api/v1/tenant/", "/api/v1/members/", "/api/v1/api-keys/"]


@pytest.mark.parametrize("url", TENANT_API_URLS)
def test_no_credentials_is_401_not_authenticated_with_a_challenge(api_client, url):
    response = api_client.get(url)

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-key",
        "Bearer ",
        "Bearer ils_ABCDEF012345_" + "a" * 43,
        "Bearer ils_0123456789ab_short",
    ],
)
def test_a_malformed_key_is_401_invalid_api_key(api_client, header):
    response = api_client.get("/api/v1/tenant/", HTTP_AUTHORIZATION=header)

    assert_error(response, 401, "invalid_api_key")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_unknown_key_is_401_invalid_api_key(api_client, tenant):
    _, secret = issue_key(tenant)
    wrong_secret = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")

    for token in ("ils_0123456789ab_" + "a" * 43, wrong_secret):
        response = api_client.get("/api/v1/tenant/", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert_error(response, 401, "invalid_api_key")
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_key_is_401_api_key_expired(tenant):
    api_key, secret = issue_key(tenant)
    ApiKey.all_tenants.filter(pk=api_key.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert_error(key_client(secret).get("/api/v1/tenant/"), 401, "api_key_expired")


@pytest.mark.parametrize(
    "url", ["/api/v1/nothing-here/", "/api/nothing", "/api/v1/members/abc/", "/api/v2/tenant/"]
)
def test_an_unknown_url_under_api_is_a_json_404(writer, url):
    response = writer.get(url)

    assert_error(response, 404, "not_found")
    assert b"<html" not in response.content.lower()


def test_a_disallowed_host_under_api_is_a_json_400(api_client):
    response = api_client.get("/api/v1/tenant/", HTTP_HOST="evil.example")

    assert_error(response, 400, "bad_request")


def test_an_unknown_url_outside_api_keeps_the_html_404(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("put", "/api/v1/tenant/"),
        ("delete", "/api/v1/tenant/"),
        ("post", "/api/v1/tenant/"),
        ("put", "/api/v1/members/{member}/"),
        ("delete", "/api/v1/api-keys/{key}/"),
        ("get", "/api/v1/api-keys/{key}/revoke/"),
    ],
)
def test_a_method_not_allowed_is_a_json_405(tenant, method, url):
    api_key, secret = issue_key(tenant)
    member = MembershipFactory(tenant=tenant)
    url = url.format(member=member.pk, key=api_key.pk)

    response = getattr(key_client(secret), method)(url, {}, format="json")

    assert_error(response, 405, "method_not_allowed")
    assert "Allow" in response


def test_a_body_that_is_not_json_is_a_json_415(writer):
    response = writer.post("/api/v1/invitations/", data="email=a@b.co", content_type="text/plain")

    assert_error(response, 415, "unsupported_media_type")


def test_malformed_json_is_a_json_400_malformed_request(writer):
    response = writer.post("/api/v1/api-keys/", data="{", content_type="application/json")

    assert_error(response, 400, "malformed_request")


def test_a_signed_in_user_who_names_no_tenant_gets_400_tenant_required(tenant, api_client):
    membership = MembershipFactory(tenant=tenant)
    api_client.force_login(membership.user)

    assert_error(api_client.get("/api/v1/members/"), 400, "tenant_required")
    assert api_client.get("/api/v1/members/", HTTP_X_TENANT="acme").status_code == 200


def test_naming_an_unknown_tenant_is_a_json_404(tenant, api_client):
    membership = MembershipFactory(tenant=tenant)
    api_client.force_login(membership.user)

    response = api_client.get("/api/v1/members/", HTTP_X_TENANT="no-such-tenant")

    assert_error(response, 404, "tenant_not_found")


def test_a_key_used_with_another_tenants_name_is_403_tenant_mismatch(writer):
    TenantFactory(slug="globex")

    response = writer.get("/api/v1/tenant/", HTTP_X_TENANT="globex")

    assert_error(response, 403, "tenant_mismatch")


def test_a_suspended_tenant_is_403_tenant_suspended(tenant, writer):
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.SUSPENDED)

    assert_error(writer.get("/api/v1/tenant/"), 403, "tenant_suspended")


def _assert_hidden_500(response) -> None:
    assert_error(response, 500, "internal_error")
    text = response.content.decode()
    assert SECRET_DETAIL not in text
    assert "Traceback" not in text
    assert "RuntimeError" not in text
    assert "<html" not in text.lower()


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_error_in_a_django_view_is_a_json_500(settings, caplog, debug):
    settings.DEBUG = debug

    with caplog.at_level(logging.ERROR):
        response = Client().get("/api/v1/failing-django/")

    _assert_hidden_500(response)
    assert any(
        record.exc_info and SECRET_DETAIL in str(record.exc_info[1]) for record in caplog.records
    ), "the error must be logged for operators"


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_error_in_an_api_view_is_a_json_500(settings, caplog, writer, debug):
    settings.DEBUG = debug

    with caplog.at_level(logging.ERROR):
        response = writer.get("/api/v1/failing-drf/")

    _assert_hidden_500(response)
    assert any(
        record.exc_info and SECRET_DETAIL in str(record.exc_info[1]) for record in caplog.records
    ), "the error must be logged for operators"


@pytest.mark.urls(__name__)
def test_an_app_error_raised_in_a_plain_django_view_keeps_its_status_and_shape():
    response = Client().get("/api/v1/app-error-django/")
    error = assert_error(response, 503, "dependency_unavailable")
    assert error["details"]["breaker"] == "storage"
    assert response["Retry-After"] == "8"


# --- Pagination -----------------------------------------------------------------------------------

BULK_MEMBERS = 250


@pytest.fixture
def many_members(tenant) -> list[int]:
    """``BULK_MEMBERS`` members of the tenant, made in two bulk inserts; their ids, newest first."""
    User.objects.bulk_create(
        User(username=f"bulk{n:04d}", email=f"bulk{n:04d}@example.com") for n in range(BULK_MEMBERS)
    )
    user_ids = User.objects.filter(username__startswith="bulk").values_list("pk", flat=True)
    Membership.all_tenants.bulk_create(
        Membership(tenant_id=tenant.pk, user_id=user_id, role=Membership.Role.MEMBER)
        for user_id in user_ids
    )
    ids = Membership.all_tenants.filter(tenant=tenant).order_by("-id").values_list("pk", flat=True)
    assert len(ids) == BULK_MEMBERS
    return list(ids)


def test_a_list_answers_50_rows_by_default(writer, many_members):
    body = writer.get("/api/v1/members/").json()

    assert set(body) == {"results", "next", "previous"}
    assert [row["id"] for row in body["results"]] == many_members[:50]
    assert body["next"] is not None
    assert body["previous"] is None


@pytest.mark.parametrize(("limit", "expected"), [(1, 1), (120, 120), (200, 200)])
def test_limit_sets_the_page_size_up_to_200(writer, many_members, limit, expected):
    response = writer.get("/api/v1/members/", {"limit": limit})

    assert response.status_code == 200, response.content
    assert [row["id"] for row in response.json()["results"]] == many_members[:expected]


@pytest.mark.parametrize("limit", ["0", "-3", "abc", "1.5", "10a", "201", "500"])
def test_an_invalid_limit_is_invalid(writer, limit):
    """Within the bounds the schema states (1 to 200): a larger page is refused, not cut short."""
    error = assert_error(writer.get("/api/v1/members/", {"limit": limit}), 400, "invalid")
    assert list(error["details"]) == ["limit"]


@pytest.mark.parametrize("limit", [None, 60, 200])
def test_following_next_yields_every_row_exactly_once(writer, many_members, limit):
    url, params, seen, pages = "/api/v1/members/", {"limit": limit} if limit else {}, [], 0
    while url:
        response = writer.get(url, params)
        assert response.status_code == 200, response.content
        body = response.json()
        assert len(body["results"]) <= (limit or 50)
        seen += [row["id"] for row in body["results"]]
        url, params, pages = body["next"], None, pages + 1
        assert pages <= BULK_MEMBERS, "pagination does not end"

    assert seen == many_members
    assert len(set(seen)) == BULK_MEMBERS
    assert pages == -(-BULK_MEMBERS // (limit or 50))


def test_a_row_added_while_paging_does_not_shift_the_pages(tenant, writer, many_members):
    first = writer.get("/api/v1/members/", {"limit": 100}).json()
    MembershipFactory(tenant=tenant)

    second = writer.get(first["next"]).json()

    assert [row["id"] for row in second["results"]] == many_members[100:200]


# --- OpenAPI and its docs -------------------------------------------------------------------------


def test_the_schema_is_openapi_3_with_the_tenant_api_and_bearer_auth(api_client):
    response = api_client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200, response.content
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert {
        "/api/v1/tenant/",
        "/api/v1/members/",
        "/api/v1/members/{id}/",
        "/api/v1/api-keys/",
        "/api/v1/api-keys/{id}/",
        "/api/v1/api-keys/{id}/revoke/",
    } <= set(schema["paths"])
    schemes = schema["components"]["securitySchemes"]
    bearer = [
        name
        for name, scheme in schemes.items()
        if scheme.get("type") == "http" and scheme.get("scheme") == "bearer"
    ]
    assert len(bearer) == 1, schemes
    assert {bearer[0]: []} in schema["paths"]["/api/v1/tenant/"]["get"]["security"]
    created = schema["paths"]["/api/v1/api-keys/"]["post"]["responses"]["201"]
    created_ref = created["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "key" in schema["components"]["schemas"][created_ref]["properties"]


def test_the_schema_defaults_to_yaml(api_client):
    response = api_client.get("/api/schema/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert response.content.startswith(b"openapi: 3.")


@pytest.mark.parametrize(
    ("path", "kinds"), [("/api/docs/", (".js", ".css")), ("/api/redoc/", (".js",))]
)
def test_the_docs_pages_serve_their_assets_locally(settings, path, kinds):
    # Serve static files from the apps' folders (as `collectstatic` would have copied them).
    settings.WHITENOISE_USE_FINDERS = True
    client = Client()

    response = client.get(path)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "http://" not in html
    assert "https://" not in html
    assets = re.findall(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"([^\"]+)\"", html)
    for kind in kinds:
        assert any(asset.endswith(kind) for asset in assets), assets
    for asset in assets:
        assert asset.startswith(settings.STATIC_URL) and settings.STATIC_URL.startswith("/"), asset
        assert not asset.startswith("//"), asset
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert b"".join(served.streaming_content if served.streaming else [served.content])
    assert '"/api/schema/"' in html


def test_the_schema_generates_without_warnings_and_validates():
    """`spectacular --fail-on-warn` in a fresh process: any schema warning fails the build."""
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--file",
            os.devnull,
        ],
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert "Error" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "accept",
    [None, "*/*", "application/json", "application/json; indent=4", "text/html", "text/*", ""],
)
@pytest.mark.parametrize("query", ["", "?format=json", "?format=api"])
def test_content_negotiation_answers_as_drf_does(accept, query):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    for renderers in ([JSONRenderer()], [JSONRenderer(), BrowsableAPIRenderer()]):
        request = Request(APIRequestFactory().get(f"/api/v1/tenant/{query}", **headers))
        answers = []
        for negotiation in (DefaultContentNegotiation(), ApiContentNegotiation()):
            try:
                renderer, media_type = negotiation.select_renderer(request, renderers)
                answers.append((type(renderer), media_type))
            except NotAcceptable:
                answers.append("406")
            except Http404:  # ?format= naming no renderer
                answers.append("404")
        assert answers[0] == answers[1], (accept, query, renderers)
