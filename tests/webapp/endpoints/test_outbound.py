"""Issue 15.1: what an endpoint may send where is the operator's decision, not a project member's.

Every path that reads an endpoint's key, opens a connection or loads a local model re-checks the rules, so a row
written before them (made here with the ORM, as an old row would be) cannot leak a secret or read another project's
files either. No test sends traffic anywhere but loopback: refused hosts are refused before a socket exists."""

from __future__ import annotations

import socket

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import EndpointFactory, ProjectFactory, RubricVersionFactory, TaskFactory
from tests.webapp.endpoints.test_endpoints import ScriptedOpenAI, form_data, url
from training.llm_client import OpenAICompatibleClient
from training.models import ModelError, model_path_check
from training.outbound import OutboundRefused, key_var_check, url_host_check
from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Role
from webapp.endpoints import services
from webapp.endpoints.models import EndpointCheck, ModelEndpoint
from webapp.judging.judges import judge_for_endpoint
from webapp.rollouts.engines import backend_config
from webapp.runs.models import TrainingRun
from webapp.runs.services import run_dir, training_run_create

pytestmark = pytest.mark.django_db

SECRETS = ["DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "POSTGRES_PASSWORD",
           "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GOOGLE_API_KEY", "AZURE_OPENAI_API_KEY",
           "RUBRICON_ENDPOINT_KEY_VARS", "GITHUB_TOKEN", "PGPASSWORD", "SSH_AUTH_SOCK"]


@pytest.fixture
def openai_server():
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedOpenAI)
    server.requests = []
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_outside_connections(monkeypatch):
    """Any attempt to resolve or connect to a non-loopback address fails the test (and is recorded)."""
    attempts: list[object] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise AssertionError(f"connection attempted to {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(host)
            raise AssertionError(f"name resolution attempted for {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


# --- key variables -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SECRETS)
def test_infrastructure_credentials_are_never_allowed_even_when_the_operator_allows_everything(name):
    with pytest.raises(OutboundRefused, match=rf"\${name} may not be sent"):
        key_var_check(name, allowed=["*"])
    with pytest.raises(ApplicationError) as info:
        services.endpoint_create(project=ProjectFactory(), name="x", kind="openai", model="m",
                                 base_url="http://127.0.0.1:9/v1", api_key_env=name)
    assert info.value.field == "api_key_env"


def test_default_patterns_and_operator_setting(settings):
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "TOGETHER_API_KEY"):
        assert services.api_key_env_check(name) == name
    for name in ("OPENAI_KEY", "HOME", "PATH", "SECRET"):
        with pytest.raises(ApplicationError, match=rf"{name} may not be sent.*\*_API_KEY or \*_TOKEN"):
            services.api_key_env_check(name)
    settings.RUBRICON_ENDPOINT_KEY_VARS = ["MYCO_JUDGE_KEY"]
    assert services.api_key_env_check("MYCO_JUDGE_KEY") == "MYCO_JUDGE_KEY"
    with pytest.raises(ApplicationError, match="MYCO_JUDGE_KEY"):
        services.api_key_env_check("OPENAI_API_KEY")


def test_form_refuses_at_the_field_and_lists_the_allowed_names(client, make_member):
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    response = client.post(reverse("endpoints:create", args=[project.pk]), form_data(api_key_env="DJANGO_SECRET_KEY"))
    assert response.status_code == 400
    assert "$DJANGO_SECRET_KEY may not be sent" in response.context["form"].errors["api_key_env"][0]
    assert not ModelEndpoint.objects.filter(project=project).exists()
    page = client.get(reverse("endpoints:create", args=[project.pk])).content.decode()
    assert "<code>*_API_KEY</code>, <code>*_TOKEN</code>" in page
    assert "Calls to this endpoint are made by the server" in page


def test_api_refuses_at_the_field(make_member):
    user, project = make_member(Role.EDITOR)
    api = APIClient()
    api.force_authenticate(user)
    path = f"/api/v1/projects/{project.pk}/endpoints/"
    payload = {"name": "e", "kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
    response = api.post(path, {**payload, "api_key_env": "DATABASE_URL"}, format="json")
    assert response.status_code == 400, response.content
    assert "DATABASE_URL may not be sent" in response.content.decode() and "api_key_env" in response.content.decode()
    assert api.post(path, payload, format="json").status_code == 201  # the default (no key) is valid


def test_a_row_written_before_the_rule_sends_nothing(openai_server, monkeypatch, settings, tmp_path):
    monkeypatch.setenv("DJANGO_SECRET_KEY", "the-real-secret")
    endpoint = EndpointFactory(base_url=url(openai_server, "ok"), api_key_env="DJANGO_SECRET_KEY")  # ORM: no check
    openai_server.requests.clear()
    check = services.endpoint_connection_check(endpoint=endpoint)
    assert not check.ok and "$DJANGO_SECRET_KEY may not be sent" in check.message
    # the worker side of "Test connection" stores the refusal as the answer
    pending = EndpointCheck.objects.create(endpoint=endpoint)
    services.endpoint_check_run(check_id=pending.pk)
    pending.refresh_from_db()
    assert not pending.ok and "may not be sent" in pending.error
    with pytest.raises(ApplicationError, match="may not be sent"):
        judge_for_endpoint(endpoint)
    with pytest.raises(ApplicationError, match="may not be sent"):
        backend_config(endpoint)
    assert openai_server.requests == []


def test_allowed_key_is_still_sent(openai_server, monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_API_KEY", "sk-ok")
    endpoint = EndpointFactory(base_url=url(openai_server, "ok"), api_key_env="JUDGE_TEST_API_KEY")
    openai_server.requests.clear()
    assert services.endpoint_connection_check(endpoint=endpoint).ok
    assert openai_server.requests[0]["auth"] == "Bearer sk-ok"


# --- hosts -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "allowed", "ok"), [
    ("127.0.0.1", ["127.0.0.1"], True),
    ("10.1.2.3", ["10.0.0.0/8"], True),
    ("[::1]", ["::1"], True),
    ("gpu-1.cluster.internal", ["*.cluster.internal"], True),
    ("cluster.internal", ["*.cluster.internal"], False),
    ("evil-cluster.internal", ["*.cluster.internal"], False),
    ("GPU-NODE", ["gpu-node"], True),
    ("10.0.0.1", ["127.0.0.1"], False),
    ("example.invalid", ["127.0.0.1"], False),
    ("localhost", ["127.0.0.0/8"], False),  # a CIDR never matches a name: it could resolve anywhere
    ("2130706433", ["127.0.0.1"], False),  # decimal spelling of 127.0.0.1 is a name here, and refused
    ("anything.example", [], True),  # empty list = any host (the self-hosted default)
])
def test_url_host_check(host, allowed, ok):
    if ok:
        url_host_check(f"http://{host}:8000/v1", allowed_hosts=allowed)
    else:
        with pytest.raises(OutboundRefused, match="not on the operator's list"):
            url_host_check(f"http://{host}:8000/v1", allowed_hosts=allowed)


def test_client_refuses_before_any_session_or_socket(no_outside_connections):
    for address in ("http://10.0.0.1:8000/v1", "http://example.invalid/v1"):
        with pytest.raises(OutboundRefused, match="RUBRICON_ENDPOINT_HOSTS"):
            OpenAICompatibleClient(base_url=address, model="m", api_key="k", allowed_hosts=("127.0.0.1",))
    assert no_outside_connections == []


def test_hosts_allowlist_in_service_and_at_call_time(settings, openai_server, no_outside_connections, monkeypatch):
    settings.RUBRICON_ENDPOINT_HOSTS = ["127.0.0.1"]
    project = ProjectFactory()
    with pytest.raises(ApplicationError) as info:
        services.endpoint_create(project=project, name="e", kind="openai", model="m", base_url="http://10.0.0.1/v1")
    assert info.value.field == "base_url" and "10.0.0.1" in info.value.message
    ok = services.endpoint_create(project=project, name="ok", kind="openai", model="m", base_url=url(openai_server, "ok"))
    openai_server.requests.clear()
    assert services.endpoint_connection_check(endpoint=ok).ok and len(openai_server.requests) == 1
    # Rows written before the list existed are refused where the call would be made.
    monkeypatch.setenv("JUDGE_TEST_API_KEY", "sk-would-leak")
    for base in ("http://10.0.0.1:8000/v1", "http://example.invalid/v1"):
        old = EndpointFactory(project=project, base_url=base, api_key_env="JUDGE_TEST_API_KEY")
        check = services.endpoint_connection_check(endpoint=old)
        assert not check.ok and "not on the operator's list" in check.message
        with pytest.raises(ApplicationError, match="not on the operator's list"):
            judge_for_endpoint(old)
        with pytest.raises(ApplicationError, match="not on the operator's list"):
            backend_config(old)
    assert no_outside_connections == []


# --- model paths -------------------------------------------------------------------------------------------------


def _run(project, **values) -> TrainingRun:
    return TrainingRun.objects.create(project=project, name="r", task=TaskFactory(project=project),
                                      rubric_version=RubricVersionFactory(rubric__project=project),
                                      base_model="bundled", **values)


def _model_dir(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_model_path_check(tmp_path):
    models, runs = tmp_path / "models", tmp_path / "runs" / "7"
    inside = _model_dir(models / "mine")
    checkpoint = _model_dir(runs / "output" / "checkpoint-2")
    other = _model_dir(tmp_path / "runs" / "8" / "output" / "checkpoint-2")
    (models / "link").symlink_to(other)
    roots = [models, runs]
    for ok in (str(inside), str(checkpoint), "Qwen/Qwen3-0.6B", "gpt2", "bundled"):
        model_path_check(ok, allowed_roots=roots)
    for bad in (str(other), "/etc", f"{models}/../runs/8/output/checkpoint-2", str(models / "link"), "../../etc",
                "./secrets", "~/.ssh", "a/b/c", "org/../name"):
        with pytest.raises(ModelError, match="outside the directories"):
            model_path_check(bad, allowed_roots=roots)


def test_local_endpoint_model_paths(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    settings.VAR_DIR = tmp_path / "var"
    project, other_project = ProjectFactory(), ProjectFactory()
    theirs, mine = _run(other_project), _run(project)
    their_checkpoint = _model_dir(run_dir(theirs.pk) / "output" / "checkpoint-1")
    my_checkpoint = _model_dir(run_dir(mine.pk) / "output" / "checkpoint-1")
    local = _model_dir(settings.MODELS_DIR / "tiny")

    def create(model):
        return services.endpoint_create(project=project, name=model[-40:], kind="transformers", model=model)

    for ok in (str(local), str(my_checkpoint), "org/name", "bundled"):
        create(ok)
    for bad in (str(their_checkpoint), "/etc", f"{settings.MODELS_DIR}/../var", "../x"):
        with pytest.raises(ApplicationError) as info:
            create(bad)
        assert info.value.field == "model" and "outside the directories" in info.value.message
    # an OpenAI-compatible endpoint's model is a name on the server, not a path here
    services.endpoint_create(project=project, name="remote", kind="openai", model="/models/x",
                             base_url="http://127.0.0.1:9/v1")
    # rows written before the rule are refused where the model is loaded
    old = EndpointFactory(project=project, kind="transformers", base_url="", model=str(their_checkpoint))
    for load in (lambda: judge_for_endpoint(old), lambda: backend_config(old),
                 lambda: services.endpoint_model_resolve(endpoint=old)):
        with pytest.raises(ApplicationError, match="outside the directories"):
            load()
    check = services.endpoint_connection_check(endpoint=old)
    assert not check.ok and ("outside the directories" in check.message or "train extra" in check.message)


def test_training_run_base_model_and_the_worker_recheck(settings, tmp_path, monkeypatch):
    from workers.training import launch_run

    settings.MODELS_DIR = tmp_path / "models"
    settings.VAR_DIR = tmp_path / "var"
    project, other_project = ProjectFactory(), ProjectFactory()
    their_checkpoint = _model_dir(run_dir(_run(other_project).pk) / "output" / "checkpoint-1")
    task = TaskFactory(project=project)
    from tests.factories import ExampleFactory

    ExampleFactory(task=task, split="train")
    version = RubricVersionFactory(rubric__project=project)
    for bad in (str(their_checkpoint), "/etc", "../../var"):
        with pytest.raises(ApplicationError) as info:
            training_run_create(project=project, name="r", task=task, rubric_version=version, preset="cpu-smoke",
                                base_model=bad, calibration_override=True, calibration_note="test", enqueue=False)
        assert info.value.field == "base_model" and "outside the directories" in info.value.message
    # A run queued before the rule (its config names another project's checkpoint) is refused by the worker, which
    # starts no process; so is one whose judge names a credential.
    sneaky = _run(project, config={"model": str(their_checkpoint)}, status=JobStatus.PENDING)
    monkeypatch.setenv("DJANGO_SECRET_KEY", "the-real-secret")
    leaky = _run(project, config={"model": "bundled", "judge": {"base_url": "http://127.0.0.1:9/v1", "model": "m",
                                                               "api_key_env": "DJANGO_SECRET_KEY"}},
                 status=JobStatus.PENDING)
    for run, reason in ((sneaky, "outside the directories"), (leaky, "$DJANGO_SECRET_KEY may not be sent")):
        launch_run(run_id=run.pk)
        run.refresh_from_db()
        assert run.status == JobStatus.FAILED and reason in run.error and run.pid is None
        assert not (run_dir(run.pk) / "config.json").exists()


def test_training_process_rechecks_key_variable_and_host(monkeypatch, no_outside_connections):
    from training.grpo.config import GRPORunConfig, JudgeEndpoint
    from training.grpo.rewards import rewards_from_config

    rubric = {"criteria": [{"key": "polite", "title": "Polite", "kind": "judge", "weight": 1.0,
                            "question": "Is the answer polite?", "choices": [{"label": "no"},
                                                                             {"label": "yes"}]}]}
    examples = [{"prompt": "hi"}, {"prompt": "ho"}]

    def config(**judge):
        return GRPORunConfig(examples=examples, num_generations=2, per_device_train_batch_size=2, rubric=rubric,
                             judge=JudgeEndpoint(model="m", **judge))

    monkeypatch.setenv("DJANGO_SECRET_KEY", "the-real-secret")
    with pytest.raises(OutboundRefused, match="DJANGO_SECRET_KEY"):
        rewards_from_config(config(base_url="http://127.0.0.1:9/v1", api_key_env="DJANGO_SECRET_KEY"))
    monkeypatch.setenv("RUBRICON_ENDPOINT_HOSTS", "127.0.0.1")
    with pytest.raises(OutboundRefused, match="10.0.0.1"):
        rewards_from_config(config(base_url="http://10.0.0.1/v1"))
    rewards_from_config(config(base_url="http://127.0.0.1:9/v1"))
    assert no_outside_connections == []
