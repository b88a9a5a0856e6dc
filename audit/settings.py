"""Settings for the transcript audit app, driven by the environment.

Development defaults are safe and need nothing set: SQLite in ``var/``, DEBUG on. Production sets
``AUDIT_DEBUG=false``, ``AUDIT_SECRET_KEY``, ``AUDIT_ALLOWED_HOSTS`` and usually ``DATABASE_URL``.
"""

import datetime as dt
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("AUDIT_DEBUG", True)
SECRET_KEY = os.environ.get("AUDIT_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("AUDIT_SECRET_KEY is required when AUDIT_DEBUG is false")
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"
# Key for the pseudonymous auditor ids in exports and releases ("auditor-" + HMAC of the user
# id): stable across exports while the key stays, not reversible without it. Keep it apart from
# SECRET_KEY in production so rotating one does not re-pseudonymise published releases.
AUDIT_PSEUDONYM_KEY = os.environ.get("AUDIT_PSEUDONYM_KEY", "")
if not AUDIT_PSEUDONYM_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("AUDIT_PSEUDONYM_KEY is required when AUDIT_DEBUG is false")
    AUDIT_PSEUDONYM_KEY = "pseudonym:" + SECRET_KEY
ALLOWED_HOSTS = env_list("AUDIT_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("AUDIT_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_tasks_db",
    # Login throttling (AXES_* below); its tables hold the failed attempts.
    "axes",
    "audit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "audit.urls"
WSGI_APPLICATION = "audit.wsgi.application"
ASGI_APPLICATION = "audit.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

VAR_DIR = Path(env_str("AUDIT_VAR_DIR", str(BASE_DIR / "var")))

# Test databases are named per process so parallel test runs on one machine never destroy each
# other's database.
_TEST_SUFFIX = os.getpid()
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.config(conn_max_age=60, conn_health_checks=True)}
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{_TEST_SUFFIX}"}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("AUDIT_SQLITE_PATH", str(VAR_DIR / "audit.sqlite3")),
            "OPTIONS": {
                # BEGIN IMMEDIATE takes the write lock up front, so concurrent writers queue on
                # busy_timeout (audit/sqlite.py) instead of failing with "database is locked".
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # A file, not :memory:, so tests can prove concurrent writers from several
            # connections (threads) do not hit "database is locked".
            "TEST": {"NAME": str(VAR_DIR / f"test-{_TEST_SUFFIX}.sqlite3")},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Login throttling (django-axes): AUDIT_LOGIN_FAILURE_LIMIT failed logins for one username from
# one address lock that pair out for AUDIT_LOGIN_LOCKOUT_MINUTES; a success resets the count.
# The lockout is a 429 with the login page saying so (audit.permissions.login_locked_out).
AUTHENTICATION_BACKENDS = [
    "audit.permissions.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AUDIT_LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env_int("AUDIT_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Attempts during a lockout do not extend it: it ends a fixed time after the last counted failure.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "audit.permissions.login_locked_out"
AXES_USERNAME_CALLABLE = "audit.permissions.login_username"
# Behind reverse proxies REMOTE_ADDR is the nearest proxy's: with AUDIT_PROXY_COUNT of them in
# front, the client address comes from X-Forwarded-For (audit.permissions.client_address).
AUDIT_PROXY_COUNT = env_int("AUDIT_PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "audit.permissions.client_address"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "queue"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
if not DEBUG:
    # WhiteNoise serves the collected, hashed static files in production; development uses
    # runserver's own static view.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
MEDIA_ROOT = Path(env_str("AUDIT_MEDIA_ROOT", str(VAR_DIR / "media")))
RELEASES_ROOT = Path(env_str("AUDIT_RELEASES_ROOT", str(VAR_DIR / "releases")))

# Uploads: the upload page streams the file to a temporary file; this caps its size.
AUDIT_MAX_UPLOAD_BYTES = env_int("AUDIT_MAX_UPLOAD_MB", 512, minimum=1) * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "audit.ingest.uploads.SizeLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# Share of unflagged records sampled for review, to estimate the error rate of unreviewed labels.
AUDIT_SPOT_CHECK_RATE = env_float("AUDIT_SPOT_CHECK_RATE", 0.05, minimum=0.0, maximum=1.0)
# Independent reviews an item needs unless its batch or a selection says otherwise.
AUDIT_DEFAULT_REQUIRED_REVIEWS = env_int("AUDIT_DEFAULT_REQUIRED_REVIEWS", 1, minimum=1)
# Processes that write one large export file (audit.publish.parallel): this one and helpers,
# each a range of the records; one per core helps, as each is bound by its own Python work.
# (The cores this process may use: os.process_cpu_count, new in Python 3.13.)
_CORES = getattr(os, "process_cpu_count", os.cpu_count)() or 1
AUDIT_EXPORT_PROCESSES = env_int("AUDIT_EXPORT_PROCESSES", min(4, _CORES), minimum=1)
# How long a claimed item stays reserved for the auditor who claimed it.
AUDIT_LEASE_SECONDS = env_int("AUDIT_LEASE_SECONDS", 900, minimum=30)
# A web import whose task gave no sign of life (a heartbeat every fifth of this) for this long
# lost its worker: it is marked failed and its upload removed (audit.tasks.fail_stale_jobs).
AUDIT_IMPORT_STALE_SECONDS = env_int("AUDIT_IMPORT_STALE_SECONDS", 300, minimum=30)
# Limits of one import, each refusing the whole file with an error naming it (audit.ingest.
# importer): gzip input decompressed (bytes, lines, and bytes out per compressed byte in, a
# bomb's mark: deflate tops out near 1032), the temporary staging of its checked rows, and time.
AUDIT_GZIP_MAX_BYTES = env_int("AUDIT_GZIP_MAX_MB", 4096, minimum=1) * 1024 * 1024
AUDIT_GZIP_MAX_LINES = env_int("AUDIT_GZIP_MAX_LINES", 10_000_000, minimum=1)
AUDIT_GZIP_MAX_RATIO = env_int("AUDIT_GZIP_MAX_RATIO", 1000, minimum=2)
AUDIT_IMPORT_MAX_STAGING_BYTES = env_int("AUDIT_IMPORT_MAX_STAGING_MB", 8192, minimum=1) * 1024**2
AUDIT_IMPORT_TIME_LIMIT_SECONDS = env_int("AUDIT_IMPORT_TIME_LIMIT_SECONDS", 3600, minimum=1)

# Long web imports and exports run as tasks. Development runs them in-process; production uses
# the database backend with `manage.py db_worker` (AUDIT_TASKS_BACKEND=database).
_TASK_BACKENDS = {
    "immediate": "django.tasks.backends.immediate.ImmediateBackend",
    "database": "django_tasks_db.DatabaseBackend",
}
_task_backend = env_str("AUDIT_TASKS_BACKEND", "immediate")
if _task_backend not in _TASK_BACKENDS:
    raise ImproperlyConfigured(
        f"AUDIT_TASKS_BACKEND must be one of {sorted(_TASK_BACKENDS)}, got {_task_backend!r}"
    )
TASKS = {"default": {"BACKEND": _TASK_BACKENDS[_task_backend]}}

# Strict CSP: no inline script or style anywhere; htmx is loaded from static with a nonce.
SECURE_CSP = {
    "default-src": [CSP.NONE],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "base-uri": [CSP.NONE],
}

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("AUDIT_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("AUDIT_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("AUDIT_LOG_LEVEL", "WARNING")},
}

# The HTTP API (audit.api; issue 13). Its request bodies share AUDIT_MAX_UPLOAD_MB with uploads.
# A request waits this long for the import lock (one import inserts at a time), then answers
# 503 with Retry-After rather than hold a web worker behind a long import.
AUDIT_API_LOCK_WAIT_SECONDS = env_int("AUDIT_API_LOCK_WAIT_SECONDS", 10, minimum=0)
# django-ninja counts the same reverse proxies as the login throttle does.
NINJA_NUM_PROXIES = AUDIT_PROXY_COUNT
