"""Hostile input gets a clear JSON error with the right status, never a 500, and one log line.

Each class below answered 500 (with a traceback in the log) before: a forged cursor, Unicode digits
in ``?limit=``, a body over the size limit, JSON nested too deep, too many query parameters.
"""

from __future__ import annotations

import base64
import logging
from io import BytesIO

import pytest
from django.conf import settings

from config.parsers import LimitedJSONParser, PayloadTooLarge
from tests.assertions import assert_error
from tests.factories import TenantFactory, issue_key, key_client

pytestmark = [pytest.mark.django_db]

LIST = "/api/v1/api-keys/"
CREATE = "/api/v1/api-keys/"


@pytest.fixture
def api():
    _, secret = issue_key(TenantFactory(limit_overrides={"max_api_keys": None}))
    return key_client(secret)


def _cursor(querystring: str) -> str:
    return base64.b64encode(querystring.encode()).decode()


def _no_traceback(caplog) -> None:
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("p=not-a-number"),
        _cursor("p=99999999999999999999999999"),
        _cursor("p="),
        _cursor("r=1&p=1e9"),
        "!!!not base64",
        _cursor("o=x"),
        "",
        "n" + "9" * 19,
        "n1e9",
        "n²",
        "x12",
        "n12.",
        "n12.99999",
        "n12\n",
    ],
)
def test_a_forged_cursor_is_a_400(api, cursor, caplog):
    """DRF's base64 cursors (not ours any more), and strings off the schema's pattern."""
    response = api.get(LIST, {"cursor": cursor})
    assert_error(response, 400, "invalid_cursor")
    _no_traceback(caplog)


@pytest.mark.parametrize("cursor", ["n", "p", "n5.3", "p1", "n999999999999999999"])
def test_a_made_up_cursor_on_the_pattern_is_just_a_page(api, cursor):
    """Every cursor the schema's pattern allows is answered (a page of the caller's own rows)."""
    response = api.get(LIST, {"cursor": cursor})

    assert response.status_code == 200, response.content
    assert set(response.json()) == {"results", "next", "previous"}


@pytest.mark.parametrize(
    "limit", ["²", "١٢", "0", "-1", "1.5", "9" * 40, " 3", str(settings.API_MAX_PAGE_SIZE + 1)]
)
def test_a_limit_that_is_not_an_ascii_integer_in_bounds_is_a_400(api, limit, caplog):
    response = api.get(LIST, {"limit": limit})
    assert_error(response, 400, "invalid")
    assert "limit" in response.json()["error"]["details"]
    _no_traceback(caplog)


def test_a_body_over_the_limit_is_a_413_before_it_is_read(api, caplog):
    size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
    body = b'{"name": "' + b"x" * size + b'"}'
    with caplog.at_level(logging.WARNING):
        response = api.post(CREATE, body, content_type="application/json")
    error = assert_error(response, 413, "payload_too_large")
    assert error["details"]["max_bytes"] == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    _no_traceback(caplog)


def test_a_body_without_a_length_is_never_read(api, caplog):
    size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
    body = b'{"name": "' + b"x" * size + b'"}'
    response = api.generic("POST", CREATE, body, content_type="application/json", CONTENT_LENGTH="")
    error = assert_error(response, 400, "invalid")  # parsed as no body at all
    assert "name" in error["details"]
    _no_traceback(caplog)


def test_the_parser_reads_no_further_than_the_limit():
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    stream = BytesIO(b"[" + b"1," * limit + b"1]")
    with pytest.raises(PayloadTooLarge):
        LimitedJSONParser().parse(stream)
    assert stream.tell() == limit + 1


@pytest.mark.parametrize("depth", [settings.API_MAX_JSON_DEPTH + 1, 100_000])
def test_json_nested_too_deep_is_a_400(api, depth, caplog):
    body = "[" * depth + "]" * depth
    response = api.post(CREATE, body, content_type="application/json")
    error = assert_error(response, 400, "malformed_request")
    assert str(settings.API_MAX_JSON_DEPTH) in error["message"]
    _no_traceback(caplog)


def test_json_as_deep_as_allowed_is_parsed(api):
    depth = settings.API_MAX_JSON_DEPTH - 1  # inside the top-level object
    value = "[" * depth + "]" * depth
    response = api.post(
        CREATE, f'{{"name": "k", "scopes": {value}}}', content_type="application/json"
    )
    assert response.status_code == 400  # a list of lists is not a scope: the serializer says so
    assert response.json()["error"]["code"] == "invalid"


def test_brackets_inside_strings_do_not_count_as_depth(api):
    name = "[" * (settings.API_MAX_JSON_DEPTH + 5)
    response = api.post(CREATE, {"name": name[:100]}, format="json")
    assert response.status_code == 201, response.content


def test_too_many_query_parameters_is_a_400(api, caplog):
    query = "&".join(f"p{n}=1" for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = api.get(f"{LIST}?{query}")
    assert_error(response, 400, "too_many_parameters")
    _no_traceback(caplog)


def test_a_malformed_content_length_is_a_400(api):
    response = api.generic(
        "POST", CREATE, b"{}", content_type="application/json", CONTENT_LENGTH="12abc"
    )
    assert_error(response, 400, "bad_request")


def test_a_post_without_its_trailing_slash_is_a_json_404_naming_the_path_not_a_redirect(api):
    response = api.post("/api/v1/api-keys", {"name": "ci"}, format="json")
    error = assert_error(response, 404, "not_found")
    assert error["details"] == {"did_you_mean": "/api/v1/api-keys/"}


def test_a_path_with_doubled_leading_slashes_stays_in_the_error_shape(api):
    for path in ("//api/v1/tenant/", "//api/v1/no-such-thing/"):
        response = api.get("/", PATH_INFO=path)  # as a server passes it (a client URL would parse
        # "//api/..." as a host)
        assert response["Content-Type"] == "application/json"
        assert_error(response, 404, "not_found")


def test_pages_outside_the_api_keep_their_slash_redirect(client):
    assert client.get("/admin").status_code == 301
