"""Batchsite settings: all from the environment, with defaults that work on a laptop."""

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url
import dj_email_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def envint(name: str, default: int | None) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def envfloat(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


# Off unless asked for: `make run`, `make demo` and the tests turn it on.
DEBUG = envbool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set, and DEBUG is off. Set SECRET_KEY in the environment to a "
            "long random string, for example: export SECRET_KEY=\"$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(50))')\". For local development only, set DEBUG=true "
            "instead (make run and make demo do).")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
if DEBUG and not ALLOWED_HOSTS:
    ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_q",
    "axes",
    "batches",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out log-in into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

# django-axes counts failed log-ins (the /login/ page and /admin/login/ alike) per username and
# address, and locks that pair out for a while after LOGIN_FAILURE_LIMIT failures.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

ROOT_URLCONF = "batchsite.urls"
WSGI_APPLICATION = "batchsite.wsgi.application"

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
                "batches.web.context_processors.batchsite",
            ],
        },
    },
]

# Database: SQLite file by default, anything dj-database-url understands otherwise.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=envint("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE makes a writer wait for the lock
    # (up to `timeout`) at BEGIN instead of failing later with SQLITE_BUSY. temp_store=MEMORY:
    # a statement that fires a trigger (the status counters, migration 0014) keeps a statement
    # journal, in a temporary file by default; that file cost 9 us per row inserted, a
    # 100,000-row ingest 0.9 s more, and in memory 2 us.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": ("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                         "PRAGMA temp_store=MEMORY;"),
    }

# Test databases are named per test process so that parallel test runs never share one; on
# SQLite a file rather than :memory:, so worker processes started by the tests can open it.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"batchsite_test_{os.getpid()}.sqlite3")
    }
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_batchsite_{os.getpid()}"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": REDIS_URL}}
else:
    # Shared by every web and worker process (a per-process cache would multiply per-user
    # limits by the number of processes). Migration 0004 creates the table.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                          "LOCATION": "batchsite_cache"}}
# Per process, for figures that may be a few seconds old (the API's live row counts): a shared
# cache would cost more queries than it saves.
CACHES["local"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Django's default storage (staged uploads); any shared storage backend works for several hosts.
MEDIA_ROOT = os.environ.get("MEDIA_ROOT") or str(BASE_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Uploaded documents live in default_storage: MEDIA_ROOT on one host, or an S3-compatible bucket
# that every host reads (workers on other machines need the same files).
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or BASE_DIR / "media")
if os.environ.get("STORAGE_S3_BUCKET"):
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["STORAGE_S3_BUCKET"],
            "endpoint_url": os.environ.get("STORAGE_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("STORAGE_S3_REGION") or None,
            "location": os.environ.get("STORAGE_S3_PREFIX", ""),
            "default_acl": None,
            "file_overwrite": True,  # names are content hashes: same name, same bytes
        },
    }

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Production hardening, active when DEBUG is off.
if not DEBUG:
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # WhiteNoise serves the collected static files (manage.py collectstatic) in production.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
    STORAGES["staticfiles"]["BACKEND"] = "whitenoise.storage.CompressedManifestStaticFilesStorage"

# Gemini.
GEMINI_API_KEY = os.environ.get("GEMINI_API_KEY", "")
GEMINI_BASE_URL = os.environ.get("GEMINI_BASE_URL", "")
# A request whose documents (base64, plus the prompt) fit under this goes inline; larger ones
# go through the Files API. Gemini refuses inline requests over 20 MB.
GEMINI_INLINE_MAX_MB = envfloat("GEMINI_INLINE_MAX_MB", 20.0)
GEMINI_TIMEOUT_S = envfloat("GEMINI_TIMEOUT_S", 120.0)
GEMINI_DEFAULT_MODEL = os.environ.get("GEMINI_DEFAULT_MODEL", "gemini-2.5-flash")
GEMINI_MODELS = [
    m.strip()
    for m in os.environ.get(
        "GEMINI_MODELS", "gemini-2.5-flash,gemini-2.5-flash-lite,gemini-2.5-pro"
    ).split(",")
    if m.strip()
]
# A second provider: any OpenAI-compatible chat completions endpoint (OpenAI, OpenRouter, vLLM,
# Ollama). Models listed in OPENAI_MODELS run there; every other model on Gemini.
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")
OPENAI_TIMEOUT_S = envfloat("OPENAI_TIMEOUT_S", 120.0)
OPENAI_MODELS = [m.strip() for m in os.environ.get("OPENAI_MODELS", "").split(",") if m.strip()]
OPENAI_RPM = envint("OPENAI_RPM", None)
OPENAI_TPM = envint("OPENAI_TPM", None)
GEMINI_RPM = envint("GEMINI_RPM", None)
GEMINI_TPM = envint("GEMINI_TPM", None)
# Circuit breaker per model: this many transient failures in a row open it for the cool-down
# (doubling up to 60 s while probes fail).
BREAKER_THRESHOLD = envint("BREAKER_THRESHOLD", 10)
BREAKER_COOLDOWN_S = envfloat("BREAKER_COOLDOWN_S", 10.0)
# ...and only once such a run has lasted this long, so random errors never open it.
BREAKER_MIN_FAILING_S = envfloat("BREAKER_MIN_FAILING_S", 2.0)
DEMO_MODE = envbool("DEMO_MODE", False)

# Limits.
BATCH_MAX_UPLOAD_MB = envint("BATCH_MAX_UPLOAD_MB", 50)
BATCH_MAX_ROWS = envint("BATCH_MAX_ROWS", 200_000)
# Documents: files per batch (also inside one ZIP), size of one file, size of all of them.
BATCH_MAX_FILES = envint("BATCH_MAX_FILES", 50)
BATCH_MAX_FILE_MB = envint("BATCH_MAX_FILE_MB", 20)
BATCH_MAX_FILES_TOTAL_MB = envint("BATCH_MAX_FILES_TOTAL_MB", 500)
BATCH_CREATE_RATE = os.environ.get("BATCH_CREATE_RATE", "60/hour")
BATCH_MAX_ACTIVE_PER_USER = envint("BATCH_MAX_ACTIVE_PER_USER", 10)
# Each user's spending limit per calendar month (money, e.g. "50.00"); empty: no limit. An
# operator can set a user's own limit in the admin (User budgets).
USER_MONTHLY_BUDGET = os.environ.get("USER_MONTHLY_BUDGET", "").strip() or None
# Hardening (docs/security.md): what one request may make the site read, store and send.
BATCH_MAX_PROMPT_CHARS = envint("BATCH_MAX_PROMPT_CHARS", 20_000)
BATCH_MAX_SYSTEM_INSTRUCTION_CHARS = envint("BATCH_MAX_SYSTEM_INSTRUCTION_CHARS", 20_000)
BATCH_MAX_RENDERED_CHARS = envint("BATCH_MAX_RENDERED_CHARS", 500_000)
BATCH_MAX_CELLS = envint("BATCH_MAX_CELLS", 20_000_000)
# Highest concurrency of a batch for users who are not staff (staff may go up to 500).
BATCH_MAX_CONCURRENCY = envint("BATCH_MAX_CONCURRENCY", 100)
# A file chosen on the new-batch page is kept this long for its preview and Create.
BATCH_STAGED_UPLOAD_HOURS = envint("BATCH_STAGED_UPLOAD_HOURS", 24)
BATCH_LEASE_SECONDS = envint("BATCH_LEASE_SECONDS", 120)
BATCH_SLICE_SECONDS = envint("BATCH_SLICE_SECONDS", 60)
# Rows one slice keeps in flight at most (each batch's own concurrency caps it further).
BATCH_SLICE_MAX_INFLIGHT = envint("BATCH_SLICE_MAX_INFLIGHT", 256)
# Diagnostics for `manage.py bench`: each slice appends its slot idle times (ms) to this file.
# Gemini Batch Mode (batches.batchmode): poll interval, the watchdog's wait, job sizes.
BATCH_MODE_POLL_S = envfloat("BATCH_MODE_POLL_S", 60.0)
BATCH_MODE_MAX_WAIT = envfloat("BATCH_MODE_MAX_WAIT", 24 * 3600.0)  # seconds
BATCH_MODE_MAX_ROWS = envint("BATCH_MODE_MAX_ROWS", 50_000)
BATCH_MODE_MAX_BYTES = envint("BATCH_MODE_MAX_BYTES", 500 * 1024 * 1024)
# Inline jobs cost google-genai about 2 ms a row to convert; larger jobs go as a JSONL file.
BATCH_MODE_INLINE_BYTES = envint("BATCH_MODE_INLINE_BYTES", 1024 * 1024)
# A job's rows are leased beyond the watchdog's wait, so only a lost job ever expires them.
BATCH_MODE_LEASE = envfloat("BATCH_MODE_LEASE", BATCH_MODE_MAX_WAIT + 3600.0)
BATCH_SLOT_IDLE_LOG = os.environ.get("BATCH_SLOT_IDLE_LOG", "")
# Retry backoff: full jitter over base * 2^attempts seconds, capped.
BATCH_RETRY_BASE_S = envfloat("BATCH_RETRY_BASE_S", 1.0)
BATCH_RETRY_MAX_S = envfloat("BATCH_RETRY_MAX_S", 60.0)
# A succeeded answer is reused for identical requests of the same owner for this many days.
RESULT_CACHE_DAYS = envint("RESULT_CACHE_DAYS", 30)
# Finished batches are deleted this many days after they finished (batches.retention); unset
# keeps them.
BATCH_RETENTION_DAYS = envint("BATCH_RETENTION_DAYS", None)
if BATCH_RETENTION_DAYS is not None and BATCH_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("BATCH_RETENTION_DAYS must be at least 1 (unset keeps batches).")
# Uploads above this stream to a temporary file instead of memory; past the upload limit their
# bytes are dropped instead (batches.web.forms.UploadLimitHandler).
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "batches.web.forms.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
DATA_UPLOAD_MAX_MEMORY_SIZE = (BATCH_MAX_UPLOAD_MB or 50) * 1024 * 1024
# Documents come several to a request (Django's default cap is 100 files).
DATA_UPLOAD_MAX_NUMBER_FILES = max(100, (BATCH_MAX_FILES or 0) + 10)

# Notifications (docs/notifications.md). Links in webhooks and e-mails start with SITE_URL.
SITE_URL = os.environ.get("SITE_URL", "http://localhost:8000")
WEBHOOK_TIMEOUT_S = envfloat("WEBHOOK_TIMEOUT_S", 10.0)
WEBHOOK_ALLOW_PRIVATE = envbool("WEBHOOK_ALLOW_PRIVATE", False)
WEBHOOK_MAX_ENDPOINTS = envint("WEBHOOK_MAX_ENDPOINTS", 20)
# Retries wait base, 2 x base, 4 x base ... (at most WEBHOOK_RETRY_MAX_S) for WEBHOOK_RETRY_FOR_S.
WEBHOOK_RETRY_BASE_S = envfloat("WEBHOOK_RETRY_BASE_S", 30.0)
WEBHOOK_RETRY_MAX_S = envfloat("WEBHOOK_RETRY_MAX_S", 3600.0)
WEBHOOK_RETRY_FOR_S = envint("WEBHOOK_RETRY_FOR_S", 24 * 3600)
WEBHOOK_DISABLE_AFTER_S = envint("WEBHOOK_DISABLE_AFTER_S", 3 * 24 * 3600)
# batch.waiting_on_api is sent once the model's API has been unreachable this long.
WEBHOOK_WAITING_AFTER_S = envint("WEBHOOK_WAITING_AFTER_S", 180)
# batch.progress (only to endpoints that list it) each time a batch passes another N percent.
WEBHOOK_PROGRESS_STEP_PERCENT = envint("WEBHOOK_PROGRESS_STEP_PERCENT", 10)
# E-mail: EMAIL_URL such as smtp+tls://user:password@smtp.example.com:587; unset prints to stdout.
_email = dj_email_url.parse(os.environ.get("EMAIL_URL") or "console:")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
for _key in ("EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD",
             "EMAIL_USE_TLS", "EMAIL_USE_SSL", "EMAIL_TIMEOUT", "EMAIL_FILE_PATH"):
    if _email.get(_key) is not None:
        globals()[_key] = _email[_key]
# A delivery's claim lasts the webhook timeout plus a margin: an SMTP call must not outlive it.
EMAIL_TIMEOUT = _email.get("EMAIL_TIMEOUT") or WEBHOOK_TIMEOUT_S
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Batchsite <batchsite@localhost>")

# django-q2: tasks are short slices (BATCH_SLICE_SECONDS) so timeout < retry holds with room.
Q_WORKERS = envint("Q_WORKERS", 2)
# A slice takes at most this share of a batch's concurrency while other slices work on it, so
# every worker process shares the batch's requests and writes (one slice per worker).
BATCH_SLICES_PER_BATCH = envint("BATCH_SLICES_PER_BATCH", Q_WORKERS)

# Every qcluster on every host shares the queue named here; don't set Q_CLUSTER_NAME, which
# django-q2 reads to route tasks to a separate queue.
Q_CLUSTER = {
    "name": "batchsite",
    "workers": Q_WORKERS,
    "recycle": 500,
    "timeout": BATCH_SLICE_SECONDS * 3,
    "retry": BATCH_SLICE_SECONDS * 3 + 60,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 1000,
    "poll": 0.1,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "DEFAULT_PARSER_CLASSES": [
        "batches.api.parsers.DepthSafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # `?format=csv` on the export endpoint is ours, not DRF's renderer override.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Batchsite API",
    "DESCRIPTION": "Run a Gemini prompt over every row of a spreadsheet.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "BatchStatusEnum": "batches.models.Batch.Status",
        "ResultStatusEnum": "batches.models.BatchResult.Status",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "google_genai": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # lock-outs are warnings; every start-up is INFO
    },
}
