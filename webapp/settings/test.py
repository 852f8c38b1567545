"""The test suite: real Postgres and real Redis (started by `make test`).

Under pytest-xdist (`make test` runs `pytest -n N`) each worker process gets its own Redis databases, var directory
and media root, derived from PYTEST_XDIST_WORKER (see `_per_worker_environ`); pytest-django gives it its own test
database (test_<name>_gw0, test_<name>_gw1, …). A serial run (`pytest -n 0`, or no xdist) uses the base values.
"""

import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .base import *  # noqa: F403
from .base import BASE_DIR, MODELS_DIR, env

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/15"
DEFAULT_PRIVATE_BROKER_URL = "redis://127.0.0.1:6379/14"


def _redis_db(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path else 0


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def _per_worker_environ(worker: str) -> None:
    """Point this xdist worker, and every process it starts (Celery workers, servers: they copy os.environ), at its
    own Redis databases and var directory.

    The broker and the private broker (RUBRICON_TEST_PRIVATE_BROKER) of worker gwN sit N strides below the base
    databases, a stride being the span of the pair: with the defaults 15/14, gw0 uses 15/14, gw1 13/12, … gw7 1/0,
    so up to 8 workers fit into Redis's default 16 databases. The cache follows the broker unless RUBRICON_CACHE_URL
    names its own, which the workers then share under per-worker key prefixes. Child processes see
    RUBRICON_TEST_WORKER_ENV and take the derived values as they are."""
    index = int(worker.removeprefix("gw"))
    broker = os.environ.get("CELERY_BROKER_URL", DEFAULT_BROKER_URL)
    private = os.environ.get("RUBRICON_TEST_PRIVATE_BROKER", DEFAULT_PRIVATE_BROKER_URL)
    broker_db, private_db = _redis_db(broker), _redis_db(private)
    same_server = urlsplit(broker).netloc == urlsplit(private).netloc
    stride = abs(broker_db - private_db) + 1 if same_server else 1
    shift = index * stride
    if min(broker_db, private_db) - shift < 0:
        raise RuntimeError(
            f"xdist worker {worker} has no Redis databases left below {broker} / {private}: run fewer workers "
            f"(-n {min(broker_db, private_db) // stride + 1} at most) or use higher base databases on a Redis "
            "started with more of them (redis-server --databases 64)."
        )
    os.environ["CELERY_BROKER_URL"] = _with_redis_db(broker, broker_db - shift)
    os.environ["RUBRICON_TEST_PRIVATE_BROKER"] = _with_redis_db(private, private_db - shift)
    base_var = Path(os.environ.get("RUBRICON_VAR_DIR", str(BASE_DIR / "var"))).resolve()
    os.environ["RUBRICON_VAR_DIR"] = str(base_var / "test-workers" / worker)
    os.environ.setdefault("RUBRICON_MODELS_DIR", str(MODELS_DIR))  # one converted bundled model for all workers
    os.environ["RUBRICON_TEST_WORKER_ENV"] = worker


TEST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if TEST_WORKER and os.environ.get("RUBRICON_TEST_WORKER_ENV") != TEST_WORKER:
    _per_worker_environ(TEST_WORKER)

DATABASES = {
    "default": env.dj_db_url("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rubricon"),
}
# Tests close connections after each request (pytest-django drops the test database at the end); benchmarks that
# serve with these settings pass production's persistent connections (DATABASE_CONN_MAX_AGE=60).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", 0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's, but the flush after a transactional test deletes the rows left instead of truncating every table.
    DATABASES["default"]["ENGINE"] = "tests.support.postgres"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", DEFAULT_BROKER_URL)
# An emptied Redis database for tests whose Celery workers must not share queues with the session worker.
RUBRICON_TEST_PRIVATE_BROKER = env.str("RUBRICON_TEST_PRIVATE_BROKER", DEFAULT_PRIVATE_BROKER_URL)
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                      "LOCATION": env.str("RUBRICON_CACHE_URL", CELERY_BROKER_URL),
                      "KEY_PREFIX": f"rubricon-{TEST_WORKER}" if TEST_WORKER else "rubricon"}}
# Every test run's messages live under its own key prefix, drawn once per run and inherited by the xdist workers and
# every process they start: a Celery worker left over from an interrupted run on the same Redis database then sees
# an empty queue instead of taking (and losing) this run's tasks.
TEST_RUN_ID = os.environ.setdefault("RUBRICON_TEST_RUN_ID", uuid.uuid4().hex[:12])
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "global_keyprefix": f"test-{TEST_RUN_ID}:"}
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
