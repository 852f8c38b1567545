"""Settings shared by every mode. Everything that varies comes from the environment through `env`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF, UNSAFE_INLINE
from environs import Env

from training.outbound import DEFAULT_KEY_VAR_PATTERNS

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = Env()
env.read_env(str(BASE_DIR / ".env"), recurse=False)

# Runtime state of the embedded mode (SQLite file, filesystem broker, converted model, exports).
VAR_DIR = Path(env.str("RUBRICON_VAR_DIR", str(BASE_DIR / "var"))).resolve()
MODELS_DIR = Path(env.str("RUBRICON_MODELS_DIR", str(VAR_DIR / "models"))).resolve()
MEDIA_ROOT = Path(env.str("RUBRICON_MEDIA_ROOT", str(VAR_DIR / "media"))).resolve()
MEDIA_URL = "/media/"

SECRET_KEY = env.str("DJANGO_SECRET_KEY", "insecure-dev-key-change-me")
DEBUG = env.bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "webapp.core",
    "webapp.tasks",
    "webapp.rubrics",
    "webapp.endpoints",
    "webapp.rollouts",
    "webapp.judging",
    "webapp.reviews",
    "webapp.runs",
    "webapp.exports",
    "webapp.api",
    "webapp.demo",
    # The Celery layer on top of the apps: loaded here (by name) so web code can enqueue without importing it.
    "workers.apps.WorkersConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "webapp.core.uploads.RequestSizeMiddleware",
    "webapp.core.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "webapp.core.middleware.ApplicationErrorMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

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
                "webapp.core.context_processors.project_nav",
            ],
        },
    }
]

# SQLite file under var/ unless DATABASE_URL points elsewhere (Postgres in the full stack and in tests).
DATABASES = {"default": env.dj_db_url("DATABASE_URL", f"sqlite:///{VAR_DIR / 'rubricon.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes; IMMEDIATE avoids lock upgrades mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Content-Security-Policy (django-csp): scripts only from our own origin, never inline or eval'd (htmx's hx-on and
# trigger filters included: tests/webapp/core/test_csp.py walks every page). Styles may be inline: charts and the
# agreement heatmap colour cells with style attributes, and a style cannot run code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Login throttling (django-axes): after RUBRICON_LOGIN_FAILURE_LIMIT failed logins for one username from one address,
# that pair is refused (429) for RUBRICON_LOGIN_COOLOFF_MINUTES; a success resets the count. API tokens: see
# webapp.api.authentication (failures counted per address in the cache).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("RUBRICON_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("RUBRICON_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
RUBRICON_API_TOKEN_FAILURE_LIMIT = env.int("RUBRICON_API_TOKEN_FAILURE_LIMIT", 20)
RUBRICON_API_TOKEN_COOLOFF_S = env.int("RUBRICON_API_TOKEN_COOLOFF_S", 15 * 60)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "core:project_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",  # first: anonymous calls get 403, not 401
        "webapp.api.authentication.HashedTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies are decoded with a nesting limit (a 100,000-deep body was a RecursionError, a 500).
    "DEFAULT_PARSER_CLASSES": [
        "webapp.core.safejson.DepthParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "webapp.api.pagination.IdCursorPagination",
    "EXCEPTION_HANDLER": "webapp.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Rubricon API",
    "DESCRIPTION": "Tasks, rubrics, rollouts, judges, labels, training runs and exports.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Interactive docs from the drf-spectacular-sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "TaskKindEnum": "webapp.tasks.models.TaskKind",
        "EndpointKindEnum": "webapp.endpoints.models.EndpointKind",
        "ExportKindEnum": "webapp.exports.models.ExportKind",
        "ExportFormatEnum": "webapp.exports.models.ExportFormat",
        "ImportFormatEnum": ["jsonl", "csv", "parquet", "hf"],
    },
    # Separate request and response components: uploads are `format: binary` in requests (a URI only in responses),
    # and read-only fields stay out of request bodies, as client generators expect.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "webapp.api.schema.blank_alternatives",
        "webapp.api.schema.json_request_bodies",
    ],
}

# --- Celery -------------------------------------------------------------------------------------------
# Embedded mode: kombu's filesystem transport under var/ (no service to install). Full stack: Redis.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = VAR_DIR / "broker"
# The longest chunk of work (a generation or judge chunk) must finish well inside this, or Redis redelivers it.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", 4 * 3600)
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_RESULT_BACKEND = None

# Shared cache (the agreement dashboard's figures, warmed by the worker after judge jobs): Redis whenever the broker
# is Redis, so every web process and worker read one copy; the embedded mode has no Redis and uses a directory.
_BROKER_IS_REDIS = CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
RUBRICON_CACHE_URL = env.str("RUBRICON_CACHE_URL", CELERY_BROKER_URL if _BROKER_IS_REDIS else "")
if RUBRICON_CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": RUBRICON_CACHE_URL,
                          "KEY_PREFIX": "rubricon"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                          "LOCATION": str(VAR_DIR / "cache")}}
# Endpoint limits (max concurrency, requests and tokens per minute) are counted in Redis, across every worker, where
# the deployment has Redis; embedded mode (one worker process) counts them in that process.
RUBRICON_LIMITS_URL = env.str("RUBRICON_LIMITS_URL", RUBRICON_CACHE_URL if RUBRICON_CACHE_URL.startswith(("redis://", "rediss://")) else "")
# A worker renews its hold on an endpoint's slots every third of this; a killed worker's slots come back after it.
RUBRICON_ENDPOINT_SLOT_TTL_S = env.float("RUBRICON_ENDPOINT_SLOT_TTL_S", 30.0)
# A call to an OpenAI-compatible endpoint that fails transiently (429, 5xx, timeout, refused connection, malformed
# body) is retried after about this many seconds, doubling per retry with jitter (training.llm_client). Tests whose
# endpoint is down or answers garbage on purpose set it near zero: the same retries, without ~12 s of waiting per call.
RUBRICON_ENDPOINT_RETRY_BACKOFF_S = env.float("RUBRICON_ENDPOINT_RETRY_BACKOFF_S", 0.5)
# Workers write a heartbeat (their queues and what they run) this often; a worker silent for 3x this is "stale".
RUBRICON_WORKER_HEARTBEAT_S = env.float("RUBRICON_WORKER_HEARTBEAT_S", 10.0)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Largest example file (JSONL, CSV, Parquet) a task import accepts.
RUBRICON_MAX_IMPORT_MB = env.int("RUBRICON_MAX_IMPORT_MB", 100)
# Uploads stream to a temporary file and stop at RUBRICON_MAX_IMPORT_MB (a larger announced body gets 413 unread).
FILE_UPLOAD_HANDLERS = ["webapp.core.uploads.CappedUploadHandler"]

# A running chunk holds a lease that its worker renews every third of this; a chunk whose lease lapsed (its worker
# died) is run again, by the worker that notices first (each worker checks this often). Never a chunk whose worker lives.
RUBRICON_JOB_LEASE_S = env.float("RUBRICON_JOB_LEASE_S", 60.0)

# Items finishing inside a chunk are counted in memory and written on the job at most this often (seconds), from a
# thread: pages watch progress move while the work never waits on the database.
RUBRICON_JOB_PROGRESS_S = env.float("RUBRICON_JOB_PROGRESS_S", 1.0)

# Rollouts per judge chunk: a chunk is the unit that commits, retries and resumes. 256: at 32 concurrent calls a chunk
# of 64 was two rounds of calls, so its fixed costs (engine, connections, the write) weighed on every third call
# (bench/judge_job_throughput.py); 256 at 50 ms a call is ~0.5 s of work, at 2 s a call and 8 slots about a minute.
RUBRICON_JUDGE_CHUNK_SIZE = env.int("RUBRICON_JUDGE_CHUNK_SIZE", 256)

# Rollouts per generation chunk (a chunk holds whole groups: max(1, this // samples_per_example) examples). A chunk is
# one engine call, so it should fill the engine's batch (vLLM's max_num_seqs, 256 by default): with 64 rollouts per
# chunk an app-launched job ran at 0.78x raw vLLM, with 256 at 0.99x (docs/benchmarks.md).
RUBRICON_GENERATION_CHUNK_ROLLOUTS = env.int("RUBRICON_GENERATION_CHUNK_ROLLOUTS", 256)
# vLLM on CPU needs eager mode (no CUDA graphs); GPU nodes set this to false for speed.
RUBRICON_VLLM_ENFORCE_EAGER = env.bool("RUBRICON_VLLM_ENFORCE_EAGER", True)
# How long a worker waits for the vLLM server it starts to serve a local endpoint over HTTP (verifiers-backed tasks).
RUBRICON_VLLM_SERVER_START_TIMEOUT_S = env.float("RUBRICON_VLLM_SERVER_START_TIMEOUT_S", 600.0)
RUBRICON_TRANSFORMERS_BATCH_SIZE = env.int("RUBRICON_TRANSFORMERS_BATCH_SIZE", 8)
# A rubric tool job (preview, draft, dry run) or endpoint check still unfinished after this long is shown as failed:
# its worker died, and the page must not poll forever.
RUBRICON_TOOL_JOB_TIMEOUT_S = env.int("RUBRICON_TOOL_JOB_TIMEOUT_S", 1800)

# --- Exports ---
# COPY statements a rollouts export on Postgres runs at once, each on its own connection, ahead of the chunk being
# written (webapp/exports/copy_rows.py): 1 overlaps Postgres building the rows with writing them, 2 also builds them
# on two backends; 0 runs them one at a time on the task's own connection.
RUBRICON_EXPORT_COPY_STREAMS = env.int("RUBRICON_EXPORT_COPY_STREAMS", 2)

# --- Training runs ---
RUBRICON_TRAIN_OMP_THREADS = env.int("RUBRICON_TRAIN_OMP_THREADS", 0)  # 0 = inherit the worker's environment
RUBRICON_TRAIN_POLL_S = env.float("RUBRICON_TRAIN_POLL_S", 1.0)
RUBRICON_TRAIN_CANCEL_GRACE_S = env.float("RUBRICON_TRAIN_CANCEL_GRACE_S", 10.0)  # STOP file, then SIGTERM, SIGKILL at 3x
# A rubric's judge is calibrated when every judge criterion has n >= MIN_N labeled items and kappa >= MIN_KAPPA.
RUBRICON_CALIBRATION_MIN_KAPPA = env.float("RUBRICON_CALIBRATION_MIN_KAPPA", 0.6)
RUBRICON_CALIBRATION_MIN_N = env.int("RUBRICON_CALIBRATION_MIN_N", 20)
# Gate on the lower end of the agreement figure's 95 % bootstrap interval (docs/statistics.md), not on the point value.
RUBRICON_CALIBRATION_GATE_ON_LOWER_BOUND = env.bool("RUBRICON_CALIBRATION_GATE_ON_LOWER_BOUND", True)

# What model endpoints may send where (training.outbound). Endpoints are requests made by the server, with the server's
# environment: the operator, not project members, chooses which variables may travel as the API key (allow-patterns;
# the app's own and cloud credentials are always refused) and, optionally, which hosts/CIDRs may be called
# (empty = any host, the self-hosted default; the production example lists its model servers).
RUBRICON_ENDPOINT_KEY_VARS = env.list("RUBRICON_ENDPOINT_KEY_VARS", list(DEFAULT_KEY_VAR_PATTERNS))
RUBRICON_ENDPOINT_HOSTS = env.list("RUBRICON_ENDPOINT_HOSTS", [])
# A local model path a member types (endpoint model, run base model) must lie under MODELS_DIR, one of the project's
# run directories, or one of these shared directories (e.g. a read-only /models volume every project may use).
RUBRICON_MODEL_DIRS = env.list("RUBRICON_MODEL_DIRS", [])

# verifiers 0.4 plugins (tasksets and harnesses, by id; fnmatch patterns) a task may be backed by. Their code runs in
# the worker: allow only plugins the operator trusts. Default: the game tasksets that run in-process and the plain
# chat harnesses (no tools, no code execution).
RUBRICON_VERIFIERS_PLUGINS = env.list("RUBRICON_VERIFIERS_PLUGINS", ["textarena", "rubricon_wordle", "rubricon_chat",
                                                                     "null"])
RUBRICON_VERIFIERS_EPISODE_TIMEOUT_S = env.float("RUBRICON_VERIFIERS_EPISODE_TIMEOUT_S", 600.0)

# Python reward functions a rubric may call, by dotted path (never code typed in the browser).
RUBRICON_PYTHON_REWARD_ALLOWLIST = env.list("RUBRICON_PYTHON_REWARD_ALLOWLIST", [])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
    },
}
