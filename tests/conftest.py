from __future__ import annotations

import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in the test thread; Django's ORM refuses to run next to one
# unless told that this single-threaded test use is fine.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def make_member(db):
    """make_member(role, project=None) -> (user, project): a user with that role in the project."""
    from tests.factories import MembershipFactory, ProjectFactory, UserFactory

    def make(role: str, project=None):
        project = project or ProjectFactory()
        user = UserFactory()
        MembershipFactory(project=project, user=user, role=role)
        return user, project

    return make


@pytest.fixture(scope="session")
def bundled_model_dir() -> Path:
    """The bundled SmolLM2 converted to safetensors (converted once per machine, ~30 s)."""
    from django.conf import settings

    from training.models import ensure_bundled_model

    return ensure_bundled_model(settings.MODELS_DIR)


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker process consuming every queue from the test Redis and writing to the test database.

    Tests that use it must be `transactional_db` so the worker sees their committed rows."""
    import subprocess
    import sys
    import time
    import uuid

    import redis
    from django.conf import settings
    from django.db import connection

    broker = settings.CELERY_BROKER_URL
    redis.Redis.from_url(broker).flushdb()  # no stale messages from an earlier, interrupted run
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webapp.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": broker,
    }
    name = f"test-{uuid.uuid4().hex[:8]}"
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "default,judge,rollout,train",
             "--pool", "threads", "--concurrency", "2", "-n", f"{name}@%h", "--loglevel", "INFO"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while b"ready." not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"Celery worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    process.name = name  # type: ignore[attr-defined]
    process.log_path = log  # type: ignore[attr-defined]
    yield process
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
