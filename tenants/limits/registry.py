"""The one registry of the limits a plan sets and a tenant may override.

Every other place that names a limit reads it from here: the ``Plan`` columns, the override
validation, the ``TenantUsage`` resource choices, quotas, the usage report and API, the admin's
usage columns and filters, and the serializers. A new limit is one ``Resource`` line here (plus its
migration and the code that enforces it).

Kinds:

* ``RATE``: requests per window, counted in the counter store (``tenants.limits.ratelimits``);
* ``ROWS``: counted from the tenant's rows under the tenant's row lock (``tenants.services``);
* ``COUNTER``: a ``TenantUsage`` row per period, reserved with one conditional UPDATE
  (``tenants.limits.quotas``), or counted live in the counter store first (API calls);
* ``PER_ITEM``: a bound on one item (a file's size): checked, nothing is counted;
* ``CONCURRENT``: how many at once, counted live from the rows that are in progress (jobs handed
  to the broker or running: ``queues.dispatcher``); more wait, nothing is refused.

``None`` as a limit means unlimited everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

RATE, ROWS, COUNTER, PER_ITEM, CONCURRENT = "rate", "rows", "counter", "per_item", "concurrent"

#: The largest limit a plan or an override may set. Not a business rule (typos such as an extra
#: zero are not its concern): it refuses overflow-ish nonsense. It fits ``PositiveBigIntegerField``
#: with room to spare, so ``used * 100`` (percentages, computed in SQL bigint by the admin) and a
#: counter past its limit cannot overflow, and an override in the JSON always casts to a bigint.
#: 10**15 is a petabyte of storage or a million billion calls.
MAX_LIMIT_VALUE = 10**15


@dataclass(frozen=True)
class Resource:
    """One limit: its name (the ``Plan`` column and the override key), how people read it, what it
    counts, and over which period (``None``: no period)."""

    name: str
    label: str
    unit: str
    kind: str
    period: str | None
    help_text: str

    @property
    def is_counted(self) -> bool:
        """Whether usage of it is counted (and so can be near its limit)."""
        return self.kind in (ROWS, COUNTER)

    @property
    def is_bytes(self) -> bool:
        return self.unit == "bytes"


REQUESTS_PER_MINUTE = "requests_per_minute"
MAX_MEMBERS = "max_members"
MAX_API_KEYS = "max_api_keys"
STORAGE_BYTES = "storage_bytes"
MAX_FILE_BYTES = "max_file_bytes"
JOBS_PER_DAY = "jobs_per_day"
JOBS_IN_FLIGHT = "jobs_in_flight"
API_CALLS_PER_MONTH = "api_calls_per_month"

RESOURCES: tuple[Resource, ...] = (
    Resource(
        REQUESTS_PER_MINUTE, "API requests per minute", "requests", RATE, "minute",
        "API requests per minute.",
    ),
    Resource(MAX_MEMBERS, "Members", "members", ROWS, None, "Members of the tenant."),
    Resource(MAX_API_KEYS, "Active API keys", "keys", ROWS, None, "Active API keys."),
    Resource(STORAGE_BYTES, "Stored bytes", "bytes", COUNTER, None, "Stored file bytes."),
    Resource(MAX_FILE_BYTES, "Bytes per file", "bytes", PER_ITEM, None, "Bytes of a single file."),
    Resource(JOBS_PER_DAY, "Jobs today", "jobs", COUNTER, "day", "Background jobs per day."),
    Resource(
        JOBS_IN_FLIGHT, "Jobs in flight", "jobs", CONCURRENT, None,
        "Jobs handed to workers at once (the tenant's share of them); more wait their turn.",
    ),
    Resource(
        API_CALLS_PER_MONTH, "API calls this month", "calls", COUNTER, "month",
        "API calls per calendar month.",
    ),
)  # fmt: skip

_BY_NAME = {resource.name: resource for resource in RESOURCES}

#: Every limit name, in the registry's order (the ``Plan`` columns, the API's ``limits``).
LIMIT_NAMES: tuple[str, ...] = tuple(_BY_NAME)

#: The limits whose usage is counted (rows or counters), in the registry's order.
COUNTED: tuple[str, ...] = tuple(r.name for r in RESOURCES if r.is_counted)

#: The ``TenantUsage`` counters and their period (``None``: no period).
COUNTERS: dict[str, str | None] = {r.name: r.period for r in RESOURCES if r.kind == COUNTER}


def resource(name: str) -> Resource:
    """The registered resource ``name``; ``ValueError`` for a name that is not one."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"{name!r} is not a limit ({', '.join(LIMIT_NAMES)}).") from None


def counter_choices() -> list[tuple[str, str]]:
    """``TenantUsage.resource`` choices: the counters with their labels."""
    return [(r.name, r.help_text.rstrip(".")) for r in RESOURCES if r.kind == COUNTER]
