"""The one settings module. Every knob is an environment variable (django-environ).

With no variables set the project runs in *embedded mode*: SQLite under ``var/``, a
local-memory cache and files under ``var/media/``. Setting ``DATABASE_URL`` and
``REDIS_URL`` switches to PostgreSQL and Redis. Every variable is listed with its
default and meaning in ``.env.example`` and ``docs/CONFIGURATION.md``.
"""

from pathlib import Path

import environ
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotocoreConfig
from django.core.management.utils import get_random_secret_key

from config import database

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

VAR_DIR = Path(env("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _embedded_secret_key() -> str:
    """A random key kept in var/ so embedded mode needs no configuration and sessions survive restarts."""
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(get_random_secret_key())
        key_file.chmod(0o600)
    return key_file.read_text().strip()


# --- Core -----------------------------------------------------------------------------------
SECRET_KEY = env("DJANGO_SECRET_KEY", default=None) or _embedded_secret_key()
DEBUG = env.bool("DJANGO_DEBUG", default=False)
TENANT_BASE_DOMAIN = env("TENANT_BASE_DOMAIN", default="localhost").lower().strip(".")
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS",
    default=["localhost", "127.0.0.1", "[::1]", f".{TENANT_BASE_DOMAIN}"],
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "corsheaders",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "config",
    "tenants",
    "degradation",
    "queues",
    "storage",
    "metrics",
    "waffle",
    "django_celery_beat",
    "django_prometheus",
]

# Metrics on the request path (docs/METRICS.md); the switches exist for bench/metrics.py, which
# measures each one's cost against the same server without it.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
METRICS_DJANGO_PROMETHEUS = METRICS_ENABLED and env.bool("METRICS_DJANGO_PROMETHEUS", default=True)
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # answers /metrics; counts by plan and error code; the query monitor's and usage's unit
    *(["metrics.middleware.MetricsMiddleware"] if METRICS_ENABLED else []),
    *(
        ["django_prometheus.middleware.PrometheusBeforeMiddleware"]
        if METRICS_DJANGO_PROMETHEUS
        else []
    ),
    "corsheaders.middleware.CorsMiddleware",  # answers nothing cross-origin unless configured
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.api.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "config.api.ApiCommonMiddleware",  # CommonMiddleware without slash redirects under /api/
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tenants.middleware.TenantMiddleware",
    "tenants.limits.middleware.LimitsMiddleware",
    "config.db_router.ReplicaPinningMiddleware",
    *(
        ["django_prometheus.middleware.PrometheusAfterMiddleware"]
        if METRICS_DJANGO_PROMETHEUS
        else []
    ),
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database (pool sizing arithmetic: docs/CONFIGURATION.md) ---------------------------------
_database = database.build(env, sqlite_default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
DATABASES = _database.databases
if METRICS_DJANGO_PROMETHEUS:
    # django-prometheus's database metrics (connections, queries, errors by alias): its engine is
    # Django's PostgreSQL engine, pool and all, with counting cursors (docs/METRICS.md)
    for _entry in DATABASES.values():
        if _entry["ENGINE"] == database.POSTGRES:
            _entry["ENGINE"] = "django_prometheus.db.backends.postgresql"
DATABASE_CONFIG_ERRORS = _database.errors  # reported by the system check config.E001
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Read replicas ----------------------------------------------------------------------------
READ_REPLICA_ALIASES = _database.replica_aliases
DATABASE_ROUTERS = ["config.db_router.ReplicaRouter"]  # routing rules: docs/REPLICAS.md
REPLICA_PIN_SECONDS = env.float("REPLICA_PIN_SECONDS", default=5.0)
REPLICA_MAX_LAG_SECONDS = env.float("REPLICA_MAX_LAG_SECONDS", default=10.0)
REPLICA_COOLDOWN_SECONDS = env.float("REPLICA_COOLDOWN_SECONDS", default=30.0)
REPLICA_HEALTH_INTERVAL_SECONDS = env.float("REPLICA_HEALTH_INTERVAL_SECONDS", default=2.0)
# A process's first routed reads wait, in all, at most this long for its first replica check.
REPLICA_FIRST_CHECK_WAIT_SECONDS = env.float("REPLICA_FIRST_CHECK_WAIT_SECONDS", default=1.0)

# --- Cache (docs/CACHING.md) ----------------------------------------------------------------
ENABLE_CACHING = env.bool("ENABLE_CACHING", default=True)
REDIS_URL = env("REDIS_URL", default="")
_cache_common = {
    "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="ils"),
    "KEY_FUNCTION": "tenants.cache.make_key",  # t:<tenant>:<generation>:, and only in a scope
    "TIMEOUT": env.int("CACHE_DEFAULT_TIMEOUT", default=300),
}
# Global data (generations, resolutions, replica pins): plain keys, the same in and out of scopes.
_global_cache_common = {"KEY_PREFIX": env("GLOBAL_CACHE_KEY_PREFIX", default="ils-g")}
# Answers of tenant_cached_view a process keeps in memory (per generation; 0: none): docs/CACHING.md.
LOCAL_ANSWER_CACHE_ENTRIES = env.int("LOCAL_ANSWER_CACHE_ENTRIES", default=10_000)
# Feature flags get their own alias: waffle reads flags inside tenant scopes and admin saves them
# outside any, so their keys must be global (no tenant KEY_FUNCTION) for a save to invalidate them.
FLAG_CACHE_TIMEOUT = env.int("FLAG_CACHE_TIMEOUT", default=60)
_flag_cache_common = {
    "KEY_PREFIX": env("FLAG_CACHE_KEY_PREFIX", default="ils-flags"),
    "TIMEOUT": FLAG_CACHE_TIMEOUT,
}
_redis_cache = {
    "BACKEND": "degradation.cache.ResilientRedisCache",
    "LOCATION": REDIS_URL,
    "OPTIONS": {
        "SOCKET_CONNECT_TIMEOUT": env.float("REDIS_CONNECT_TIMEOUT", default=0.5),
        "SOCKET_TIMEOUT": env.float("REDIS_SOCKET_TIMEOUT", default=0.5),
        "FALLBACK_MAX_ENTRIES": env.int("CACHE_FALLBACK_MAX_ENTRIES", default=10_000),
    },
}
if not ENABLE_CACHING:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
        "global": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
        "flags": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }
elif REDIS_URL:
    CACHES = {
        "default": {**_cache_common, **_redis_cache},
        "global": {**_global_cache_common, **_redis_cache},
        "flags": {**_flag_cache_common, **_redis_cache},
    }
else:
    CACHES = {
        "default": {
            **_cache_common,
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "ils-embedded",
            "OPTIONS": {"MAX_ENTRIES": 50_000},
        },
        "global": {
            **_global_cache_common,
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "ils-embedded-global",
            "OPTIONS": {"MAX_ENTRIES": 50_000},
        },
        "flags": {
            **_flag_cache_common,
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "ils-embedded-flags",
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        },
    }

# Rate-limit and API-call counters (docs/RATELIMITS.md) get their own alias, whatever
# ENABLE_CACHING says: global keys (no tenant KEY_FUNCTION, so a tenant's cache generation never
# resets its window) and no local fallback, so a Redis outage is seen and RATELIMIT_FAIL_OPEN decides.
_counter_cache_common = {"KEY_PREFIX": env("RATELIMIT_CACHE_KEY_PREFIX", default="ils-rl")}
if REDIS_URL:
    CACHES["ratelimit"] = {
        **_counter_cache_common,
        **_redis_cache,
        # No fallback; add() remembers the windows it saw (one round trip per count, not two).
        "OPTIONS": {**_redis_cache["OPTIONS"], "FALLBACK": False, "REMEMBER_ADDED": True},
    }
else:
    CACHES["ratelimit"] = {
        **_counter_cache_common,
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "ils-embedded-ratelimit",
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    }
RATELIMIT_USE_CACHE = "ratelimit"
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
# Redis down: True lets requests through unlimited (logged, counted); False answers 503.
RATELIMIT_FAIL_OPEN = env.bool("RATELIMIT_FAIL_OPEN", default=True)
# Failed API-key attempts per client address per minute before every keyed request from it gets 429.
RATELIMIT_AUTH_FAILURES_PER_MINUTE = env.int("RATELIMIT_AUTH_FAILURES_PER_MINUTE", default=30)
# The monthly API-call count (tenants/limits/api_calls.py): written to the database every N calls;
# far from the limit a process adds its calls to the counter in batches; within the margin of the
# limit every call is counted at once.
API_CALLS_FLUSH_EVERY = max(1, env.int("API_CALLS_FLUSH_EVERY", default=100))
API_CALLS_BATCH = max(1, env.int("API_CALLS_BATCH", default=100))
API_CALLS_BATCH_SECONDS = env.float("API_CALLS_BATCH_SECONDS", default=1.0)
API_CALLS_EXACT_MARGIN = max(0, env.int("API_CALLS_EXACT_MARGIN", default=10_000))
# Admin sign-in attempts (POSTs) per client address and per username per minute (config/admin_login.py).
ADMIN_LOGIN_ATTEMPTS_PER_MINUTE = env.int("ADMIN_LOGIN_ATTEMPTS_PER_MINUTE", default=10)
# Behind a proxy: the META key holding the client address, e.g. HTTP_X_REAL_IP (django-ratelimit).
RATELIMIT_IP_META_KEY = env("RATELIMIT_IP_META_KEY", default=None)

# --- Feature flags: django-waffle (docs/DEGRADATION.md "Feature flags") -------------------------
# The flag model is chosen once, before the first migrate: it cannot change later.
WAFFLE_FLAG_MODEL = "degradation.Flag"
# waffle's migrations with its Flag marked swappable, so its unused flag tables are not created.
MIGRATION_MODULES = {"waffle": "degradation.waffle_migrations"}
WAFFLE_CACHE_NAME = "flags"
WAFFLE_CREATE_MISSING_FLAGS = False  # an unknown name answers off (logged once per process)
WAFFLE_LOG_MISSING_FLAGS = None  # degradation.models logs once per name instead of every call
# No waffle.middleware.WaffleMiddleware: it only writes the per-browser percentage and testing
# cookies; our percentages are per tenant (a hash of flag name and tenant id), with no cookie.

# --- Circuit breakers (docs/DEGRADATION.md) -------------------------------------------------
# Per breaker: CIRCUIT_BREAKER_<NAME>_FAILURES (consecutive failures that open it) and
# CIRCUIT_BREAKER_<NAME>_RESET_SECONDS (how long it stays open before a trial call). The `redis`
# breaker guards the cache Redis; its old names CACHE_BREAKER_* are still read as its defaults.
_BREAKER_DEFAULTS = {
    "redis": (
        env.int("CACHE_BREAKER_FAILURES", default=3),
        env.float("CACHE_BREAKER_COOLDOWN_SECONDS", default=5.0),
    ),
    "storage": (5, 30.0),
    "email": (5, 60.0),
    "broker": (3, 10.0),
    "replica": (3, 30.0),
    "webhooks": (10, 60.0),
}
CIRCUIT_BREAKERS = {
    name: {
        "failures": env.int(f"CIRCUIT_BREAKER_{name.upper()}_FAILURES", default=failures),
        "reset_seconds": env.float(f"CIRCUIT_BREAKER_{name.upper()}_RESET_SECONDS", default=reset),
    }
    for name, (failures, reset) in _BREAKER_DEFAULTS.items()
}
# Shared state lives in the cache Redis (empty: every breaker is per process, as in embedded mode).
CIRCUIT_BREAKER_REDIS_URL = env("CIRCUIT_BREAKER_REDIS_URL", default=REDIS_URL)
CIRCUIT_BREAKER_REDIS_TIMEOUT = env.float("CIRCUIT_BREAKER_REDIS_TIMEOUT", default=0.2)
CIRCUIT_BREAKER_REDIS_RETRY_SECONDS = env.float("CIRCUIT_BREAKER_REDIS_RETRY_SECONDS", default=2.0)

# --- Tenancy --------------------------------------------------------------------------------
TENANT_RESOLUTION_CACHE_SECONDS = env.int("TENANT_RESOLUTION_CACHE_SECONDS", default=300)
# The longest a process keeps its copy of a resolution or generation (tenants/mirror.py); changes
# reach every process at once over Redis pub/sub, this only bounds a change made behind its back.
GLOBAL_MIRROR_SECONDS = env.float("GLOBAL_MIRROR_SECONDS", default=30.0)
API_KEY_LAST_USED_INTERVAL_SECONDS = env.int("API_KEY_LAST_USED_INTERVAL_SECONDS", default=60)
# Invitations (POST /api/v1/invitations/): how long a token stays valid, and how many unexpired
# invitations a tenant may have open at once.
INVITATION_EXPIRY_HOURS = max(1, env.int("INVITATION_EXPIRY_HOURS", default=168))
INVITATIONS_MAX_OPEN = max(1, env.int("INVITATIONS_MAX_OPEN", default=100))

# --- CORS (django-cors-headers): closed unless origins are named ------------------------------
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/.*$"  # the API only; the admin is never cross-origin
CORS_ALLOW_CREDENTIALS = False  # API keys travel in Authorization, not in cookies

# --- Jobs: Celery behind the job table (queues/, docs/JOBS.md) -------------------------------
# Empty (embedded mode): no broker; a job runs in the web process right after its transaction
# commits. Set: a Redis (or amqp://) URL of its own, never the cache's (an evicting cache must
# never hold broker keys).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
JOB_QUEUES = ["default", "email", "reports", "exports", "webhooks", "cleanup"]
CELERY_TASK_DEFAULT_QUEUE = "default"
# Late acks and one message at a time: a worker holds only what it runs. A lost worker's job is
# rescued from its row (JOB_LEASE_SECONDS), not redelivered by the broker, so a job that kills its
# worker cannot loop: the broker must not redeliver it as well.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A publish to a broker that is down gives up after this long (the job waits in the table).
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=2.0)
# Redis transport: an unacked message is delivered again after this long. We schedule nothing on
# the broker (delays live in Job.run_at), and queues.E001 keeps it above JOB_LEASE_SECONDS.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    "socket_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
    "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
}
# A running job's lease: renewed every third of it while the job runs; expired, the job is rescued.
JOB_LEASE_SECONDS = env.int("JOB_LEASE_SECONDS", default=60)
# Rescues (lost workers) a job survives; one more and it is dead, with the reason.
JOB_MAX_RESCUES = env.int("JOB_MAX_RESCUES", default=3)
# A due job published this long ago and still unclaimed is published again (a lost message).
JOB_REPUBLISH_SECONDS = env.int("JOB_REPUBLISH_SECONDS", default=60)
# Each worker writes its heartbeat this often; one not seen for WORKER_ALIVE_SECONDS is not alive.
WORKER_HEARTBEAT_SECONDS = env.float("WORKER_HEARTBEAT_SECONDS", default=10.0)
WORKER_ALIVE_SECONDS = env.float("WORKER_ALIVE_SECONDS", default=30.0)
# Finished jobs (succeeded, cancelled) are deleted after this many days; failed and dead ones stay.
JOB_RETENTION_DAYS = env.int("JOB_RETENTION_DAYS", default=30)
# Beat: django-celery-beat's database scheduler behind the single-sender lock (queues/beat.py).
# Maintenance runs on the cleanup queue, so a busy default queue never delays a rescue.
JOB_DISPATCH_SECONDS = env.float("JOB_DISPATCH_SECONDS", default=1.0)
CELERY_BEAT_SCHEDULER = "queues.beat.SingleBeatScheduler"
# Maintenance tasks and the seconds between their runs, all on the cleanup queue.
_MAINTENANCE_SECONDS = {
    "queues.prune_jobs": 3600.0,
    "queues.reconcile_jobs_per_day": 3600.0,
    "tenants.reset_quota_periods": 3600.0,
    "storage.purge_overdue": 3600.0,
    "storage.reconcile_usage": 3600.0,
    "metrics.roll_up_usage": 3600.0,
    "storage.report_orphans": env.float("FILES_ORPHAN_REPORT_SECONDS", default=86400.0),
}
CELERY_BEAT_SCHEDULE = {
    "queues.dispatch": {
        "task": "queues.dispatch",
        "schedule": JOB_DISPATCH_SECONDS,
        "options": {"queue": "cleanup", "expires": max(5.0, JOB_DISPATCH_SECONDS * 5)},
    },
    **{
        task: {"task": task, "schedule": seconds, "options": {"queue": "cleanup"}}
        for task, seconds in _MAINTENANCE_SECONDS.items()
    },
}
# diagnostics.echo / .sleep / .fail: on in embedded mode, off by default with a broker.
JOBS_DIAGNOSTIC_KINDS = env.bool("JOBS_DIAGNOSTIC_KINDS", default=not CELERY_BROKER_URL)

# --- API ------------------------------------------------------------------------------------
# Input limits, set on purpose (docs/CONFIGURATION.md): a larger body is a 413 before it is read,
# deeper JSON or more query parameters a 400.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = env.int("API_MAX_PARAMETERS", default=200)
API_MAX_JSON_DEPTH = env.int("API_MAX_JSON_DEPTH", default=32)
API_PAGE_SIZE = env.int("API_PAGE_SIZE", default=50)
API_MAX_PAGE_SIZE = env.int("API_MAX_PAGE_SIZE", default=200)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.permissions.IsTenantMember"],
    # Per-tenant rate limits apply to every /api/v1/ view through LimitsMiddleware
    # (docs/RATELIMITS.md), not through DRF throttles.
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_PAGINATION_CLASS": "config.api.ApiCursorPagination",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "config.negotiation.ApiContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.LimitedJSONParser"],
    "EXCEPTION_HANDLER": "config.api.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )

SPECTACULAR_SETTINGS = {
    "TITLE": "ILS multi-tenant platform API",
    "DESCRIPTION": "Tenant API (`/api/v1/`, `Authorization: Bearer <key>`) and staff ops API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/(v1/)?",
    # Two choice sets are called "status"; name each (import paths, read by drf-spectacular).
    "ENUM_NAME_OVERRIDES": {
        "TenantStatusEnum": "tenants.models.Tenant.Status",
        "InvitationStatusEnum": "tenants.serializers.INVITATION_STATUSES",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.schema.postprocess_error_responses",
    ],
}

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=DEBUG)
MEDIA_ROOT = Path(env("UPLOAD_DIR", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Files: django-storages (storage/, docs/FILES.md) ----------------------------------------
# Tenants' files go to the storage named by STORAGE_PROVIDER: local (UPLOAD_DIR), s3 (AWS),
# s3-compatible (any endpoint: AWS_S3_ENDPOINT_URL), cloudflare-r2. Each configured one is an entry
# of STORAGES under its own name, so migrate_storage can move files between them.
STORAGE_PROVIDER = env("STORAGE_PROVIDER", default="local")
FILES_STORAGE = STORAGE_PROVIDER
# A deleted file's bytes are purged (a job) this long after its deletion.
FILES_PURGE_AFTER_HOURS = env.float("FILES_PURGE_AFTER_HOURS", default=24.0)
# The largest upload any plan can take, whatever its limits (a body over it is refused unread).
FILES_MAX_UPLOAD_BYTES = env.int("FILES_MAX_UPLOAD_BYTES", default=5 * 1024**3)
# /api/storage/health probes the storage at most once per this many seconds per process.
STORAGE_HEALTH_CACHE_SECONDS = env.float("STORAGE_HEALTH_CACHE_SECONDS", default=5.0)
# Private files are only ever served by signed URLs this short-lived.
FILE_URL_SECONDS = env.int("FILE_URL_SECONDS", default=300)
# What an upload may be, as detected from its bytes (never the client's name or claimed type).
FILES_ALLOWED_TYPES = env.list(
    "FILES_ALLOWED_TYPES",
    default=[
        "image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf", "text/plain",
        "application/zip", "application/gzip", "application/octet-stream",
    ],
)  # fmt: skip
STORAGES["local"] = {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {"location": MEDIA_ROOT / "files", "base_url": None},
}
# Bounded memory per transfer: a file read from S3 spools to disk past FILES_S3_MEMORY_BYTES
# (django-storages' default 0 keeps a whole object in memory), and boto3 sends/receives parts of
# FILES_S3_PART_BYTES, FILES_S3_TRANSFER_THREADS at a time.
FILES_S3_MEMORY_BYTES = env.int("FILES_S3_MEMORY_BYTES", default=8 * 1024**2)
FILES_S3_PART_BYTES = env.int("FILES_S3_PART_BYTES", default=8 * 1024**2)
FILES_S3_TRANSFER_THREADS = env.int("FILES_S3_TRANSFER_THREADS", default=4)
# The options every S3 files storage shares (tests build their buckets' storages from it too).
FILES_S3_OPTIONS = {
    "default_acl": None,  # the bucket's policy decides; objects are private
    "querystring_auth": True,  # every URL is signed ...
    "querystring_expire": FILE_URL_SECONDS,  # ... and short-lived
    "file_overwrite": False,
    "max_memory_size": FILES_S3_MEMORY_BYTES,
    # An object fetched without our signed link's overrides is never rendered by a browser.
    "object_parameters": {
        "ContentType": "application/octet-stream",
        "ContentDisposition": "attachment",
    },
}
# A storage endpoint that does not answer fails a call after these (then the breaker counts it).
FILES_S3_CONNECT_TIMEOUT = env.float("FILES_S3_CONNECT_TIMEOUT", default=5.0)
FILES_S3_READ_TIMEOUT = env.float("FILES_S3_READ_TIMEOUT", default=30.0)
FILES_S3_MAX_ATTEMPTS = env.int("FILES_S3_MAX_ATTEMPTS", default=3)
FILES_S3_OPTIONS["transfer_config"] = TransferConfig(
    multipart_threshold=FILES_S3_PART_BYTES,
    multipart_chunksize=FILES_S3_PART_BYTES,
    max_concurrency=FILES_S3_TRANSFER_THREADS,
)
# django-storages ignores its signature_version and addressing_style options once a client_config
# is given, so they are set here: SigV4 (R2 and new AWS regions accept nothing else).
FILES_S3_OPTIONS["client_config"] = BotocoreConfig(
    signature_version="s3v4",
    s3={"addressing_style": env("AWS_S3_ADDRESSING_STYLE", default=None)},
    connect_timeout=FILES_S3_CONNECT_TIMEOUT,
    read_timeout=FILES_S3_READ_TIMEOUT,
    retries={"max_attempts": FILES_S3_MAX_ATTEMPTS, "mode": "standard"},
)
AWS_S3_BUCKET = env("AWS_S3_BUCKET", default="")
if AWS_S3_BUCKET:
    _s3 = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            **FILES_S3_OPTIONS,
            "bucket_name": AWS_S3_BUCKET,
            "region_name": env("AWS_S3_REGION", default=env("AWS_DEFAULT_REGION", default=None)),
            "access_key": env("AWS_ACCESS_KEY_ID", default=None),
            "secret_key": env("AWS_SECRET_ACCESS_KEY", default=None),
            "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),
        },
    }
    STORAGES["s3"] = STORAGES["s3-compatible"] = _s3
CLOUDFLARE_R2_BUCKET = env("CLOUDFLARE_R2_BUCKET", default="")
if CLOUDFLARE_R2_BUCKET:
    STORAGES["cloudflare-r2"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            **FILES_S3_OPTIONS,
            "bucket_name": CLOUDFLARE_R2_BUCKET,
            "region_name": "auto",
            "endpoint_url": env(
                "CLOUDFLARE_R2_ENDPOINT_URL",
                default=f"https://{env('CLOUDFLARE_R2_ACCOUNT_ID', default='')}"
                ".r2.cloudflarestorage.com",
            ),
            "access_key": env("CLOUDFLARE_R2_ACCESS_KEY_ID", default=None),
            "secret_key": env("CLOUDFLARE_R2_SECRET_ACCESS_KEY", default=None),
            # boto3 1.36+ sends checksums R2 rejects (django-storages#1498): only when required.
            "client_config": FILES_S3_OPTIONS["client_config"].merge(
                BotocoreConfig(
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
            ),
        },
    }

# CDN_BASE_URL: the `public` storage (public files: platform assets, never a tenant's upload) is
# served through the CDN domain, unsigned. Tenants' files stay private: their links are always
# presigned against the storage's endpoint, never the CDN (django-storages turns presigning off for
# a custom domain, #165), or for local disk a signed Django view.
CDN_BASE_URL = env("CDN_BASE_URL", default="").rstrip("/")
if CDN_BASE_URL:
    from urllib.parse import urlsplit

    _files_entry = STORAGES.get(FILES_STORAGE, STORAGES["local"])
    if _files_entry["BACKEND"].startswith("storages."):
        STORAGES["public"] = {
            "BACKEND": _files_entry["BACKEND"],
            "OPTIONS": {
                **_files_entry["OPTIONS"],
                "location": "public",
                "custom_domain": urlsplit(CDN_BASE_URL).netloc + urlsplit(CDN_BASE_URL).path,
                "url_protocol": f"{urlsplit(CDN_BASE_URL).scheme or 'https'}:",
                "querystring_auth": False,
                "object_parameters": {},
            },
        }
    else:
        STORAGES["public"] = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": MEDIA_ROOT / "public", "base_url": f"{CDN_BASE_URL}/"},
        }

# --- Metrics (metrics/, docs/METRICS.md) --------------------------------------------------------
# /metrics is answered before the tenant middleware, to the token or the allowed networks only.
METRICS_PATH = "/metrics"
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])
PROMETHEUS_EXPORT_MIGRATIONS = False
# A Celery worker's own /metrics (metrics/worker.py: its jobs by outcome, queue time, duration),
# same access rule. Set it on each worker's command line (the Procfile's), one port per worker on
# a host: config/celery.py reads it before settings load, to give the worker a multiprocess
# directory. 0: no exporter.
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
# All interfaces, as the web binds: Prometheus scrapes from elsewhere; access is the token or a
# network.
WORKER_METRICS_ADDRESS = env("WORKER_METRICS_ADDRESS", default="0.0.0.0")  # noqa: S104
# The query monitor (metrics/queries/): fingerprints of the SQL a sample of requests runs, slow
# queries (logged with their plan) and N+1s (the same query this many times in one request).
QUERY_MONITOR_ENABLED = env.bool("QUERY_MONITOR_ENABLED", default=True)
QUERY_MONITOR_SAMPLE_RATE = env.float("QUERY_MONITOR_SAMPLE_RATE", default=0.1)
QUERY_MONITOR_N_PLUS_ONE = env.int("QUERY_MONITOR_N_PLUS_ONE", default=5)
QUERY_MONITOR_FLUSH_SECONDS = env.float("QUERY_MONITOR_FLUSH_SECONDS", default=30.0)
# Query parameters can hold personal data: kept out of storage and plans unless this is on.
QUERY_MONITOR_STORE_PARAMS = env.bool("QUERY_MONITOR_STORE_PARAMS", default=False)
SLOW_QUERY_MS = env.float("SLOW_QUERY_MS", default=200.0)
# Per-tenant usage metrics (metrics/usage.py): each process adds its counts to hourly rows this
# often; beat rolls days up and keeps hourly rows and daily rows this many days.
TENANT_METRICS_ENABLED = env.bool("TENANT_METRICS_ENABLED", default=True)
TENANT_METRICS_FLUSH_SECONDS = env.float("TENANT_METRICS_FLUSH_SECONDS", default=10.0)
TENANT_METRICS_HOURLY_DAYS = env.int("TENANT_METRICS_HOURLY_DAYS", default=14)
TENANT_METRICS_DAILY_DAYS = env.int("TENANT_METRICS_DAILY_DAYS", default=400)
# /metrics exports the top tenants by requests this hour under a `tenant` label (the rest: other).
TENANT_METRICS_TOP_N = env.int("TENANT_METRICS_TOP_N", default=10)
# The index advisor keeps a proposal only if it cuts the plan's cost by at least this share.
INDEX_ADVISOR_MIN_GAIN = env.float("INDEX_ADVISOR_MIN_GAIN", default=0.3)
INDEX_ADVISOR_TOP_QUERIES = env.int("INDEX_ADVISOR_TOP_QUERIES", default=50)

# --- Security (production turns these on with variables; see docs/CONFIGURATION.md) ----------
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=False)
if env.bool("DJANGO_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Health probes come from load balancers over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^health/"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
