"""Helpers for the feature-flag tests."""

from __future__ import annotations

from urllib.parse import quote

from django.db import connection

from degradation.models import Flag


def make_flag(name: str, *, tenants=(), plans=(), **fields) -> Flag:
    flag = Flag.objects.create(name=name, superusers=False, **fields)
    if tenants:
        flag.tenants.add(*tenants)
    if plans:
        flag.plans.add(*plans)
    return flag


def test_database_url() -> str:
    """A URL of the database this test run uses (its test database), for a child process."""
    s = connection.settings_dict
    auth = quote(s["USER"] or "", safe="")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"], safe="")
    return f"postgres://{auth}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


test_database_url.__test__ = False  # not a test, despite its name
