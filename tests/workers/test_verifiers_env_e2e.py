"""A verifiers 0.4 environment run from Rubricon: a task backed by a verifiers taskset plugin, a generation job run
by a real Celery worker with verifiers' own episode loop against the bundled model served by vLLM on CPU, the episodes
stored as rollouts with trajectories and the environment's rewards, opened in the rollout browser and the labeling page.

Two ways to reach the model, one test each: an OpenAI-compatible endpoint (vLLM's server, `vllm_server`), and the local
bundled-model endpoint, for which the worker itself starts vLLM's server for the job, stops it when the job ends, and
loses it with its parent when the worker is killed.

The taskset is `rubricon_wordle` (Wordle with textarena Wordle-v0's rules, offline). textarena's own Wordle-v0 loads
nltk's `words` corpus (`corpora/words/en`, `en-basic`) and the `averaged_perceptron_tagger_eng` tagger, which nltk
downloads at run time, and its dictionary calls `nltk.download("words")` on every game, which fetches nltk's index
from the network even when the data is there; no package registry reached here ships those files (what was searched:
docs/architecture.md, "verifiers environments run from Rubricon"), so it cannot run on a machine without network."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from django.urls import reverse

from tests.factories import (
    EndpointFactory,
    MembershipFactory,
    ProjectFactory,
    RubricFactory,
    RubricVersionFactory,
    UserFactory,
)
from tests.support import vllm_servers
from tests.support.requires import installed
from webapp.core.models import JobStatus, Role
from webapp.endpoints.models import EndpointKind
from webapp.exports.verifiers_tasks import verifiers_task_create
from webapp.reviews.services import review_queue_create
from webapp.rollouts.models import GenerationJob, Rollout
from webapp.rollouts.services import generation_job_cancel, generation_job_create

pytestmark = installed("verifiers.v1", "vllm")


def _finished(job: GenerationJob, worker, *, timeout: float) -> GenerationJob:
    deadline = time.monotonic() + timeout
    while (job := GenerationJob.objects.get(pk=job.pk)).status not in JobStatus.finished():
        assert time.monotonic() < deadline, worker.log()
        time.sleep(1)
    assert job.status == JobStatus.SUCCEEDED, (job.error, worker.log())
    return job


def _episodes_landed(job: GenerationJob, *, tasks: int, samples: int) -> list[Rollout]:
    """The job's episodes are rollouts in Postgres: one group per task, with the trajectory and the env's reward."""
    rollouts = list(Rollout.objects.filter(job=job).order_by("group_key", "sample_index"))
    assert len(rollouts) == tasks * samples and job.done == tasks * samples
    for rollout in rollouts:
        roles = [m["role"] for m in rollout.messages]
        assert roles[:2] == ["system", "user"] and "assistant" in roles, rollout.messages  # the trajectory
        assert "Wordle" in rollout.messages[1]["content"]
        scores = rollout.metadata["external_scores"]["verifiers"]
        assert set(scores["rewards"]) == {"game_reward"}  # the environment's reward, not our rubric total
        assert 0.0 <= scores["rewards"]["game_reward"]["score"] <= 1.0 and scores["reward"] is not None
        assert rollout.completion == [m for m in rollout.messages if m["role"] == "assistant"][-1]["content"]
    assert {r.sample_index for r in rollouts} == set(range(samples)) and len({r.group_key for r in rollouts}) == tasks
    return rollouts


def _run_on(broker: str, job: GenerationJob) -> None:
    from workers.celery import app

    with app.connection_for_write(broker) as connection:
        app.send_task("workers.generation.start_generation_job", kwargs={"job_id": job.pk}, queue="rollout",
                      connection=connection)


@pytest.mark.vllm_engine
@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.django_db(transaction=True)
def test_wordle_job_through_verifiers_lands_and_opens(vllm_server, start_worker, private_broker, client):
    project = ProjectFactory()
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=Role.OWNER)
    task = verifiers_task_create(project=project, name="wordle via verifiers", taskset={"id": "rubricon_wordle"},
                                 count=2, max_turns=2)
    assert task.examples.count() == 2
    endpoint = EndpointFactory(project=project, base_url=vllm_server.base_url, model=vllm_server.model,
                               max_concurrency=4)
    job = generation_job_create(project=project, task=task, endpoint=endpoint, samples_per_example=2,
                                params={"max_tokens": 24, "temperature": 1.0}, enqueue=False)
    worker = start_worker("verifiers", {"CELERY_BROKER_URL": private_broker}, concurrency=1)
    _run_on(private_broker, job)
    job = _finished(job, worker, timeout=900)
    rollouts = _episodes_landed(job, tasks=2, samples=2)

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


@pytest.mark.vllm_engine
@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.django_db(transaction=True)
def test_local_bundled_endpoint_is_served_by_the_worker_for_the_job(start_worker, private_broker, settings):
    """The local bundled-model endpoint: the worker starts vLLM's OpenAI-compatible server for it, verifiers' loop
    plays against it, the episodes land; the server is gone when the job ends, and when the worker is killed."""
    project = ProjectFactory()
    task = verifiers_task_create(project=project, name="wordle on the bundled model", count=4, max_turns=2,
                                 taskset={"id": "rubricon_wordle"})
    local = EndpointFactory(project=project, kind=EndpointKind.VLLM, base_url="", model="bundled", max_concurrency=4)
    worker = start_worker("verifiers-local", {"CELERY_BROKER_URL": private_broker}, concurrency=1)
    log = settings.VAR_DIR / "logs" / f"vllm-server-{worker.process.pid}.log"
    job = generation_job_create(project=project, task=task, endpoint=local, samples_per_example=2, example_count=2,
                                params={"max_tokens": 24, "temperature": 1.0}, enqueue=False)
    _run_on(private_broker, job)
    started = time.monotonic()
    while not (servers := vllm_servers.server_pids(parent=worker.process.pid)):
        now = GenerationJob.objects.get(pk=job.pk)
        assert time.monotonic() - started < 300 and now.status not in JobStatus.finished(), (now.error, worker.log())
        time.sleep(0.5)
    job = _finished(job, worker, timeout=900)
    rollouts = _episodes_landed(job, tasks=2, samples=2)
    assert {r.model_name for r in rollouts} == {"bundled"}
    assert "/v1/chat/completions" in log.read_text(errors="replace")  # verifiers' calls reached the worker's server
    vllm_servers.wait_gone(servers, timeout=60)  # the job ended: its server with it
    assert not vllm_servers.server_pids(parent=worker.process.pid)

    # A second job; once its server answers, the worker dies by SIGKILL and its server must not outlive it.
    longer = generation_job_create(project=project, task=task, endpoint=local, samples_per_example=2,
                                   params={"max_tokens": 200, "temperature": 1.0}, enqueue=False)
    _run_on(private_broker, longer)
    started = time.monotonic()
    while True:
        assert time.monotonic() - started < 400, (GenerationJob.objects.get(pk=longer.pk).error, worker.log())
        servers = vllm_servers.server_pids(parent=worker.process.pid)
        if servers:
            try:
                url = f"http://127.0.0.1:{vllm_servers.server_port(servers[0])}/v1/models"
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except (httpx.HTTPError, OSError, ValueError):
                pass
        time.sleep(0.5)
    assert vllm_servers.session_members(servers)
    os.kill(worker.process.pid, signal.SIGKILL)  # the worker process alone, as the kernel's OOM killer would
    worker.process.wait(timeout=30)
    vllm_servers.wait_gone(servers, timeout=90)
    worker.kill()  # whatever else the worker left in its own session (verifiers' harness programs)
    generation_job_cancel(job=longer)  # no other worker of this test session picks up its lapsed chunk
