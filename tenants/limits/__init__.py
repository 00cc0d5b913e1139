"""Rate limits, quotas, the monthly API-call count, usage reports and their headers.

One package around one registry of resources (``registry``). On the request path it has one entry
and one exit, ``LimitsMiddleware`` (``middleware``): before the view it admits the request (rate
window, then API-call count) and records what it decided in the request's ``LimitsState``
(``state``); after the view it writes the ``RateLimit-*`` and ``Quota-Warning`` headers from that
state and settles the API-call count. The parts:

- ``registry``: every limit's name, label, unit, kind and period;
- ``ratelimits``: per-tenant (and per-key) windows, counted by django-ratelimit;
- ``api_calls``: the monthly API-call count, live in the counter store, durable in the database;
- ``quotas``: race-safe reservations of counted resources (storage, jobs);
- ``usage``: what a tenant uses of each limit, for the usage API and the admin;
- ``admin_usage``: the same figures as SQL expressions for the admin changelist.

This module exports only the registry, so that ``tenants.models`` can read it; import the other
parts by their module.
"""

from tenants.limits.registry import (
    API_CALLS_PER_MONTH,
    COUNTED,
    COUNTERS,
    JOBS_PER_DAY,
    LIMIT_NAMES,
    MAX_API_KEYS,
    MAX_FILE_BYTES,
    MAX_LIMIT_VALUE,
    MAX_MEMBERS,
    REQUESTS_PER_MINUTE,
    RESOURCES,
    STORAGE_BYTES,
    Resource,
    resource,
)

__all__ = [
    "API_CALLS_PER_MONTH",
    "COUNTED",
    "COUNTERS",
    "JOBS_PER_DAY",
    "LIMIT_NAMES",
    "MAX_API_KEYS",
    "MAX_FILE_BYTES",
    "MAX_LIMIT_VALUE",
    "MAX_MEMBERS",
    "REQUESTS_PER_MINUTE",
    "RESOURCES",
    "STORAGE_BYTES",
    "Resource",
    "resource",
]
