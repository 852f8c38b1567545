"""`make test` runs the suite on several xdist workers: each gets its own Redis databases and var directory
(webapp/settings/test.py) and its own test database (pytest-django), and the processes a worker starts inherit them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import REPO_ROOT
from webapp.settings.test import _per_worker_environ

DERIVED = ("CELERY_BROKER_URL", "RUBRICON_TEST_PRIVATE_BROKER", "RUBRICON_VAR_DIR", "RUBRICON_MODELS_DIR",
           "RUBRICON_TEST_WORKER_ENV")


@pytest.fixture
def base_environ(monkeypatch, tmp_path):
    """A clean base environment for _per_worker_environ; monkeypatch restores every derived variable afterwards."""
    for name in DERIVED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    monkeypatch.setenv("RUBRICON_TEST_PRIVATE_BROKER", "redis://127.0.0.1:6379/14")
    monkeypatch.setenv("RUBRICON_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("RUBRICON_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path


@pytest.mark.parametrize(("worker", "broker", "private"), [("gw0", 15, 14), ("gw1", 13, 12), ("gw7", 1, 0)])
def test_each_worker_gets_its_own_pair_of_the_16_default_redis_databases(base_environ, worker, broker, private):
    _per_worker_environ(worker)
    assert os.environ["CELERY_BROKER_URL"] == f"redis://127.0.0.1:6379/{broker}"
    assert os.environ["RUBRICON_TEST_PRIVATE_BROKER"] == f"redis://127.0.0.1:6379/{private}"
    assert os.environ["RUBRICON_VAR_DIR"] == str(base_environ / "var" / "test-workers" / worker)
    assert os.environ["RUBRICON_MODELS_DIR"] == str(base_environ / "models")  # the converted model is shared
    assert os.environ["RUBRICON_TEST_WORKER_ENV"] == worker


def test_databases_of_workers_never_overlap_whatever_the_base_pair(base_environ, monkeypatch):
    for broker, private in ((15, 14), (14, 15), (15, 12), (40, 63)):
        used: set[int] = set()
        for index in range(min(broker, private) // (abs(broker - private) + 1) + 1):
            monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:6380/{broker}")
            monkeypatch.setenv("RUBRICON_TEST_PRIVATE_BROKER", f"redis://127.0.0.1:6380/{private}")
            _per_worker_environ(f"gw{index}")
            pair = {int(os.environ[name].rsplit("/", 1)[1]) for name in ("CELERY_BROKER_URL",
                                                                          "RUBRICON_TEST_PRIVATE_BROKER")}
            assert len(pair) == 2 and min(pair) >= 0 and not pair & used, (broker, private, index, pair, used)
            used |= pair


def test_too_many_workers_for_the_redis_databases_is_a_clear_error(base_environ):
    with pytest.raises(RuntimeError, match=r"-n 8 at most"):
        _per_worker_environ("gw8")


def test_a_process_started_by_a_worker_keeps_the_workers_databases_instead_of_deriving_again(tmp_path):
    """Celery workers and servers copy the test process's environment, PYTEST_XDIST_WORKER included; deriving again
    would move them to another worker's Redis database, where no test sends them work."""
    code = ("import json, django; from django.conf import settings; django.setup();"
            "print(json.dumps([settings.CELERY_BROKER_URL, settings.RUBRICON_TEST_PRIVATE_BROKER, str(settings.VAR_DIR),"
            " str(settings.MEDIA_ROOT), settings.CACHES['default']['KEY_PREFIX']]))")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings.test", "PYTEST_XDIST_WORKER": "gw3",
           "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15", "RUBRICON_TEST_PRIVATE_BROKER": "redis://127.0.0.1:6379/14",
           "RUBRICON_VAR_DIR": str(tmp_path)}
    env.pop("RUBRICON_TEST_WORKER_ENV", None)

    def settings_of(environ):
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=environ, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    worker = settings_of(env)
    assert worker == ["redis://127.0.0.1:6379/9", "redis://127.0.0.1:6379/8", str(tmp_path / "test-workers" / "gw3"),
                      str(tmp_path / "test-workers" / "gw3" / "test-media"), "rubricon-gw3"]
    child_env = {**env, "CELERY_BROKER_URL": worker[0], "RUBRICON_TEST_PRIVATE_BROKER": worker[1],
                 "RUBRICON_VAR_DIR": worker[2], "RUBRICON_TEST_WORKER_ENV": "gw3"}
    assert settings_of(child_env) == worker


def test_this_test_process_uses_the_databases_and_directories_of_its_own_worker(request, django_db_setup):
    from django.db import connection

    worker_id = getattr(request.config, "workerinput", {}).get("workerid", "master")
    if worker_id == "master":  # a serial run: the base values, as before xdist
        assert "test-workers" not in str(settings.VAR_DIR)
        assert not connection.settings_dict["NAME"].endswith("_gw0")
    else:
        assert os.environ["RUBRICON_TEST_WORKER_ENV"] == worker_id
        assert settings.VAR_DIR.name == worker_id and settings.MEDIA_ROOT.is_relative_to(settings.VAR_DIR)
        assert connection.settings_dict["NAME"].endswith(f"_{worker_id}")
        assert os.environ["CELERY_BROKER_URL"] == settings.CELERY_BROKER_URL
        assert os.environ["RUBRICON_TEST_PRIVATE_BROKER"] == settings.RUBRICON_TEST_PRIVATE_BROKER
        assert settings.CELERY_BROKER_URL != settings.RUBRICON_TEST_PRIVATE_BROKER


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_left_over_from_another_run_takes_none_of_this_runs_tasks(start_worker, private_broker):
    """An interrupted test run can leave its `celery worker` behind on the same Redis database. Each run's messages
    carry its own key prefix (RUBRICON_TEST_RUN_ID), so the leftover sees an empty queue and this run's worker gets
    the task. Without the prefix the leftover took tasks and ran them against its own, older database."""
    import time

    from workers.celery import app

    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] == f"test-{settings.TEST_RUN_ID}:"
    leftover = start_worker("leftover", {"CELERY_BROKER_URL": private_broker,
                                         "RUBRICON_TEST_RUN_ID": "an-earlier-run"}, concurrency=1)
    with app.connection(private_broker) as connection:
        app.send_task("workers.system.heartbeat", kwargs={"queue": "default"}, queue="default", connection=connection)
    time.sleep(3)  # ample for an idle worker polling the same queue
    assert "workers.system.heartbeat[" not in leftover.log(), leftover.log()
    current = start_worker("current", {"CELERY_BROKER_URL": private_broker}, concurrency=1)
    deadline = time.monotonic() + 30
    while "workers.system.heartbeat[" not in current.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "workers.system.heartbeat[" in current.log(), current.log()
    assert "workers.system.heartbeat[" not in leftover.log()


KEPT_ENGINE_CONFTEST = """
import os

import pytest

from tests.conftest import engine_core_keep, pytest_runtest_protocol  # noqa: F401  (the core lock under test)


@pytest.fixture(scope="session")
def vllm_kept(request):  # stands for vllm_server: a session's engine, bound to the core of the test that started it
    engine_core_keep(request)
    return os.environ["VLLM_CPU_OMP_THREADS_BIND"]
"""

KEPT_ENGINE_TESTS = """
import fcntl, os, time
from pathlib import Path


def test_the_engine_starts_while_the_first_core_is_taken(vllm_kept):
    Path(os.environ["KEPT"]).write_text(vllm_kept)
    with open(os.environ["FIRST_CORE_LOCK"], "a") as lock:  # until the first core is free again
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                time.sleep(0.1)
                continue
            fcntl.flock(lock, fcntl.LOCK_UN)
            return


def test_a_later_test_using_it_holds_its_core_though_the_first_is_free(vllm_kept):
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == vllm_kept
"""


def test_a_test_using_an_engine_kept_from_an_earlier_test_holds_that_engines_core(tmp_path):
    """A session's vLLM server keeps its threads on the core held by the test that started it. A later test that
    uses it must hold that core, not the first free one, or the other xdist worker could start an engine on the
    server's core while the server works (8x slower, tests/conftest.py)."""
    import fcntl
    import tempfile
    import time
    import uuid

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two cores")
    run_id = uuid.uuid4().hex
    (tmp_path / "conftest.py").write_text(KEPT_ENGINE_CONFTEST)
    (tmp_path / "test_kept.py").write_text(KEPT_ENGINE_TESTS)
    first_core = Path(tempfile.gettempdir()) / f"rubricon-tests-vllm-{run_id}-{cores[0]}.lock"
    kept = tmp_path / "kept"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "KEPT": str(kept), "FIRST_CORE_LOCK": str(first_core)}
    with open(first_core, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as an engine test of the other worker would
        run = subprocess.Popen([sys.executable, "-m", "pytest", "-n", "1", f"--testrunuid={run_id}", "-p", "no:django",
                                "-p", "no:cacheprovider", "-q", str(tmp_path)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while not kept.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        fcntl.flock(lock, fcntl.LOCK_UN)
        output = run.communicate(timeout=120)[0]
    first_core.unlink(missing_ok=True)
    for core in cores[1:]:
        (Path(tempfile.gettempdir()) / f"rubricon-tests-vllm-{run_id}-{core}.lock").unlink(missing_ok=True)
    assert kept.read_text() == str(cores[1]), output
    assert run.returncode == 0 and "2 passed" in output, output


LOCKS_CONFTEST = """
import pytest

from tests.conftest import pytest_runtest_protocol, pytest_sessionfinish  # noqa: F401  (the core locks under test)


@pytest.fixture
def vllm_engine_stand_in():  # a *vllm* fixture: the test holds a core, as one starting an engine would
    return None
"""

LOCKS_TESTS = """
import os, tempfile
from pathlib import Path


def test_an_engine_test_holds_a_core_lock(vllm_engine_stand_in):
    assert list(Path(tempfile.gettempdir()).glob(f"rubricon-tests-vllm-{os.environ['RUN_ID']}-*.lock"))
"""


def test_a_runs_core_locks_are_gone_when_it_ends(tmp_path):
    """The core locks of engine tests are files named after the run (`_vllm_core`): the controller deletes them at the
    end of the run, so the temporary directory does not gather two of them per `make test`."""
    import tempfile
    import uuid

    run_id = uuid.uuid4().hex
    (tmp_path / "conftest.py").write_text(LOCKS_CONFTEST)
    (tmp_path / "test_locks.py").write_text(LOCKS_TESTS)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RUN_ID": run_id}
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "1", f"--testrunuid={run_id}", "-p", "no:django",
                           "-p", "no:cacheprovider", "-q", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    assert not list(Path(tempfile.gettempdir()).glob(f"rubricon-tests-vllm-{run_id}-*.lock"))
