from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# Playwright's sync API runs an event loop in the test thread; Django's ORM refuses to run next to one
# unless told that this single-threaded test use is fine.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

REPO_ROOT = Path(__file__).resolve().parent.parent

# Compiled bytecode is cached (__pycache__), as Python does by default, even where the machine's environment turns that
# off (PYTHONDONTWRITEBYTECODE, set on this project's machines): otherwise every Celery worker, training run and server the
# tests start compiles the project's modules again (~0.3 CPU s each), and each xdist worker rewrites the asserts of
# all ~480 test modules (~4 CPU s) on every run.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

# Property tests draw the same examples on every run of `make test`, so a green suite stays green on a slow or busy
# machine; HYPOTHESIS_PROFILE=explore draws new ones (run it when changing statistics, search or input parsing).
hypothesis_settings.register_profile("default", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# What a test that starts a vLLM engine without saying so gets for VLLM_CPU_OMP_THREADS_BIND on an xdist worker: it is
# not a list of cores, so the engine or server refuses to start (training.vllm_server.omp_bind_cores) and such a test
# fails at once instead of running one engine more than there are cores.
UNMARKED_BIND = "unmarked_test_starts_vllm_mark_it_vllm_engine_see_tests_conftest"


def _starts_vllm(item) -> bool:
    """Whether a test starts a vLLM engine (in this process, in a Celery worker or as a server): it is marked
    `vllm_engine`, or asks for a fixture named *vllm* (vllm_backend, vllm_server, vllm_http)."""
    if item.get_closest_marker("vllm_engine") is not None:
        return True
    return any("vllm" in name.lower() for name in getattr(item, "fixturenames", ()))


# The session-scoped fixtures whose vLLM engine outlives the test that started it (vllm_server, vllm_backend), with the
# core its threads were bound to (`engine_core_keep`).
_KEPT_ENGINE_CORES = pytest.StashKey[dict[str, int]]()


def engine_core_keep(request: pytest.FixtureRequest) -> None:
    """Called by a session-scoped fixture that keeps a vLLM engine running after the test that started it: the
    engine's threads stay bound to the core that test held, so every later test that uses the fixture must hold that
    same core (`pytest_runtest_protocol`), or the engine would run on a core the other worker may have taken."""
    bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "")
    if bind.isdigit():  # only under xdist; with -n 0 vLLM binds as it likes and nothing else runs at the same time
        request.config.stash.setdefault(_KEPT_ENGINE_CORES, {})[request.fixturename] = int(bind)


def _core_lock_path(run_id: str, core: int | str) -> Path:
    import tempfile

    return Path(tempfile.gettempdir()) / f"rubricon-tests-vllm-{run_id}-{core}.lock"


@contextlib.contextmanager
def _vllm_core(run_id: str, only: int | None = None):
    """One of this machine's cores for the vLLM engines a test starts, held until the test ends: a lock file per
    core, the first free one taken (or core `only`), waiting while every core is held."""
    import fcntl
    import time

    cores = sorted(os.sched_getaffinity(0)) if only is None else [only]
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open(_core_lock_path(run_id, core), "a")) for core in cores]
        while True:
            for core, handle in zip(cores, files, strict=True):
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                try:
                    yield core
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                return
            time.sleep(0.2)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """On xdist workers, a test that starts a vLLM engine (`_starts_vllm`) holds a core of its own for its setup,
    call and teardown, and the engines it starts (in this process, in the Celery workers and vLLM servers it starts:
    they copy the environment) take that core's share (`VLLM_CPU_OMP_THREADS_BIND`: a server is pinned to it, an engine
    in the test process or a Celery worker runs on one torch thread). vLLM's default binding
    puts every engine's threads on the same first core (it keeps the others for its scheduler), so two engines at
    once, one per worker, ran a test 8x slower than alone on 2 cores and a server start missed its 300 s; bound to
    different cores, two servers at once each ran at about half their speed alone (docs/benchmarks.md). So up to one
    engine test per core runs at a time; the others wait for a core while the remaining workers go on. Any other test
    gets `UNMARKED_BIND`, so an engine it starts fails at once (mark such a test `vllm_engine`).

    A test that uses an engine kept running from an earlier test (`engine_core_keep`) holds the core that engine is
    bound to. Between its tests such an engine is idle (~1.4 % of a core, measured: the gloo threads of its worker
    process waking up), so it needs no core of its own."""
    workerinput = getattr(item.config, "workerinput", None)
    if workerinput is None:
        return (yield)
    with contextlib.ExitStack() as stack:
        if not _starts_vllm(item):
            bind = UNMARKED_BIND
        else:
            run_id = workerinput["testrunuid"]
            kept = item.config.stash.get(_KEPT_ENGINE_CORES, {})
            # Several kept engines on different cores: all of them, taken in order so two workers cannot deadlock.
            held = [stack.enter_context(_vllm_core(run_id, only=core))
                    for core in sorted({kept[name] for name in item.fixturenames if name in kept})]
            bind = str(held[0] if held else stack.enter_context(_vllm_core(run_id)))
        previous = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind
        try:
            return (yield)
        finally:
            if previous is None:
                os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
            else:
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = previous


# Seconds each test module took (setup, call and teardown of its tests) in a recent `make test`, read to order the
# run. Refresh it with `make test PYTEST_ARGS=--store-durations` after adding or slowing down tests.
DURATIONS_PATH = REPO_ROOT / "tests" / "durations.json"
# A module missing from the file is estimated at this many seconds per test (most tests take milliseconds).
UNKNOWN_SECONDS_PER_TEST = 0.5


def pytest_addoption(parser):
    parser.addoption("--store-durations", action="store_true",
                     help=f"write each test module's duration in this run to {DURATIONS_PATH.relative_to(REPO_ROOT)}")


def _module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(trylast=True)  # after pytest-django's own reordering of transactional tests
def pytest_collection_modifyitems(config, items):
    """The order of the run: whole modules, slowest first (tests/durations.json).

    `make test` hands modules to xdist workers one at a time (`--dist loadscope`) in this order, so the long end-to-end
    modules start first, one per free worker, and the short ones fill in around them: with modules in collection
    order, a worker was still running engine tests alone for minutes after the other had finished (docs/benchmarks.md).
    Whole modules, because module-scoped fixtures (a vLLM server, an engine) would otherwise start on each worker.
    Within a module the tests keep their order (pytest-django's: database tests before transactional ones).
    Browser modules too: each closes its browser (tests/browser/conftest.py), so any module may follow one.
    """
    import json

    durations = json.loads(DURATIONS_PATH.read_text()) if DURATIONS_PATH.exists() else {}
    counts: dict[str, int] = {}
    for item in items:
        counts[_module_of(item.nodeid)] = counts.get(_module_of(item.nodeid), 0) + 1

    def estimate(module: str) -> float:
        return float(durations.get(module, counts[module] * UNKNOWN_SECONDS_PER_TEST))

    position = {item.nodeid: index for index, item in enumerate(items)}
    items.sort(key=lambda item: (-estimate(_module_of(item.nodeid)), _module_of(item.nodeid),
                                 position[item.nodeid]))


# Modules whose tests share a session-scoped engine fixture (named here): `make test` hands them to one xdist worker as
# one unit, so the engine starts once (25-60 s and ~30 CPU s on CPU) instead of once on each worker.
SHARED_ENGINE_MODULES = {
    "tests/training/generation/test_openai_backend.py": "vllm_server",
    "tests/workers/test_verifiers_env_e2e.py": "vllm_server",
}


def scheduling_unit(nodeid: str) -> str:
    """What `make test` hands to an xdist worker at once: the test's module, or the engine its module shares."""
    module = _module_of(nodeid)
    return SHARED_ENGINE_MODULES.get(module, module)


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadscope` by `scheduling_unit`: whole modules, and the modules that share an engine together, handed
    out in collection order (`pytest_collection_modifyitems`) with `--no-loadscope-reorder`."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scheduling_unit(nodeid)

    return UnitScheduling(config, log)


def pytest_sessionfinish(session, exitstatus):
    """At the end of an xdist run, on the controller (every worker has finished its tests): the run's core locks
    (`_vllm_core`), empty files named after the run, which would otherwise pile up in the temporary directory."""
    run_id = getattr(session.config.option, "testrunuid", None)
    if run_id and not hasattr(session.config, "workerinput"):
        for lock in _core_lock_path(run_id, "*").parent.glob(_core_lock_path(run_id, "*").name):
            lock.unlink(missing_ok=True)


class _DurationRecorder:
    """Sums each module's setup, call and teardown durations (reported by every xdist worker to the controller) and
    writes them to DURATIONS_PATH at the end of a run that failed no test."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report) -> None:
        module = _module_of(report.nodeid)
        self.seconds[module] = self.seconds.get(module, 0.0) + report.duration

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        import json

        if exitstatus == 0 and self.seconds:
            DURATIONS_PATH.write_text(json.dumps({module: round(seconds, 1)
                                                  for module, seconds in sorted(self.seconds.items())}, indent=0) + "\n")


def pytest_configure(config):
    from celery.signals import after_task_publish

    after_task_publish.connect(_note_task_sent, weak=False)
    if not hasattr(config, "workerinput") and getattr(config.option, "testrunuid", "") is None:
        import uuid

        # The run's id, which names its core locks (`_vllm_core`), known here so that they go at the end of the run.
        config.option.testrunuid = uuid.uuid4().hex
    if config.getoption("--store-durations") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_DurationRecorder(), "rubricon-store-durations")
    if hasattr(config, "workerinput") or getattr(config.option, "dist", "no") == "no":
        production_imports_for_started_processes()


PRODUCTION_IMPORTS = REPO_ROOT / "tests" / "support" / "production_imports"


def production_imports_for_started_processes() -> None:
    """Every process this test process starts hides the packages only the test environment installs
    (tests/support/production_imports/sitecustomize.py), as a deployment does not have them. Called in the processes
    that run tests (each xdist worker; pytest itself with -n 0), after they started: they keep those packages."""
    paths = [str(PRODUCTION_IMPORTS), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


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
def vllm_server(request: pytest.FixtureRequest, bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """vLLM's OpenAI-compatible server for the bundled model, served as "bundled" (float32, Hermes tool-call parsing,
    2048-token context), for the tests that talk to a real server without being about starting or stopping one.

    Started at the first such test of the session (of each xdist worker: 25-60 s and ~30 CPU s on CPU) and kept for
    the others; its engine stays on the core that test held (`engine_core_keep`)."""
    pytest.importorskip("vllm")
    from tests.support.vllm_servers import start_server

    try:
        server = start_server(bundled_model_dir, tmp_path_factory.mktemp("vllm-server") / "server.log",
                              model="bundled", max_model_len=2048)
    except RuntimeError as error:
        pytest.fail(str(error))
    engine_core_keep(request)
    yield server
    server.stop()


class WorkerProcess:
    """A real `celery worker` OS process for tests, writing to the test database.

    `started` lists every worker this test process started: workers on different brokers still share the test
    database, so a check that scans it (the lapsed-lease check) may be done by any of them."""

    started: list[WorkerProcess] = []

    def __init__(self, *, name: str, log_path: Path, env_overrides: dict[str, str] | None = None,
                 queues: str = "default,judge,rollout,train", concurrency: int = 2):
        import socket
        import subprocess
        import sys

        from django.conf import settings
        from django.db import connection

        db = connection.settings_dict
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webapp.settings.test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            **(env_overrides or {}),
        }
        self.name = name
        self.node = f"{name}@{socket.gethostname()}"  # Celery's node name (-n name@%h), for remote control
        self.log_path = log_path
        self.broker_url = env["CELERY_BROKER_URL"]
        WorkerProcess.started.append(self)
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queues, "--pool", "threads",
                 "--concurrency", str(concurrency), "-n", f"{name}@%h", "--loglevel", "INFO"],
                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        import time

        deadline = time.monotonic() + timeout
        while b"ready." not in self.log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"Celery worker did not start:\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """kill -9 of the worker and its children, as a crash or an OOM kill would."""
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        import subprocess

        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture(scope="session", autouse=True)
def shared_model_dir(tmp_path_factory) -> Path:
    """The operator setting RUBRICON_MODEL_DIRS for the test session: models the tests build (tiny_model_dir) live
    here, a shared models volume every project may load from. Set before any worker process starts (they copy the
    environment); tests of the path rule set their own value."""
    from django.conf import settings

    from tests.training.grpo.conftest import SHARED_MODELS

    path = tmp_path_factory.getbasetemp() / SHARED_MODELS
    path.mkdir(exist_ok=True)
    os.environ["RUBRICON_MODEL_DIRS"] = str(path)
    settings.RUBRICON_MODEL_DIRS = [str(path)]
    return path


@pytest.fixture
def start_worker(django_db_setup, tmp_path):
    """start_worker(name, env_overrides, concurrency=2) -> WorkerProcess, stopped at the end of the test.

    With ready=False it returns at once: workers that may start together then boot side by side (call wait_ready)."""
    started: list[WorkerProcess] = []

    def start(name: str, env_overrides: dict[str, str] | None = None, concurrency: int = 2, *,
              ready: bool = True) -> WorkerProcess:
        worker = WorkerProcess(name=name, log_path=tmp_path / f"{name}.log", env_overrides=env_overrides,
                               concurrency=concurrency)
        started.append(worker)
        if ready:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def eager_celery():
    """Celery runs every task sent in this test in-process, at once (`job_enqueue` too); the app, restored after."""
    from celery import current_app

    app = current_app._get_current_object()
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = False


@pytest.fixture
def private_broker() -> str:
    """An emptied Redis database for tests whose workers must not share their queues with the session worker.
    RUBRICON_TEST_PRIVATE_BROKER picks it where several test runs share one Redis; each xdist worker gets its own
    (webapp/settings/test.py)."""
    import redis
    from django.conf import settings

    url = settings.RUBRICON_TEST_PRIVATE_BROKER
    if url == settings.CELERY_BROKER_URL:
        pytest.fail("RUBRICON_TEST_PRIVATE_BROKER must differ from CELERY_BROKER_URL: the session worker would join in")
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker process consuming every queue from the test Redis and writing to the test database.

    Tests that use it must be `transactional_db` so the worker sees their committed rows."""
    import uuid

    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # no stale messages from an interrupted run
    name = f"test-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(name=name, log_path=tmp_path_factory.mktemp("worker") / "worker.log")
    worker.wait_ready()
    _SESSION_WORKER.append(worker)
    yield worker
    _SESSION_WORKER.remove(worker)
    worker.stop()


# The session's Celery worker (`celery_worker_process`) once started, and whether a task was sent since the last test
# ended (`after_task_publish` in this process: the test's own code or its live server's threads).
_SESSION_WORKER: list[WorkerProcess] = []
_TASK_SENT: list[bool] = [False]


def _note_task_sent(**_kwargs) -> None:
    _TASK_SENT[0] = True


def quiesce_session_worker(timeout: float = 120) -> None:
    """Wait until the session worker runs nothing, holds nothing and has nothing waiting, if a task was sent since
    the last test: what a test left queued is dropped, what runs is waited for, what waits for its countdown is revoked.

    pytest-django truncates every table after a transactional test; a task the test had sent (a judge job started
    through the API, say) still running in the session worker then deadlocked with that TRUNCATE and failed the
    teardown, or wrote into the next test's tables. Called before each test's teardown (`pytest_runtest_teardown`).
    Quiet means two rounds in a row with nothing purged, active or reserved (a finishing task may send the next one)."""
    import time

    if not (_SESSION_WORKER and _TASK_SENT[0]) or _SESSION_WORKER[0].process.poll() is not None:
        _TASK_SENT[0] = False
        return
    from workers.celery import app

    worker = _SESSION_WORKER[0]
    inspect = app.control.inspect(destination=[worker.node], timeout=5)
    revoked: set[str] = set()
    deadline = time.monotonic() + timeout
    quiet_rounds = 0
    while quiet_rounds < 2:
        busy = [f"{count} queued"] if (count := app.control.purge()) else []
        for state in ("active", "reserved", "scheduled"):
            replies = getattr(inspect, state)()
            if not replies or worker.node not in replies:
                busy.append(f"no answer to {state}")
                continue
            for entry in replies[worker.node]:
                if state != "scheduled":
                    busy.append(f"{state} {entry['name']}")
                elif entry["request"]["id"] not in revoked:  # scheduled: the request with its eta
                    app.control.revoke(entry["request"]["id"], destination=[worker.node])
                    revoked.add(entry["request"]["id"])
        quiet_rounds = 0 if busy else quiet_rounds + 1
        if busy:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the session Celery worker is still busy after {timeout:.0f} s: {busy}\n{worker.log()}")
            time.sleep(0.1)
    _TASK_SENT[0] = False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        quiesce_session_worker()
    except Exception as error:  # the fixtures' teardown (the flush) still runs; the test's teardown then fails
        failure: Exception | None = error
    else:
        failure = None
    result = yield
    if nextitem is None or _module_of(nextitem.nodeid) != _module_of(item.nodeid):
        heap_freeze()
    if failure is not None:
        raise failure
    return result


def heap_freeze() -> None:
    """After a test module (its module-scoped fixtures are gone): collect its garbage, then move every object left —
    mostly the modules imported so far: Django, torch, transformers, vLLM, ~1.4 million objects — to the collector's
    permanent generation, which a collection does not scan. A full collection of that heap took ~0.35 CPU s, and the
    libraries under test ask for many (accelerate at the end of each TRL trainer, vLLM around each engine); now each
    scans what was created since. vLLM does the same in its engines (`freeze_gc_heap`) and undoes it when one shuts
    down (`gc.unfreeze`), which is fine here too: the next module freezes again. Objects alive now that later become
    cyclic garbage stay until such an unfreeze, or the worker's end."""
    import gc

    gc.collect()
    gc.freeze()
