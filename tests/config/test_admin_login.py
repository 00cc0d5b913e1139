"""The admin sign-in is throttled per address and per username; the lockout clears itself."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

URL = "/admin/login/"


@pytest.fixture
def attempts(settings):
    settings.ADMIN_LOGIN_ATTEMPTS_PER_MINUTE = 3
    return 3


def _try(username: str, address: str = "203.0.113.9"):
    return Client().post(URL, {"username": username, "password": "wrong"}, REMOTE_ADDR=address)


def test_guessing_from_one_address_is_refused_and_the_lockout_clears(attempts, ratelimit_clock):
    answers = [_try(f"user{n}").status_code for n in range(attempts + 2)]
    assert answers == [200] * attempts + [429, 429]  # 200: the form again, with its error
    refused = _try("someone")
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 60
    assert Client().get(URL, REMOTE_ADDR="203.0.113.9").status_code == 200  # the page still shows

    ratelimit_clock.now += 60  # the next window
    assert _try("someone-else").status_code == 200


def test_guessing_one_username_from_many_addresses_is_refused(attempts):
    answers = [_try("admin", f"198.51.100.{n}").status_code for n in range(attempts + 1)]
    assert answers == [200] * attempts + [429]
    assert _try("another-user", "198.51.100.200").status_code == 200
