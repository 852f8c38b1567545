"""The test suite: real Postgres and real Redis (started by `make test`)."""

from pathlib import Path

from .base import *  # noqa: F403
from .base import BASE_DIR, env

DATABASES = {
    "default": env.dj_db_url("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rubricon"),
}
# Tests close connections after each request (pytest-django drops the test database at the end); benchmarks that
# serve with these settings pass production's persistent connections (DATABASE_CONN_MAX_AGE=60).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", 0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                      "LOCATION": env.str("RUBRICON_CACHE_URL", CELERY_BROKER_URL), "KEY_PREFIX": "rubricon"}}
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
RUBRICON_LIMITS_URL = env.str("RUBRICON_LIMITS_URL", CELERY_BROKER_URL)
VAR_DIR = Path(env.str("RUBRICON_VAR_DIR", str(BASE_DIR / "var"))).resolve()
MEDIA_ROOT = VAR_DIR / "test-media"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Two cores: one BLAS thread per training process avoids oversubscription (steps were 4-7x slower otherwise).
RUBRICON_TRAIN_OMP_THREADS = 1
# The Redis cache outlives a test, so wrong-token counts from many runs would add up; the throttling test sets its own.
RUBRICON_API_TOKEN_FAILURE_LIMIT = 1000
