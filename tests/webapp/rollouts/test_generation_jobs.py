"""Generation jobs: real backends (an OpenAI-compatible HTTP server, the bundled model on transformers),
chunked idempotent writes, failures stored per rollout, cancel, and the shell command."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse

from tests.factories import EndpointFactory, ExampleFactory, TaskFactory
from tests.support.judge_server import Reply, StubChatServer
from webapp.core.errors import ApplicationError
from webapp.core.models import JobChunk, JobStatus, Role
from webapp.endpoints.models import EndpointKind
from webapp.rollouts import services
from webapp.rollouts.models import GenerationJob, Rollout


def run_inline(job: GenerationJob) -> GenerationJob:
    for index in services.generation_job_plan(job_id=job.pk):
        services.generation_chunk_run(job_id=job.pk, index=index)
    job.refresh_from_db()
    return job


@pytest.fixture
def task(db):
    task = TaskFactory(system_prompt="Answer in <answer></answer> tags.", prompt_template="Q: {{ prompt }}")
    for i in range(3):
        ExampleFactory(task=task, external_id=f"ex{i}", prompt=f"What is {i} + 1?", answer=str(i + 1))
    return task


@pytest.mark.django_db
def test_openai_backend_job_writes_groups_and_keeps_failures(task, settings):
    settings.RUBRICON_GENERATION_CHUNK_ROLLOUTS = 4  # 2 examples x 2 samples

    def responder(body, index):
        user = body["messages"][-1]["content"]
        if "2 + 1" in user:
            return Reply(status=400, body={"error": {"message": "maximum context length exceeded"}})
        return "<answer>" + user.split("What is ")[1].split(" +")[0] + "</answer> <script>alert(1)</script>"

    with StubChatServer(responder) as server:
        endpoint = EndpointFactory(project=task.project, base_url=server.base_url)
        job = services.generation_job_create(project=task.project, task=task, endpoint=endpoint,
                                             params={"temperature": 0.7, "max_tokens": 32}, samples_per_example=2,
                                             enqueue=False)
        job = run_inline(job)
        sent = server.bodies[0]
    assert job.status == JobStatus.SUCCEEDED and (job.done, job.total, job.failed_count) == (6, 6, 2)
    assert sent["messages"][0] == {"role": "system", "content": "Answer in <answer></answer> tags."}
    assert sent["messages"][1]["content"].startswith("Q: What is")
    rollouts = Rollout.objects.filter(job=job)
    assert rollouts.count() == 6 and rollouts.values("group_key").distinct().count() == 3
    ok = rollouts.filter(error="").first()
    assert ok.completion.startswith("<answer>") and ok.finish_reason == "stop" and ok.messages[-1]["role"] == "assistant"
    failed = rollouts.exclude(error="")
    assert failed.count() == 2 and all("context" in r.error for r in failed)
    # A chunk delivered again writes nothing twice.
    for chunk in JobChunk.objects.filter(kind="generation", job_id=job.pk):
        assert services.generation_chunk_run(job_id=job.pk, index=chunk.index) == 0
    assert Rollout.objects.filter(job=job).count() == 6


@pytest.mark.django_db
def test_bad_input_is_refused_before_any_work(task):
    endpoint = EndpointFactory(project=task.project)
    with pytest.raises(ApplicationError, match="temperature"):
        services.generation_job_create(project=task.project, task=task, endpoint=endpoint, params={"temperature": -1},
                                       enqueue=False)
    task.prompt_template = "{{ prompt "
    task.save()
    with pytest.raises(ApplicationError, match="Prompt template error"):
        services.generation_job_create(project=task.project, task=task, endpoint=endpoint, enqueue=False)
    empty = TaskFactory(project=task.project)
    with pytest.raises(ApplicationError, match="no examples"):
        services.generation_job_create(project=task.project, task=empty, endpoint=endpoint, enqueue=False)


@pytest.mark.django_db
def test_unknown_local_model_fails_the_job_with_a_reason(task, settings):
    endpoint = EndpointFactory(project=task.project, kind=EndpointKind.TRANSFORMERS, base_url="",
                               model=f"{settings.MODELS_DIR}/nonexistent-model")  # inside the models dir, but absent
    job = services.generation_job_create(project=task.project, task=task, endpoint=endpoint, enqueue=False)
    index = services.generation_job_plan(job_id=job.pk)[0]
    with pytest.raises(ApplicationError, match="does not exist"):
        services.generation_chunk_run(job_id=job.pk, index=index)


@pytest.mark.django_db
def test_endpoint_down_stores_every_rollout_failed(task, settings):
    settings.RUBRICON_ENDPOINT_RETRY_BACKOFF_S = 0.01  # the same 5 retries, not ~12 s of backoff
    endpoint = EndpointFactory(project=task.project, base_url="http://127.0.0.1:9/v1")  # nothing listens there
    job = run_inline(services.generation_job_create(project=task.project, task=task, endpoint=endpoint,
                                                    params={"max_tokens": 8}, enqueue=False))
    # Every item failed: the job failed (never a plain success over failed items), each rollout keeps its reason.
    assert job.status == JobStatus.FAILED and job.failed_count == job.total == 3 and "All 3 items failed" in job.error
    assert all(r.error for r in Rollout.objects.filter(job=job))


@pytest.mark.slow
@pytest.mark.django_db
def test_bundled_model_generates_a_group_through_the_command(task, bundled_model_dir, capsys):
    endpoint = EndpointFactory(project=task.project, kind=EndpointKind.TRANSFORMERS, model="bundled", base_url="")
    call_command("generate", "--task", str(task.pk), "--endpoint", str(endpoint.pk), "-n", "2", "--max-tokens", "12",
                 "--temperature", "0.8", "--seed", "1", "--inline")
    assert "succeeded" in capsys.readouterr().out
    rollouts = Rollout.objects.filter(task=task)
    assert rollouts.count() == 6 and not rollouts.exclude(error="").exists()
    assert all(r.completion_tokens and r.completion_tokens <= 12 for r in rollouts)


@pytest.mark.django_db
def test_job_pages_permissions_and_cancel(client, task, make_member):
    project = task.project
    viewer, _ = make_member(Role.VIEWER, project=project)
    editor, _ = make_member(Role.EDITOR, project=project)
    endpoint = EndpointFactory(project=project)
    data = {"task": task.pk, "endpoint": endpoint.pk, "samples_per_example": 2, "temperature": 0.8,
            "max_tokens": 16, "top_p": 1}
    client.force_login(viewer)
    assert client.post(reverse("rollouts:job_create", args=[project.pk]), data).status_code == 403
    client.force_login(editor)
    bad = client.post(reverse("rollouts:job_create", args=[project.pk]), {**data, "temperature": 0.0})
    assert bad.status_code == 400 and b"temperature" in bad.content  # n > 1 needs sampling
    response = client.post(reverse("rollouts:job_create", args=[project.pk]), data)
    job = GenerationJob.objects.get()
    assert response.status_code == 302 and client.get(response["Location"]).status_code == 200
    assert client.post(reverse("rollouts:job_cancel", args=[project.pk, job.pk])).status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert client.get(reverse("rollouts:jobs", args=[project.pk])).status_code == 200


@pytest.mark.django_db
def test_the_form_samples_n_examples_of_a_split_seeded_and_the_job_shows_it(client, make_member):
    editor, project = make_member(Role.EDITOR)
    client.force_login(editor)
    task = TaskFactory(project=project)
    train = [ExampleFactory(task=task, prompt=f"train {i}").pk for i in range(12)]
    for i in range(3):
        ExampleFactory(task=task, prompt=f"eval {i}", split="eval")
    endpoint = EndpointFactory(project=project, base_url="http://127.0.0.1:9/v1")
    data = {"task": task.pk, "endpoint": endpoint.pk, "split": "train", "samples_per_example": 2, "temperature": 0.8,
            "max_tokens": 8, "top_p": 1, "example_count": 4, "example_seed": 7}
    assert b"Example seed" in client.get(reverse("rollouts:jobs", args=[project.pk])).content
    response = client.post(reverse("rollouts:job_create", args=[project.pk]), data)
    assert response.status_code == 302
    job = GenerationJob.objects.get()
    assert (job.example_count, job.example_seed) == (4, 7)
    assert "a sample of 4 examples (seed 7)" in client.get(response["Location"]).content.decode()

    chunks = services.generation_job_plan(job_id=job.pk)
    planned = sorted(i for c in JobChunk.objects.filter(kind="generation", job_id=job.pk, index__in=chunks) for i in c.item_ids)
    job.refresh_from_db()
    assert len(planned) == 4 and set(planned) <= set(train) and job.total == 8
    # The same seed gives the same sample, another seed (almost surely) another; more than there are: all of them.
    same = services.generation_example_ids(task=task, split="train", count=4, seed=7)
    assert same == planned
    assert services.generation_example_ids(task=task, split="train", count=4, seed=8) != same
    assert services.generation_example_ids(task=task, split="train", count=50, seed=7) == sorted(train)

    bad = client.post(reverse("rollouts:job_create", args=[project.pk]), {**data, "example_count": 0})
    assert bad.status_code == 400 and GenerationJob.objects.count() == 1
