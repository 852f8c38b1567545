"""A verifiers 0.4 environment run from Rubricon: a task backed by a verifiers taskset plugin, a generation job run
by a real Celery worker with verifiers' own episode loop against the bundled model served by vLLM on CPU (its
OpenAI-compatible server), the episodes stored as rollouts with trajectories and the environment's rewards, opened
in the rollout browser and the labeling page.

The taskset is `rubricon_wordle` (Wordle with textarena Wordle-v0's rules, offline): textarena's own Wordle-v0 needs
nltk's `words` corpus and POS tagger, which nltk downloads at run time and no package index ships, so it cannot run
on a machine without network."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.urls import reverse

from tests.conftest import REPO_ROOT
from tests.factories import (
    EndpointFactory,
    MembershipFactory,
    ProjectFactory,
    RubricFactory,
    RubricVersionFactory,
    UserFactory,
)
from webapp.core.models import JobStatus, Role
from webapp.exports.verifiers_tasks import verifiers_task_create
from webapp.reviews.services import review_queue_create
from webapp.rollouts.models import GenerationJob, Rollout
from webapp.rollouts.services import generation_job_create

pytest.importorskip("verifiers.v1")
pytest.importorskip("vllm")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def vllm_http(bundled_model_dir: Path, tmp_path_factory):
    """`vllm.entrypoints.openai.api_server` serving the bundled model on CPU."""
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(bundled_model_dir),
               "--served-model-name", "bundled", "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
               "--max-model-len", "2048", "--dtype", "float32"]
    env = {**__import__("os").environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 420
        while True:
            if process.poll() is not None:
                pytest.fail(f"vLLM server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server did not answer within 420 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.django_db(transaction=True)
def test_wordle_job_through_verifiers_lands_and_opens(vllm_http, start_worker, private_broker, client):
    from workers.celery import app

    project = ProjectFactory()
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=Role.OWNER)
    task = verifiers_task_create(project=project, name="wordle via verifiers", taskset={"id": "rubricon_wordle"},
                                 count=2, max_turns=2)
    assert task.examples.count() == 2
    endpoint = EndpointFactory(project=project, base_url=vllm_http, model="bundled", max_concurrency=4)
    job = generation_job_create(project=project, task=task, endpoint=endpoint, samples_per_example=2,
                                params={"max_tokens": 24, "temperature": 1.0}, enqueue=False)
    worker = start_worker("verifiers", {"CELERY_BROKER_URL": private_broker}, concurrency=1)
    with app.connection_for_write(private_broker) as connection:
        app.send_task("workers.generation.start_generation_job", kwargs={"job_id": job.pk}, queue="rollout",
                      connection=connection)
    deadline = time.monotonic() + 900
    while (job := GenerationJob.objects.get(pk=job.pk)).status not in JobStatus.finished():
        assert time.monotonic() < deadline, worker.log()
        time.sleep(1)
    assert job.status == JobStatus.SUCCEEDED, (job.error, worker.log())
    rollouts = list(Rollout.objects.filter(job=job).order_by("group_key", "sample_index"))
    assert len(rollouts) == 4 and job.done == 4
    for rollout in rollouts:
        roles = [m["role"] for m in rollout.messages]
        assert roles[:2] == ["system", "user"] and "assistant" in roles, rollout.messages  # the trajectory
        assert "Wordle" in rollout.messages[1]["content"]
        scores = rollout.metadata["external_scores"]["verifiers"]
        assert set(scores["rewards"]) == {"game_reward"}  # the environment's reward, not our rubric total
        assert 0.0 <= scores["rewards"]["game_reward"]["score"] <= 1.0 and scores["reward"] is not None
        assert rollout.completion == [m for m in rollout.messages if m["role"] == "assistant"][-1]["content"]
    assert {r.sample_index for r in rollouts} == {0, 1} and len({r.group_key for r in rollouts}) == 2

    client.force_login(user)
    detail = client.get(reverse("rollouts:detail", args=[project.pk, rollouts[0].pk]))
    assert detail.status_code == 200 and b"Wordle" in detail.content
    version = RubricVersionFactory(rubric=RubricFactory(project=project, task=task), number=1, spec={"criteria": [
        {"key": "good", "title": "Good play", "kind": "judge", "question": "Is the guess sensible?",
        "choices": [{"label": "no"}, {"label": "yes"}]}]})
    queue = review_queue_create(project=project, name="wordle", rubric_version=version, selection={"job": job.pk},
                                size=4, created_by=user)
    page = client.get(reverse("reviews:next", args=[project.pk, queue.pk]), follow=True)  # reserves an item
    assert page.status_code == 200 and b"Good play" in page.content
    shown = page.context["item"].rollout
    assert shown.job_id == job.pk
    from django.utils.html import escape

    said = [m["content"].strip() for m in shown.messages if m["role"] == "assistant" and (m["content"] or "").strip()]
    if said:  # the model's first move is on the page (a 135M model may also answer nothing at all)
        assert escape(said[0].splitlines()[0][:30]).encode() in page.content
