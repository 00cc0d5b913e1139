"""DATABASES built from the environment: pool, PgBouncer profile, bad values, fork safety."""

from __future__ import annotations

import os

import environ
import pytest
from django.db import connection

from config import database

SQLITE = "sqlite:////tmp/ils-test.sqlite3"


@pytest.fixture
def environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("DATABASE_", "USE_READ_REPLICAS")):
            monkeypatch.delenv(name)

    def build(**variables: str) -> database.DatabaseConfig:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return database.build(environ.Env(), sqlite_default=SQLITE)

    return build


def test_embedded_mode_is_sqlite_without_a_pool(environment):
    config = environment()
    assert config.databases["default"]["ENGINE"].endswith("sqlite3")
    assert "pool" not in config.databases["default"]["OPTIONS"]
    assert config.errors == []


def test_postgres_gets_a_bounded_pool_with_a_checkout_timeout(environment):
    config = environment(
        DATABASE_URL="postgres://u@db:5432/ils",
        DATABASE_POOL_MIN="3",
        DATABASE_POOL_MAX="15",
        DATABASE_POOL_TIMEOUT="2.5",
    )
    default = config.databases["default"]
    assert default["OPTIONS"]["pool"]["min_size"] == 3
    assert default["OPTIONS"]["pool"]["max_size"] == 15
    assert default["OPTIONS"]["pool"]["timeout"] == 2.5
    assert default["CONN_MAX_AGE"] == 0  # Django refuses persistent connections with a pool
    assert default["CONN_HEALTH_CHECKS"] is True


def test_pgbouncer_profile_has_no_pool_and_no_server_side_cursors(environment):
    config = environment(DATABASE_URL="postgres://u@bouncer:6432/ils", DATABASE_PGBOUNCER="1")
    default = config.databases["default"]
    assert "pool" not in default["OPTIONS"]
    assert default["DISABLE_SERVER_SIDE_CURSORS"] is True


def test_replicas_get_their_own_pool_size_and_aliases(environment):
    config = environment(
        DATABASE_URL="postgres://u@db:5432/ils",
        USE_READ_REPLICAS="true",
        DATABASE_READ_REPLICAS="postgres://u@r1:5432/ils,postgres://u@r2:5432/ils",
        DATABASE_REPLICA_POOL_MAX="30",
    )
    assert config.replica_aliases == ["replica_1", "replica_2"]
    assert config.databases["replica_2"]["HOST"] == "r2"
    assert config.databases["replica_1"]["OPTIONS"]["pool"]["max_size"] == 30
    assert config.databases["replica_1"]["OPTIONS"]["pool"]["timeout"] == 1.0  # fail over fast


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"DATABASE_URL": "postgres://u@db/ils", "DATABASE_POOL_MAX": "many"}, "DATABASE_POOL_MAX"),
        ({"DATABASE_URL": "postgres://u@db/ils", "DATABASE_POOL_MAX": "0"}, "DATABASE_POOL_MAX"),
        (
            {
                "DATABASE_URL": "postgres://u@db/ils",
                "DATABASE_POOL_MIN": "9",
                "DATABASE_POOL_MAX": "4",
            },
            "DATABASE_POOL_MIN",
        ),
        (
            {"DATABASE_URL": "postgres://u@db/ils", "DATABASE_POOL_TIMEOUT": "-1"},
            "DATABASE_POOL_TIMEOUT",
        ),
        ({"DATABASE_URL": "mysql://u@db/ils"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://u:secret@db:port/ils"}, "DATABASE_URL"),
        (
            {
                "DATABASE_URL": "postgres://u@db/ils",
                "USE_READ_REPLICAS": "1",
                "DATABASE_READ_REPLICAS": "postgres://u:secret@/",
            },
            "DATABASE_READ_REPLICAS",
        ),
    ],
)
def test_bad_values_are_reported_with_the_variable_and_without_secrets(
    environment, variables, named
):
    config = environment(**variables)
    assert config.errors and config.errors[0][0].startswith(named)
    assert all("secret" not in problem for _, problem in config.errors)


def test_the_system_check_reports_configuration_errors(settings):
    from config.checks import check_database_variables

    settings.DATABASE_CONFIG_ERRORS = [("DATABASE_POOL_MAX", "must be an integer, got 'x'")]
    errors = check_database_variables(None)
    assert [error.id for error in errors] == ["config.E001"]
    assert "DATABASE_POOL_MAX" in errors[0].msg


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents_alone():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        parent_backend = cursor.fetchone()[0]

    child = os.fork()
    if child == 0:  # the child: must get a session of its own
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                os._exit(0 if cursor.fetchone()[0] != parent_backend else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    with connection.cursor() as cursor:  # the parent's session survived the child's exit
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == parent_backend
