"""Model endpoints: CRUD with validation and optimistic locking, and "test connection" against a real local
OpenAI-compatible HTTP server scripted by the test (success, 401, 404, 500, timeout, malformed bodies, refused)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse

from tests.factories import EndpointFactory, GenerationJobFactory, ProjectFactory
from webapp.core.errors import ApplicationError, ConflictError
from webapp.core.models import JobStatus, Role
from webapp.endpoints import services
from webapp.endpoints.models import EndpointCheck, ModelEndpoint
from webapp.rollouts.models import GenerationJob

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


class ScriptedOpenAI(BaseHTTPRequestHandler):
    """/<scenario>/v1/chat/completions answers as the scenario says; requests are recorded on the server."""

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        scenario = self.path.split("/")[1]
        if scenario == "ok":
            reply = {"id": "c1", "object": "chat.completion", "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": "pong <script>alert(1)</script>"}}],
                     "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}
            self._send(200, json.dumps(reply).encode())
        elif scenario == "unauthorized":
            self._send(401, b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}')
        elif scenario == "missing":
            self._send(404, b'{"error": {"message": "The model `nope` does not exist"}}')
        elif scenario == "broken":
            self._send(500, b"Internal Server Error", "text/plain")
        elif scenario == "slow":
            time.sleep(1.5)
            self._send(200, b"{}")
        elif scenario == "html":
            self._send(200, b"<html>captive portal</html>", "text/html")
        elif scenario == "nochoices":
            self._send(200, b'{"object": "chat.completion", "choices": []}')


@pytest.fixture(scope="module")
def openai_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedOpenAI)
    server.requests = []
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server, scenario: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{scenario}/v1"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def editor(client, make_member):
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    return user


@pytest.fixture
def project(editor):
    return editor.memberships.get().project


def form_data(**changes) -> dict:
    data = {"name": "Judge", "kind": "openai", "base_url": "http://gpu-node:8000/v1", "model": "Qwen/Qwen3-8B",
            "api_key_env": "OPENAI_API_KEY", "default_params": '{"temperature": 0.2}', "max_concurrency": 4,
            "requests_per_minute": "", "tokens_per_minute": "60000", "supports_structured_output": "on"}
    return {**data, **changes}


# --- services ---------------------------------------------------------------------------------------------------


def test_create_validates_each_field():
    project = ProjectFactory()
    endpoint = services.endpoint_create(project=project, name=" Judge ", kind="openai", model=" gpt ",
                                        base_url="http://x/v1/", api_key_env="OPENAI_API_KEY", tokens_per_minute=10)
    assert (endpoint.name, endpoint.model, endpoint.base_url, endpoint.tokens_per_minute) == (
        "Judge", "gpt", "http://x/v1", 10)
    cases = [
        ({"name": "Judge"}, "name", "already exists"),
        ({"base_url": ""}, "base_url", "needs a base URL"),
        ({"base_url": "gpu-node:8000/v1"}, "base_url", "starting with http"),
        ({"model": " "}, "model", "model name"),
        ({"api_key_env": "sk-proj-abc123DEF456ghi789"}, "api_key_env", "looks like an API key"),
        ({"api_key_env": "gsk_9aF3kLm2Qp8ZxT4vBn7W"}, "api_key_env", "looks like an API key"),
        ({"api_key_env": "openai key"}, "api_key_env", "capital letters, digits and _"),
        ({"api_key_env": "1KEY"}, "api_key_env", "capital letters"),
        ({"default_params": [1]}, "default_params", "JSON object"),
        ({"max_concurrency": 0}, "max_concurrency", "between 1 and 1024"),
        ({"kind": "grpc"}, "kind", "Unknown endpoint kind"),
    ]
    for changes, field, message in cases:
        kwargs = {"project": project, "name": "Other", "kind": "openai", "model": "m", "base_url": "http://x/v1",
                  **changes}
        with pytest.raises(ApplicationError) as info:
            services.endpoint_create(**kwargs)
        assert (info.value.field, message in info.value.message) == (field, True), (changes, info.value.message)
    bundled = services.endpoint_create(project=project, name="Local", kind="transformers", model="bundled")
    assert bundled.base_url == "" and bundled.api_key_env == ""


def test_update_refuses_a_stale_edit_and_delete_keeps_jobs():
    endpoint = EndpointFactory(model="a")
    values = {f: getattr(endpoint, f) for f in services.ENDPOINT_EDITABLE}
    services.endpoint_update(endpoint=endpoint, row_version=1, **{**values, "model": "b"})
    assert (endpoint.model, endpoint.row_version) == ("b", 2)
    with pytest.raises(ConflictError) as info:
        services.endpoint_update(endpoint=endpoint, row_version=1, **{**values, "model": "c"})
    assert info.value.extra["current"]["model"] == "b"
    job = GenerationJobFactory(project=endpoint.project, endpoint=endpoint)
    services.endpoint_delete(endpoint=endpoint)
    job.refresh_from_db()
    assert job.endpoint is None and GenerationJob.objects.filter(pk=job.pk).exists()


def test_connection_check_success_sends_one_short_request_with_the_key(openai_server, monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_API_KEY", "secret-value")
    endpoint = EndpointFactory(base_url=url(openai_server, "ok"), model="judge-7b", api_key_env="JUDGE_TEST_API_KEY",
                               default_params={"temperature": 0.3, "max_tokens": 2048})
    openai_server.requests.clear()
    check = services.endpoint_connection_check(endpoint=endpoint)
    assert check.ok and check.reply == "pong <script>alert(1)</script>" and check.latency_ms > 0
    [request] = openai_server.requests
    assert request["path"] == "/ok/v1/chat/completions"
    assert request["auth"] == "Bearer secret-value"
    assert request["body"]["model"] == "judge-7b" and request["body"]["temperature"] == 0.3
    assert request["body"]["max_tokens"] == services.PING_MAX_TOKENS


@pytest.mark.parametrize(("scenario", "expected"), [
    ("unauthorized", "The server refused the credentials (HTTP 401: Incorrect API key provided). Check $NO_SUCH_API_KEY."),
    ("missing", "Not found (HTTP 404: The model `nope` does not exist). Check the base URL"),
    ("broken", "HTTP 500: Internal Server Error"),
    ("html", "The server answered, but not with an OpenAI chat completion: malformed JSON body"),
    ("nochoices", "The server answered, but not with an OpenAI chat completion: response has no choices"),
    ("slow", "No answer within 0.5 s."),
])
def test_connection_check_errors_are_readable(openai_server, scenario, expected):
    endpoint = EndpointFactory(base_url=url(openai_server, scenario), api_key_env="NO_SUCH_API_KEY")
    openai_server.requests.clear()
    started = time.monotonic()
    check = services.endpoint_connection_check(endpoint=endpoint, timeout_s=0.5)
    assert not check.ok and check.message.startswith(expected), check.message
    assert check.notes and "$NO_SUCH_API_KEY is not set" in check.notes[0]
    assert len(openai_server.requests) == 1 and time.monotonic() - started < 1.4  # one call, no retries


def test_connection_refused_and_vllm_kind():
    endpoint = EndpointFactory(base_url=f"http://127.0.0.1:{closed_port()}/v1", api_key_env="")
    check = services.endpoint_connection_check(endpoint=endpoint, timeout_s=2)
    assert not check.ok and check.message.startswith(f"Could not connect to {endpoint.base_url}")
    assert not check.notes
    vllm = EndpointFactory(kind="vllm", base_url="")
    assert "inside a generation job" in services.endpoint_connection_check(endpoint=vllm).message


# --- views ------------------------------------------------------------------------------------------------------


def test_create_edit_and_stale_edit_pages(client, project):
    response = client.post(reverse("endpoints:create", args=[project.pk]), form_data(api_key_env="sk-live-abcdef1234567890"))
    assert response.status_code == 400
    assert "looks like an API key" in response.context["form"].errors["api_key_env"][0]
    assert "sk-live-abcdef1234567890" not in ModelEndpoint.objects.values_list("api_key_env", flat=True)
    response = client.post(reverse("endpoints:create", args=[project.pk]), form_data())
    endpoint = ModelEndpoint.objects.get(project=project, name="Judge")
    assert response["Location"] == reverse("endpoints:edit", args=[project.pk, endpoint.pk])
    assert endpoint.default_params == {"temperature": 0.2} and endpoint.tokens_per_minute == 60000
    assert endpoint.requests_per_minute is None and endpoint.supports_structured_output

    edit = reverse("endpoints:edit", args=[project.pk, endpoint.pk])
    page = client.get(edit).content.decode()
    assert "Test connection" in page and "OPENAI_API_KEY" in page
    assert client.post(edit, form_data(model="m2", row_version=1)).status_code == 302
    stale = client.post(edit, form_data(model="m3", row_version=1))
    assert stale.status_code == 409 and "Someone saved this endpoint" in stale.content.decode()
    assert "m2" in stale.content.decode() and ModelEndpoint.objects.get(pk=endpoint.pk).model == "m2"
    list_page = client.get(reverse("endpoints:list", args=[project.pk])).content.decode()
    assert "60000 tok/min" in list_page and "$OPENAI_API_KEY" in list_page
    assert client.post(reverse("endpoints:delete", args=[project.pk, endpoint.pk])).status_code == 302
    assert not ModelEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_test_connection_button_queues_a_check_and_polls_its_result(client, project, openai_server):
    endpoint = EndpointFactory(project=project, base_url=url(openai_server, "ok"))
    test_url = reverse("endpoints:test", args=[project.pk, endpoint.pk])
    openai_server.requests.clear()
    html = client.post(test_url, **HTMX).content.decode()
    check = EndpointCheck.objects.get(endpoint=endpoint)
    poll = reverse("endpoints:check", args=[project.pk, endpoint.pk, check.pk])
    assert html.lstrip().startswith('<div id="connection-result"') and f'hx-get="{poll}"' in html
    assert check.status == JobStatus.PENDING and not openai_server.requests  # the request made no call
    services.endpoint_check_run(check_id=check.pk)  # what the rollout worker runs
    services.endpoint_check_run(check_id=check.pk)  # a redelivered message makes no second call
    assert len(openai_server.requests) == 1
    html = client.get(poll, **HTMX).content.decode()
    assert " ms</strong>" in html and "hx-get" not in html
    assert "pong &lt;script&gt;" in html and "<script>alert" not in html
    failing = EndpointFactory(project=project, base_url=url(openai_server, "unauthorized"))
    client.post(reverse("endpoints:test", args=[project.pk, failing.pk]), **HTMX)
    failed = EndpointCheck.objects.get(endpoint=failing)
    services.endpoint_check_run(check_id=failed.pk)
    response = client.get(reverse("endpoints:check", args=[project.pk, failing.pk, failed.pk]), **HTMX)
    assert response.status_code == 200 and "refused the credentials" in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == JobStatus.FAILED and not failed.ok
    # without JavaScript the button posts a form and lands on the endpoint page showing that check
    response = client.post(test_url)
    latest = EndpointCheck.objects.filter(endpoint=endpoint).latest("pk")
    assert response["Location"] == reverse("endpoints:edit", args=[project.pk, endpoint.pk]) + f"?check={latest.pk}"
    assert "Calling the model on a worker" in client.get(response["Location"]).content.decode()


def test_keys_are_never_stored_or_shown(client, project, openai_server, monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_API_KEY", "sk-secret-value-123")
    endpoint = EndpointFactory(project=project, base_url=url(openai_server, "ok"), api_key_env="JUDGE_TEST_API_KEY")
    client.post(reverse("endpoints:test", args=[project.pk, endpoint.pk]), **HTMX)
    check = EndpointCheck.objects.get()
    services.endpoint_check_run(check_id=check.pk)
    html = client.get(reverse("endpoints:check", args=[project.pk, endpoint.pk, check.pk])).content.decode()
    page = client.get(reverse("endpoints:edit", args=[project.pk, endpoint.pk]) + f"?check={check.pk}")
    assert openai_server.requests[-1]["auth"] == "Bearer sk-secret-value-123"
    stored = json.dumps(list(EndpointCheck.objects.values()), default=str)
    for text in (html, page.content.decode(), stored):
        assert "sk-secret-value-123" not in text


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ANNOTATOR])
def test_readers_cannot_change_or_call_endpoints(client, make_member, role, openai_server):
    user, project = make_member(role)
    endpoint = EndpointFactory(project=project, base_url=url(openai_server, "ok"))
    client.force_login(user)
    page = client.get(reverse("endpoints:list", args=[project.pk])).content.decode()
    assert "New endpoint" not in page and endpoint.name in page
    openai_server.requests.clear()
    for name, args in [("endpoints:create", [project.pk]), ("endpoints:edit", [project.pk, endpoint.pk]),
                       ("endpoints:delete", [project.pk, endpoint.pk]), ("endpoints:test", [project.pk, endpoint.pk])]:
        assert client.post(reverse(name, args=args), form_data()).status_code == 403, name
    assert client.get(reverse("endpoints:edit", args=[project.pk, endpoint.pk])).status_code == 403
    assert not openai_server.requests and ModelEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_other_projects_endpoints_are_404(client, project, openai_server):
    theirs = EndpointFactory(base_url=url(openai_server, "ok"))
    openai_server.requests.clear()
    for name in ("endpoints:edit", "endpoints:delete", "endpoints:test"):
        assert client.post(reverse(name, args=[project.pk, theirs.pk])).status_code == 404
        assert client.post(reverse(name, args=[theirs.project_id, theirs.pk])).status_code == 404
    assert not openai_server.requests and not EndpointCheck.objects.exists()
    mine = EndpointFactory(project=project)
    their_check = services.endpoint_check_start(endpoint=theirs, enqueue=False)
    assert client.get(reverse("endpoints:check", args=[project.pk, mine.pk, their_check.pk])).status_code == 404


def test_endpoint_list_query_count_is_constant(client, project, django_assert_max_num_queries):
    EndpointFactory.create_batch(2, project=project)
    client.get(reverse("endpoints:list", args=[project.pk]))
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        client.get(reverse("endpoints:list", args=[project.pk]))
    EndpointFactory.create_batch(20, project=project)
    with django_assert_max_num_queries(len(few)):
        client.get(reverse("endpoints:list", args=[project.pk]))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_bundled_transformers_model_answers_through_a_real_worker(client, make_member, bundled_model_dir,
                                                                   celery_worker_process):
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    endpoint = EndpointFactory(project=project, kind="transformers", model="bundled", base_url="")
    html = client.post(reverse("endpoints:test", args=[project.pk, endpoint.pk]), **HTMX).content.decode()
    assert "Calling the model on a worker" in html and "15–50 s" in html
    check = EndpointCheck.objects.get(endpoint=endpoint)
    deadline = time.monotonic() + 240
    while check.finished_at is None:
        assert time.monotonic() < deadline, celery_worker_process.log()
        time.sleep(0.5)
        check.refresh_from_db()
    html = client.get(reverse("endpoints:check", args=[project.pk, endpoint.pk, check.pk]), **HTMX).content.decode()
    assert check.ok and "Connected" in html and "model loaded in" in html, html


def test_a_check_whose_worker_died_fails_after_the_timeout(client, project, openai_server, settings):
    endpoint = EndpointFactory(project=project, base_url=url(openai_server, "ok"))
    client.post(reverse("endpoints:test", args=[project.pk, endpoint.pk]), **HTMX)
    check = EndpointCheck.objects.get(endpoint=endpoint)  # queued; no worker ever runs it
    poll = reverse("endpoints:check", args=[project.pk, endpoint.pk, check.pk])
    assert "hx-get" in client.get(poll, **HTMX).content.decode()
    settings.RUBRICON_TOOL_JOB_TIMEOUT_S = 0
    html = client.get(poll, **HTMX).content.decode()
    check.refresh_from_db()
    assert check.status == JobStatus.FAILED and "hx-get" not in html and "No answer after" in html


def test_judges_and_generation_retry_a_down_endpoint_after_the_configured_backoff(project, settings):
    """RUBRICON_ENDPOINT_RETRY_BACKOFF_S reaches the clients that judge and generate: five retries of a refused
    connection take at least 7.75 s at the default 0.5 s (each wait is half its doubling ceiling or more)."""
    import asyncio

    from training.generation.backends.base import create_backend
    from training.llm_client import LLMCallError
    from webapp.judging.judges import judge_for_endpoint
    from webapp.rollouts.engines import backend_config

    settings.RUBRICON_ENDPOINT_RETRY_BACKOFF_S = 0.01
    endpoint = EndpointFactory(project=project, base_url="http://127.0.0.1:9/v1")  # nothing listens there

    async def call(client) -> LLMCallError:
        try:
            with pytest.raises(LLMCallError) as failure:
                await client.chat([{"role": "user", "content": "hi"}], max_tokens=4)
        finally:
            await client.aclose()
        return failure.value

    backend = create_backend(backend_config(endpoint))
    try:
        for client in (judge_for_endpoint(endpoint, cached=False).client, backend.client):
            started = time.monotonic()
            failure = asyncio.run(call(client))
            assert failure.attempts == 6 and time.monotonic() - started < 5
    finally:
        backend.close()
