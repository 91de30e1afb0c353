"""Settings for the CAG-VLM clinician review platform.

Every value a deployment may change is read from the environment through the small typed
helpers below. They fail loudly (``ImproperlyConfigured``) on a value they cannot parse, and
each ``env_secret`` also accepts ``NAME_FILE`` pointing at a file that holds the secret (the
way container orchestrators hand secrets over). The defaults give a working single-machine
install: SQLite in WAL mode, files under ``var/`` and an in-process channel layer.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


# --- typed environment helpers -------------------------------------------------------------


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str, *, generated_file: Path | None = None) -> str:
    """Read a secret from ``NAME``, from the file named by ``NAME_FILE``, or (single-machine
    default only) from a file generated once under ``var/`` so that restarts keep it."""
    if value := os.environ.get(name):
        return value
    if file_name := os.environ.get(f"{name}_FILE"):
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_name!r} cannot be read: {exc}") from exc
        if not value:
            raise ImproperlyConfigured(f"{name}_FILE={file_name!r} is empty")
        return value
    if generated_file is None:
        raise ImproperlyConfigured(f"{name} (or {name}_FILE) must be set")
    if not generated_file.exists():
        generated_file.parent.mkdir(parents=True, exist_ok=True)
        generated_file.write_text(secrets.token_urlsafe(48), encoding="utf-8")
        generated_file.chmod(0o600)
    return generated_file.read_text(encoding="utf-8").strip()


# --- core -------------------------------------------------------------------------------------

VAR_DIR = Path(env_str("CAGVLM_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_secret("DJANGO_SECRET_KEY", generated_file=VAR_DIR / "secrets" / "django_secret_key")
# The key of the keyed hash that turns patient identifiers into pseudonyms, date offsets and
# UIDs. It must stay the same for the life of a deployment (two exams of one patient stay
# linked only under one key) and must never leave the hospital.
PSEUDONYMISATION_KEY = env_secret(
    "CAGVLM_PSEUDONYMISATION_KEY", generated_file=VAR_DIR / "secrets" / "pseudonymisation_key"
)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "django_tasks_db",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "cagvlm_site",
    "annotation",
    "inference",
    "review",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "cagvlm_site.urls"
ASGI_APPLICATION = "cagvlm_site.asgi.application"

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
                "cagvlm_site.roles.role_context",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    try:
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from exc
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Under ASGI every request runs in a thread of its own, so per-thread persistent
        # connections would pile up until PostgreSQL refuses clients: use psycopg's pool.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DATABASE_POOL_MIN", 2, minimum=0),
            "max_size": env_int("DATABASE_POOL_MAX", 20, minimum=1),
            "timeout": 10,
        }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "cagvlm.sqlite3"),
            "OPTIONS": {
                # WAL lets the web server read while the task worker writes; IMMEDIATE
                # transactions take the write lock up front instead of failing half-way.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- files ------------------------------------------------------------------------------------

MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves from here; it exists from the start so that a run before collectstatic
# (the test suite) does not warn.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# FILE_STORAGE_BACKEND may name any Django storage, e.g. "storages.backends.s3.S3Storage"
# with its own AWS_* settings from the environment, for object storage in a hospital.
STORAGES = {
    "default": {
        "BACKEND": env_str("FILE_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}
# Clinical uploads can be large; anything above this many bytes spools to a temporary file.
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = 500

# --- ingest -----------------------------------------------------------------------------------

CAGVLM_INGEST = {
    # Refuse images larger than this in either dimension before any pixel is decoded.
    "MAX_DIMENSION": env_int("CAGVLM_INGEST_MAX_DIMENSION", 4096, minimum=64),
    "MAX_FRAMES": env_int("CAGVLM_INGEST_MAX_FRAMES", 10_000, minimum=1),
    # Zip archives: a member larger than this, or an archive whose members add up to more, is
    # refused (zip bomb guard); so is an archive whose compression ratio exceeds the last.
    "MAX_ZIP_MEMBER_BYTES": env_int("CAGVLM_INGEST_MAX_ZIP_MEMBER_BYTES", 4 * 1024**3, minimum=1),
    "MAX_ZIP_TOTAL_BYTES": env_int("CAGVLM_INGEST_MAX_ZIP_TOTAL_BYTES", 16 * 1024**3, minimum=1),
    "MAX_ZIP_RATIO": env_int("CAGVLM_INGEST_MAX_ZIP_RATIO", 200, minimum=1),
    # Display derivative: WebP quality 0-100, or lossless.
    "WEBP_QUALITY": env_int("CAGVLM_WEBP_QUALITY", 90, minimum=0),
    "WEBP_LOSSLESS": env_bool("CAGVLM_WEBP_LOSSLESS", False),
}
CAGVLM_SAMPLING = {
    # The study sampled frames at local extrema of the intensity mean and variance, at least
    # five frames apart.
    "MIN_GAP_FRAMES": env_int("CAGVLM_SAMPLING_MIN_GAP", 5, minimum=1),
}
# A folder where the hospital places base models (e.g. PaliGemma 2, Gemma 3). Nothing is ever
# downloaded: models load from here or from what an installed package ships.
CAGVLM_MODEL_DIR = Path(env_str("CAGVLM_MODEL_DIR", str(VAR_DIR / "models")))
# A local weights file the key-frame CNN starts training from (e.g. ImageNet ConvNeXt weights
# the hospital placed on disk); empty: random initialisation.
_keyframe_init_weights = env_str("CAGVLM_KEYFRAME_INIT_WEIGHTS", "")
CAGVLM_KEYFRAME_INIT_WEIGHTS = Path(_keyframe_init_weights) if _keyframe_init_weights else None

# --- channels, tasks, cache -------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, which aborts the blocking
            # BZPOPMIN a consumer waits on between messages (django/channels_redis#422): every
            # websocket would drop every few seconds. The server-side timeout bounds the wait.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
        }
    }
else:
    # In-process only: good for one server process; pages fall back to polling the database
    # for anything a separate worker process reports.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

CAGVLM_JOBS = {
    # A running job's worker writes its heartbeat this often (seconds) ...
    "HEARTBEAT_INTERVAL": env_int("CAGVLM_JOB_HEARTBEAT_INTERVAL", 5, minimum=1),
    # ... and a running job whose heartbeat is older than this is marked failed: its worker died.
    "HEARTBEAT_TIMEOUT": env_int("CAGVLM_JOB_HEARTBEAT_TIMEOUT", 60, minimum=2),
}
if CAGVLM_JOBS["HEARTBEAT_TIMEOUT"] < 2 * CAGVLM_JOBS["HEARTBEAT_INTERVAL"]:
    # A timeout shorter than two beats would fail live jobs whose beat is merely late.
    raise ImproperlyConfigured("CAGVLM_JOB_HEARTBEAT_TIMEOUT must be at least twice CAGVLM_JOB_HEARTBEAT_INTERVAL")

# --- auth -------------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- REST API ---------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["cagvlm_site.roles.IsClinicalStaff"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CAG-VLM clinician review platform API",
    "DESCRIPTION": "Exams, cine loops, frames and clinical documents of de-identified coronary "
    "angiography, and their ingest.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Served from the installed sidecar package: the docs page needs no internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- i18n, logging ----------------------------------------------------------------------------

LANGUAGE_CODE = "en"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
