"""Failed API-key attempts are limited per client address, so keys cannot be guessed."""

from __future__ import annotations

import pytest

from tenants import services
from tests.assertions import assert_error
from tests.factories import TenantFactory, issue_key, key_client

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

URL = "/api/v1/tenant/"
LIMIT = 3


@pytest.fixture(autouse=True)
def _small_limit(settings, ratelimit_clock):
    settings.RATELIMIT_AUTH_FAILURES_PER_MINUTE = LIMIT


@pytest.fixture
def valid_secret() -> str:
    tenant = TenantFactory()
    _, secret = issue_key(tenant)
    return secret


def _guess(n: int, address: str = "203.0.113.7"):
    return key_client(f"ils_{n:012x}_guess").get(URL, REMOTE_ADDR=address)


def test_after_the_limit_bad_keys_from_the_address_get_429_and_valid_keys_still_pass(
    valid_secret,
):
    failures = [_guess(n) for n in range(LIMIT)]
    assert [f.status_code for f in failures] == [401] * LIMIT

    blocked_guess = _guess(99)
    error = assert_error(blocked_guess, 429, "too_many_failed_attempts")
    assert error["message"]
    assert 1 <= int(blocked_guess["Retry-After"]) <= 60
    # Behind a proxy or a NAT the address is shared: someone else's failures never lock out a
    # client with a valid key (and a valid key costs no counter read).
    assert key_client(valid_secret).get(URL, REMOTE_ADDR="203.0.113.7").status_code == 200


def test_other_addresses_are_not_affected(valid_secret):
    for n in range(LIMIT):
        _guess(n)
    assert _guess(99).status_code == 429

    elsewhere = key_client(valid_secret).get(URL, REMOTE_ADDR="198.51.100.20")

    assert elsewhere.status_code == 200


def test_successful_requests_do_not_count_as_failures(valid_secret):
    client = key_client(valid_secret)
    for _ in range(LIMIT * 2):
        assert client.get(URL, REMOTE_ADDR="203.0.113.7").status_code == 200

    assert [_guess(n).status_code for n in range(LIMIT)] == [401] * LIMIT


def test_revoked_keys_count_as_failures(django_capture_on_commit_callbacks):
    tenant = TenantFactory()
    revoked, revoked_secret = issue_key(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(api_key=revoked)
    client = key_client(revoked_secret)
    answers = [client.get(URL, REMOTE_ADDR="203.0.113.9") for _ in range(LIMIT)]
    assert [a.json()["error"]["code"] for a in answers] == ["api_key_revoked"] * LIMIT

    assert_error(client.get(URL, REMOTE_ADDR="203.0.113.9"), 429, "too_many_failed_attempts")


def test_requests_without_a_key_are_not_counted(client):
    for _ in range(LIMIT + 2):
        assert client.get("/health/live", REMOTE_ADDR="203.0.113.7").status_code == 200

    assert _guess(1).status_code == 401


def test_the_next_window_lets_the_address_try_again(valid_secret, ratelimit_clock):
    for n in range(LIMIT):
        _guess(n)
    assert _guess(99).status_code == 429

    ratelimit_clock.now += 60

    assert key_client(valid_secret).get(URL, REMOTE_ADDR="203.0.113.7").status_code == 200


def test_a_hundred_bad_keys_from_an_address_never_stop_a_valid_key_from_it(valid_secret):
    answers = [_guess(n).status_code for n in range(100)]
    assert set(answers[:LIMIT]) == {401} and set(answers[LIMIT:]) == {429}
    valid = key_client(valid_secret).get(URL, REMOTE_ADDR="203.0.113.7")
    assert valid.status_code == 200


def test_guesses_at_one_key_from_many_addresses_are_stopped_by_its_prefix(valid_secret):
    prefix = valid_secret.split("_")[1]
    wrong = f"ils_{prefix}_{'x' * 43}"
    answers = [
        key_client(wrong).get(URL, REMOTE_ADDR=f"198.51.100.{n}").status_code
        for n in range(LIMIT + 3)
    ]
    assert set(answers[:LIMIT]) == {401} and set(answers[LIMIT:]) == {429}
    assert key_client(valid_secret).get(URL, REMOTE_ADDR="198.51.100.250").status_code == 200
