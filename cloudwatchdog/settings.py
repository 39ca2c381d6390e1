"""The one settings module. Everything a deployment changes comes from the environment
(django-environ); with DATABASE_URL / REDIS_URL unset, embedded servers under `.data/` are used."""
import ipaddress
import math
import os
import uuid
import warnings
from datetime import datetime
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from cloudwatchdog.routes import INGEST, pool_size

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

DEBUG = env.bool("DEBUG", default=False)
# pytest (8.2+) sets PYTEST_VERSION: a test session gets its own Redis key space and Celery
# queue, so it never shares throttle state or tasks with a `make run` on the same Redis.
TEST_RUN_ID = f"test-{uuid.uuid4().hex[:8]}" if "PYTEST_VERSION" in os.environ else ""
EMBEDDED = not env.str("DATABASE_URL", default="")


def _secret_key() -> str:
    """SECRET_KEY from the environment; on a development machine (embedded PostgreSQL) a random
    key kept in .data/secret_key. A deployment without one refuses to start."""
    key = env.str("SECRET_KEY", default="")
    if key:
        return key
    if not EMBEDDED:
        raise ImproperlyConfigured("Set SECRET_KEY (50 or more random characters) when DATABASE_URL is set.")
    import secrets

    from cloudwatchdog import embedded

    path = embedded.data_dir(BASE_DIR) / "secret_key"
    try:
        with open(path, "x") as handle:  # the first process to start writes it, the others read it
            handle.write(secrets.token_urlsafe(50))
    except FileExistsError:
        pass
    return path.read_text().strip() or secrets.token_urlsafe(50)


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

# Behind a TLS-terminating proxy (README, Production): trust its X-Forwarded-Proto, build https
# links, keep cookies on https and tell browsers to stay there.
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
_proxy_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
SECURE_PROXY_SSL_HEADER = tuple(_proxy_header) if len(_proxy_header) == 2 else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # load balancers probe over plain http
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)

if not EMBEDDED:
    DATABASES = {"default": env.db_url("DATABASE_URL")}
else:
    from cloudwatchdog import embedded

    # pgserver asks platformdirs for a runtime dir that a root shell often lacks.
    warnings.filterwarnings("ignore", module="platformdirs")
    DATABASES = {"default": environ.Env.db_url_config(embedded.postgres_url(BASE_DIR))}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=300)
# A niced role (ingest_bulk, Celery workers, ingest at INGEST_NICE > 0) renices its PostgreSQL backends (and their sessions) to its own level
# (cloudwatchdog/backend_priority.py); only meaningful when PostgreSQL runs on this machine as this user.
DATABASE_BACKENDS_SHARE_NICE = env.bool("DATABASE_BACKENDS_SHARE_NICE", default=EMBEDDED)
# gunicorn.conf.py sets this for web processes: no API request may hold a database backend longer.
# Workers and commands (detection over a tenant's whole history, maintenance) run without one.
_statement_timeout = env.str("DATABASE_STATEMENT_TIMEOUT", default="")
if _statement_timeout:
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = f"-c statement_timeout={_statement_timeout}"
# A PostgreSQL that accepts connections but never answers them (hung, stopped, its host gone) fails a new
# connection after this many seconds (libpq's connect_timeout), so the request answers 503, not hang.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
    "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5))
# A reused connection is checked (one round trip) before a request uses it, so a PostgreSQL
# restart costs a reconnect instead of failing the next request on every worker.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_CONN_HEALTH_CHECKS", default=True)
# ...except one used less than this many seconds ago (cloudwatchdog/postgresql): a busy worker skips the
# round trip, and a restart in between costs that request a 503 with Retry-After, the next one reconnects.
DATABASE_CONN_HEALTH_CHECK_IDLE_SECONDS = env.float("DATABASE_CONN_HEALTH_CHECK_IDLE_SECONDS", default=5.0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "cloudwatchdog.postgresql"

if env.str("REDIS_URL", default=""):
    REDIS_URL = env.str("REDIS_URL")
else:
    from cloudwatchdog import embedded

    REDIS_URL = embedded.redis_url(BASE_DIR)

# Redis calls on a request's path (rate limits, /readyz) give up after this: a Redis that does not
# answer must not hang requests.
REDIS_TIMEOUT_SECONDS = env.float("REDIS_TIMEOUT_SECONDS", default=0.25)
# Webhooks and Slack URLs may point at private or loopback addresses only when this is true.
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False)
# Where the admin is, for links in notifications (e.g. https://cwd.example.com).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Email notifications: Django's SMTP backend, configured from the environment.
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="cloudwatchdog@localhost")


def _loopback(bind: str) -> bool:
    """Whether gunicorn's BIND (host:port, [v6]:port or a bare host) listens on this machine only; a
    name other than localhost, 0.0.0.0 or a unix socket (which a proxy may serve) counts as reachable."""
    host = (bind.rsplit(":", 1)[0] if bind.startswith("[") or bind.count(":") == 1 else bind).strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# When set, GET /metrics wants `Authorization: Bearer <this>` (Prometheus: authorization.credentials).
METRICS_SCRAPE_TOKEN = env.str("METRICS_SCRAPE_TOKEN", default="")
# /metrics names every tenant and its volumes, so without the token it answers only on a development
# machine: the embedded database (as for SECRET_KEY) served on loopback, `make run`'s default. Anywhere
# else (DATABASE_URL set, or BIND reachable from other machines) it is refused until the token is set.
METRICS_OPEN_WITHOUT_TOKEN = EMBEDDED and _loopback(env.str("BIND", default="127.0.0.1:8000"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from our own static files (works offline)
    "tenants",
    "metrics",
    "anomalies",
    "promql",
]

MIDDLEWARE = [
    "cloudwatchdog.telemetry.RequestTimingMiddleware",
    "cloudwatchdog.middleware.ChunkedBodyMiddleware",
    "cloudwatchdog.middleware.PrometheusFormMiddleware",  # before anything reads request.GET/POST
    "cloudwatchdog.middleware.RefuseNulMiddleware",
    "cloudwatchdog.middleware.RefuseBadAdminParametersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # the admin's CSS/JS under gunicorn
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tenants.middleware.ApiKeyTenantMiddleware",
]

# An ingest request's end (its in-flight slot freed, its points and CPU charged) is sent to Redis by a
# thread of the process, off the request's path; tests turn it off to see each charge at once.
INGEST_FINISH_IN_BACKGROUND = True

# POST /api/v1/ingest/noop, an authenticated no-op that bench/mixed_load.py compares ingest with; 404 otherwise.
BENCH_ENDPOINTS = env.bool("BENCH_ENDPOINTS", default=False)

ROOT_URLCONF = "cloudwatchdog.urls"
WSGI_APPLICATION = "cloudwatchdog.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
# Dates and times as the console writes them (2026-12-03 09:04:05 UTC), in every admin list and page.
FORMAT_MODULE_PATH = ["cloudwatchdog.formats"]

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / ".data" / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request until collectstatic ran
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Django's cap on form bodies (the admin's): CsrfViewMiddleware reads the body of any POST that
# carries a csrftoken cookie, before authentication. The ingest view reads its own body with
# its own limit (MAX_BODY_BYTES, 413).
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# The admin shows a new API key once, in a message: kept server-side, never in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.drf.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.drf.HasTenantScope"],
    "DEFAULT_THROTTLE_CLASSES": ["tenants.drf.TenantRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["cloudwatchdog.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "cloudwatchdog.errors.json_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "cloudwatchdog.schema.ApiAutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "CloudWatchDog API",
    "DESCRIPTION": "Multi-tenant metrics ingest, explainable anomaly detection and reads. "
    "Authenticate with `Authorization: Bearer <api key>` (or HTTP Basic: tenant slug, key).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # Several choice sets are named "status"; each gets a name of its own in the schema.
    "ENUM_NAME_OVERRIDES": {
        "AnomalyStatusEnum": ["open", "acknowledged", "resolved"],
        "BaselineStatusEnum": ["warming", "ready"],
        "RunStatusEnum": ["queued", "running", "succeeded", "failed", "skipped"],
        "SeriesKindEnum": ["gauge", "counter"],
        "ChannelKindEnum": ["webhook", "slack", "email"],
        "SeverityEnum": ["low", "medium", "high"],
    },
    # The API docs' sections, in this order (cloudwatchdog/schema.py tags each operation by its path).
    "TAGS": [
        {"name": "ingest", "description": "Send metric points as JSON."},
        {"name": "agents", "description": "Prometheus remote write and OpenTelemetry (OTLP/HTTP) agents, unchanged."},
        {"name": "series", "description": "The series a tenant has and their points."},
        {"name": "anomalies", "description": "What detection found, why, and the bands it judged by."},
        {"name": "incidents", "description": "Alarms: an anomaly, its escalations and its recovery, as on-call works them."},
        {"name": "alerting", "description": "Where incidents are notified (channels, their deliveries) and when not "
                                            "(silences)."},
        {"name": "detection settings", "description": "Detection rules and the settings each series runs with."},
        {"name": "runs", "description": "Run detection now and follow a run."},
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": TEST_RUN_ID or env.str("CACHE_KEY_PREFIX", default="cwd"),
    }
}

# Per-tenant limits; a tenant row may override any of them (Tenant.limits), up to TENANT_LIMIT_CEILINGS.
CLOUDWATCHDOG = {
    "MAX_EVENTS_PER_REQUEST": env.int("MAX_EVENTS_PER_REQUEST", default=10_000),
    "MAX_BODY_BYTES": env.int("MAX_BODY_BYTES", default=5 * 1024 * 1024),
    "MAX_FUTURE_SECONDS": env.int("MAX_FUTURE_SECONDS", default=600),
    "MAX_TAGS": env.int("MAX_TAGS", default=30),
    # UTF-8 bytes, as Mimir counts: service, metric_name and tag names / resource_id, source and tag values.
    "MAX_NAME_BYTES": env.int("MAX_NAME_BYTES", default=1024),
    "MAX_VALUE_BYTES": env.int("MAX_VALUE_BYTES", default=2048),
    "MAX_SERIES_PER_TENANT": env.int("MAX_SERIES_PER_TENANT", default=150_000),
    "MAX_NEW_PARTITIONS_PER_REQUEST": env.int("MAX_NEW_PARTITIONS_PER_REQUEST", default=12),
    "POINTS_PER_SECOND": env.int("POINTS_PER_SECOND", default=200_000),
    "POINTS_BURST": env.int("POINTS_BURST", default=2_000_000),
    "REQUESTS_PER_MINUTE": env.int("REQUESTS_PER_MINUTE", default=60_000),
    # An ingest request's CPU beyond what its points paid for is charged to the points bucket at
    # this rate (about what a CPU second stores over OTLP, the dearest way in).
    "INGEST_POINTS_PER_CPU_SECOND": env.int("INGEST_POINTS_PER_CPU_SECOND", default=50_000),
    # Ingest requests of one tenant in flight at once, over every process (Redis): its share of the ingest
    # workers. Default half of one ingest pool's workers x threads, rounded up; set it per deployment.
    "INGEST_INFLIGHT_PER_TENANT": env.int("INGEST_INFLIGHT_PER_TENANT", default=-(-math.prod(pool_size(INGEST)) // 2)),
    # A slot whose request never finished (its worker killed) frees itself after this: over the statement timeout.
    "INGEST_INFLIGHT_TTL_SECONDS": env.float("INGEST_INFLIGHT_TTL_SECONDS", default=90.0),
    # Points before this are refused (a tenant may refuse more with max_point_age_days).
    "EARLIEST_TIMESTAMP": datetime.fromisoformat(env.str("EARLIEST_TIMESTAMP", default="2000-01-01T00:00:00+00:00")),
    "LATE_WINDOW_SECONDS": env.int("LATE_WINDOW_SECONDS", default=3600),
    # Compaction (hourly): a UTC day's points move into compressed chunks once the day is older than
    # this and wholly behind the late window; series per transaction.
    "COMPACTION_OLDER_THAN_SECONDS": env.int("COMPACTION_OLDER_THAN_SECONDS", default=0),
    "COMPACTION_BATCH_SERIES": env.int("COMPACTION_BATCH_SERIES", default=100),
    "COMPACTION_REINDEX_MIN_FOLDED": env.int("COMPACTION_REINDEX_MIN_FOLDED", default=10_000),
    # Alerting: how long a notification is retried, and how many messages a channel takes a minute.
    "NOTIFY_RETRY_HOURS": env.int("NOTIFY_RETRY_HOURS", default=24),
    "CHANNEL_MESSAGES_PER_MINUTE": env.int("CHANNEL_MESSAGES_PER_MINUTE", default=30),
    # Seconds a webhook or Slack attempt may take in all (connect, send, the answer's headers and
    # body, however slowly they come): 3 s to connect and 10 s to answer, as one deadline.
    "WEBHOOK_DEADLINE_SECONDS": env.float("WEBHOOK_DEADLINE_SECONDS", default=13.0),
    "INGEST_SYNCHRONOUS_COMMIT": env.bool("INGEST_SYNCHRONOUS_COMMIT", default=True),
    "PROCESS_RUN_WAIT_SECONDS": env.int("PROCESS_RUN_WAIT_SECONDS", default=30),
    "DETECTION_INTERVAL_SECONDS": env.int("DETECTION_INTERVAL_SECONDS", default=60),
    "DETECTION_SETTLE_SECONDS": env.int("DETECTION_SETTLE_SECONDS", default=15),
    "DETECTION_RUNS_KEEP_DAYS": env.int("DETECTION_RUNS_KEEP_DAYS", default=7),
    # Beat splits a tenant with more series than this into DETECTION_SHARDS tasks (series id modulo);
    # change DETECTION_SHARDS only with beat and the workers stopped.
    "DETECTION_SHARD_MIN_SERIES": env.int("DETECTION_SHARD_MIN_SERIES", default=5000),
    "DETECTION_SHARDS": min(256, max(1, env.int("DETECTION_SHARDS", default=8))),
    # A tenant's shards run on at most this many worker processes at once (the rest wait, holding none),
    # so one large tenant never takes every worker from the others' passes.
    "DETECTION_SLOTS_PER_TENANT": max(1, env.int("DETECTION_SLOTS_PER_TENANT",
                                                 default=max(1, env.int("CELERY_CONCURRENCY", default=2) // 2))),
    # A pass over at least this many points is split over this many processes (1: never).
    "DETECTION_PROCESSES": env.int("DETECTION_PROCESSES", default=os.cpu_count() or 1),
    "DETECTION_PARALLEL_MIN_POINTS": env.int("DETECTION_PARALLEL_MIN_POINTS", default=200_000),
    "RETENTION_DAYS": env.int("RETENTION_DAYS", default=None),
    # Per-metric detection settings (anomalies.models.DetectionRule): every run reads all of a tenant's.
    "DETECTION_RULES_PER_TENANT": env.int("DETECTION_RULES_PER_TENANT", default=200),
    "SILENCES_PER_TENANT": env.int("SILENCES_PER_TENANT", default=1000),
    # The most points one PromQL query may read (all its selectors together); past it the query fails with
    # Prometheus' execution error. 16 bytes a point once read (about 160 MB at the default), more while reading.
    "PROMQL_MAX_SAMPLES": env.int("PROMQL_MAX_SAMPLES", default=10_000_000),
    # A cwd_* band selector (promql/virtual.py) replays detection for each series it selects, from the UTC
    # day before the window: at most this many series, each with at most this many points in the replay.
    "PROMQL_BAND_MAX_SERIES": env.int("PROMQL_BAND_MAX_SERIES", default=50),
    "PROMQL_BAND_MAX_POINTS": env.int("PROMQL_BAND_MAX_POINTS", default=20_000),
}
# The limits a tenant may override, and the most each may be: the string limits are the widths
# of metrics_series' columns (metrics.models), which a larger override could not store.
TENANT_LIMITS = ("MAX_EVENTS_PER_REQUEST", "MAX_BODY_BYTES", "MAX_FUTURE_SECONDS", "MAX_TAGS", "MAX_NAME_BYTES",
                 "MAX_VALUE_BYTES", "MAX_SERIES_PER_TENANT", "MAX_NEW_PARTITIONS_PER_REQUEST", "POINTS_PER_SECOND",
                 "POINTS_BURST", "REQUESTS_PER_MINUTE", "INGEST_INFLIGHT_PER_TENANT")
TENANT_LIMIT_CEILINGS = {"MAX_NAME_BYTES": 1024, "MAX_VALUE_BYTES": 2048, "MAX_BODY_BYTES": 100 * 1024 * 1024,
                         "MAX_EVENTS_PER_REQUEST": 100_000, "MAX_TAGS": 100, "MAX_FUTURE_SECONDS": 86_400,
                         "MAX_NEW_PARTITIONS_PER_REQUEST": 100}
if CLOUDWATCHDOG["EARLIEST_TIMESTAMP"].tzinfo is None or CLOUDWATCHDOG["EARLIEST_TIMESTAMP"].year < 1900:
    raise ImproperlyConfigured("EARLIEST_TIMESTAMP must be an ISO 8601 time with an offset, in 1900 or later.")
for _name, _ceiling in TENANT_LIMIT_CEILINGS.items():
    if CLOUDWATCHDOG[_name] > _ceiling:
        raise ImproperlyConfigured(f"{_name} may be at most {_ceiling}.")
if CLOUDWATCHDOG["POINTS_BURST"] < CLOUDWATCHDOG["MAX_EVENTS_PER_REQUEST"]:
    # As Tenant.clean() refuses for one tenant: a full request could never pass, and would be refused for ever.
    raise ImproperlyConfigured(f"POINTS_BURST ({CLOUDWATCHDOG['POINTS_BURST']}) must be at least "
                               f"MAX_EVENTS_PER_REQUEST ({CLOUDWATCHDOG['MAX_EVENTS_PER_REQUEST']}): a request of "
                               "more points than the burst could never be accepted.")

# kombu names a Redis unix socket "redis+socket://"; redis-py and Django say "unix://".
CELERY_BROKER_URL = REDIS_URL.replace("unix://", "redis+socket://", 1) if REDIS_URL.startswith("unix://") else REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = TEST_RUN_ID or env.str("CELERY_QUEUE", default="cloudwatchdog")
# Four queues, so that beat's passes and notifications never wait behind bulk work: the Procfile's
# `worker` takes notify and detection, `worker_bulk` takes detection_bulk and maintenance (and the
# default queue, where tasks queued before the split still wait). A test run's queues are its own
# (CELERY_QUEUE_PREFIX gives a test's worker process the same names).
CELERY_QUEUE_PREFIX = f"{TEST_RUN_ID}-" if TEST_RUN_ID else env.str("CELERY_QUEUE_PREFIX", default="")
TASK_QUEUES = {role: f"{CELERY_QUEUE_PREFIX}{role}" for role in ("detection", "detection_bulk", "maintenance", "notify")}
CELERY_TASK_ROUTES = {
    "anomalies.tasks.detection_run_all_task": {"queue": TASK_QUEUES["detection"]},
    "anomalies.tasks.detection_tenant_pass_task": {"queue": TASK_QUEUES["detection"]},
    "anomalies.tasks.detection_run_task": {"queue": TASK_QUEUES["detection_bulk"]},  # API async runs, replays
    "anomalies.tasks.detection_runs_prune_task": {"queue": TASK_QUEUES["maintenance"]},
    "metrics.tasks.*": {"queue": TASK_QUEUES["maintenance"]},  # rollups, compaction, partitions, retention
    "anomalies.tasks.notifications_deliver_task": {"queue": TASK_QUEUES["notify"]},
}
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A web request that enqueues a task gives up quickly when Redis is down (503, Retry-After)
# instead of holding its thread through Celery's default publish retries.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1.0}
# Each scheduled task expires when its next one is due: if a pass takes longer than the interval,
# the copies beat sends meanwhile are dropped instead of piling up in the queue.
CELERY_BEAT_SCHEDULE = {
    name: {"task": task, "schedule": seconds, "options": {"expires": seconds}}
    for name, task, seconds in (
        ("detection-every-interval", "anomalies.tasks.detection_run_all_task",
         float(CLOUDWATCHDOG["DETECTION_INTERVAL_SECONDS"])),
        ("rollups-every-minute", "metrics.tasks.rollups_refresh_task", 60.0),
        ("detection-runs-prune-hourly", "anomalies.tasks.detection_runs_prune_task", 3600.0),
        ("points-maintenance-hourly", "metrics.tasks.points_maintain_task", 3600.0),
        ("points-compaction-hourly", "metrics.tasks.points_compact_task", 3600.0),
        # Delivers notifications whose attempt is due (retries, and any whose immediate send was lost),
        # and queues reminders of open incidents.
        ("notifications-every-20s", "anomalies.tasks.notifications_deliver_task", 20.0),
    )
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"pgserver": {"level": "WARNING"}},
}
