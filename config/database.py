"""Build ``DATABASES`` from the environment: the primary, its pool, and the read replicas.

Mistakes in these variables do not crash the import of settings: they are collected in
``CONFIG_ERRORS`` and reported by the system check ``config.E001`` naming the variable, so
``manage.py check`` (and every start-up) says exactly what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import environ

SQLITE_OPTIONS = {
    # WAL lets the embedded server read while it writes; IMMEDIATE avoids "database is locked"
    # on lock upgrades when two requests write at once.
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}


@dataclass
class DatabaseConfig:
    databases: dict[str, dict[str, Any]]
    replica_aliases: list[str]
    errors: list[tuple[str, str]] = field(default_factory=list)  # (variable, problem)


def _int(env: environ.Env, name: str, default: int, errors: list, minimum: int = 0) -> int:
    try:
        value = env.int(name, default=default)
    except (ValueError, TypeError):
        errors.append((name, f"must be an integer, got {env.str(name)!r}"))
        return default
    if value < minimum:
        errors.append((name, f"must be at least {minimum}, got {value}"))
        return default
    return value


def _float(env: environ.Env, name: str, default: float, errors: list) -> float:
    try:
        value = env.float(name, default=default)
    except (ValueError, TypeError):
        errors.append((name, f"must be a number, got {env.str(name)!r}"))
        return default
    if value <= 0:
        errors.append((name, f"must be positive, got {value}"))
        return default
    return value


POSTGRES = "django.db.backends.postgresql"
SQLITE = "django.db.backends.sqlite3"


def _parse_url(
    url: str, variable: str, errors: list, engines: tuple[str, ...]
) -> dict[str, Any] | None:
    try:
        parsed = environ.Env.db_url_config(url)
    except Exception as error:  # django-environ raises several types for bad URLs
        errors.append((variable, f"cannot be parsed ({error})".replace(url, "<url>")))
        return None
    engine = parsed.get("ENGINE")
    if engine not in engines:
        errors.append(
            (variable, f"is not a {' or '.join(e.rsplit('.', 1)[1] for e in engines)} URL")
        )
        return None
    if engine == POSTGRES and not (parsed.get("HOST") and parsed.get("NAME")):
        errors.append((variable, "needs a host and a database name"))
        return None
    return parsed


def build(env: environ.Env, sqlite_default: str) -> DatabaseConfig:
    errors: list[tuple[str, str]] = []
    primary = _parse_url(
        env.str("DATABASE_URL", default=sqlite_default), "DATABASE_URL", errors, (POSTGRES, SQLITE)
    )
    primary = primary or environ.Env.db_url_config(sqlite_default)

    if primary["ENGINE"] == SQLITE:
        primary["OPTIONS"] = dict(SQLITE_OPTIONS)
        return DatabaseConfig({"default": primary}, [], errors)

    pool_min = _int(env, "DATABASE_POOL_MIN", 2, errors)
    pool_max = _int(env, "DATABASE_POOL_MAX", 10, errors, minimum=1)
    if pool_min > pool_max:
        errors.append(("DATABASE_POOL_MIN", f"({pool_min}) exceeds DATABASE_POOL_MAX ({pool_max})"))
        pool_min = pool_max
    replica_pool_max = _int(env, "DATABASE_REPLICA_POOL_MAX", pool_max, errors, minimum=1)
    checkout_timeout = _float(env, "DATABASE_POOL_TIMEOUT", 5.0, errors)
    # Short: a replica that died between two health checks holds its first reader this long.
    replica_checkout_timeout = _float(env, "DATABASE_REPLICA_POOL_TIMEOUT", 1.0, errors)
    connect_timeout = _int(env, "DATABASE_CONNECT_TIMEOUT", 5, errors, minimum=1)
    pgbouncer = env.bool("DATABASE_PGBOUNCER", default=False)

    def configure(settings: dict[str, Any], max_size: int, timeout: float) -> dict[str, Any]:
        settings["CONN_HEALTH_CHECKS"] = True
        options = settings.setdefault("OPTIONS", {})
        options["connect_timeout"] = connect_timeout
        if pgbouncer:
            # Transaction pooling: PgBouncer owns the pool, and a server-side cursor cannot
            # outlive the transaction that PgBouncer pins to one server connection.
            settings["DISABLE_SERVER_SIDE_CURSORS"] = True
            settings["CONN_MAX_AGE"] = 0
        else:
            settings["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django must not
            options["pool"] = {
                "min_size": min(pool_min, max_size),
                "max_size": max_size,
                "timeout": timeout,
                "max_idle": 300,
                "max_lifetime": 1800,
                "name": settings.get("NAME", "db"),
            }
        return settings

    databases = {"default": configure(primary, pool_max, checkout_timeout)}
    aliases = []
    if env.bool("USE_READ_REPLICAS", default=False):
        for number, url in enumerate(env.list("DATABASE_READ_REPLICAS", default=[]), start=1):
            replica = _parse_url(
                url, f"DATABASE_READ_REPLICAS (entry {number})", errors, (POSTGRES,)
            )
            if replica is None:
                continue
            alias = f"replica_{number}"
            # Tests read the replica's copy of the test database, not a second test database.
            replica["TEST"] = {"MIRROR": "default"}
            databases[alias] = configure(replica, replica_pool_max, replica_checkout_timeout)
            aliases.append(alias)
    return DatabaseConfig(databases, aliases, errors)


def forget_pools_inherited_across_fork() -> None:
    """In a forked child (Celery prefork, gunicorn --preload), drop the parent's pooled connections.

    Invariant: a process never shares a database socket with another. Using an inherited
    connection would interleave two processes' protocol messages on one session, and closing it
    would end the parent's session, so the child forgets them without closing (psycopg does not
    finish a connection garbage-collected in a process other than its creator) and opens its own.
    """
    from django.db import connections
    from django.db.backends.postgresql.base import DatabaseWrapper

    DatabaseWrapper._connection_pools.clear()
    for wrapper in connections.all(initialized_only=True):
        wrapper.connection = None
