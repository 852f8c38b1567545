"""A generation job through real workers: kill -9 the worker mid-job, start another, and every rollout
exists exactly once."""

from __future__ import annotations

import time

import pytest

from tests.factories import EndpointFactory, ExampleFactory, TaskFactory
from tests.support.judge_server import StubChatServer
from webapp.core.models import JobStatus
from webapp.rollouts import services
from webapp.rollouts.models import GenerationJob, Rollout

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def wait_for(job: GenerationJob, until, *, timeout: float, log) -> GenerationJob:
    deadline = time.monotonic() + timeout
    while True:
        job.refresh_from_db()
        if until(job):
            return job
        assert time.monotonic() < deadline, f"job at {job.status} {job.done}/{job.total}\n{log()}"
        time.sleep(0.3)


def test_generation_survives_a_killed_worker_without_lost_or_duplicate_rollouts(start_worker, settings,
                                                                                private_broker):
    broker = private_broker  # private queues: no other worker may help this job along
    task = TaskFactory()
    for i in range(6):
        ExampleFactory(task=task, external_id=f"e{i}", prompt=f"What is {i} * 2?", answer=str(2 * i))
    with StubChatServer(lambda body, i: "<answer>0</answer>", latency_s=1.0) as server:
        endpoint = EndpointFactory(project=task.project, base_url=server.base_url, max_concurrency=1)
        job = services.generation_job_create(project=task.project, task=task, endpoint=endpoint,
                                             params={"max_tokens": 8}, samples_per_example=2, enqueue=False)
        settings.RUBRICON_GENERATION_CHUNK_ROLLOUTS = 2  # one example (2 samples) per chunk
        assert len(services.generation_job_plan(job_id=job.pk)) == 6  # workers pick chunks up when they start
        env = {"CELERY_BROKER_URL": broker, "RUBRICON_JOB_LEASE_S": "2"}  # the killed worker's chunk lapses in 2 s

        first = start_worker("doomed-gen", env)
        wait_for(job, lambda j: j.done >= 2, timeout=120, log=first.log)
        first.kill()
        job.refresh_from_db()
        assert job.status == JobStatus.RUNNING and job.done < 12

        second = start_worker("rescuer-gen", env)
        job = wait_for(job, lambda j: j.status in JobStatus.finished(), timeout=120, log=second.log)
    assert job.status == JobStatus.SUCCEEDED and job.done == job.total == 12 and job.failed_count == 0
    rollouts = Rollout.objects.filter(job=job)
    assert rollouts.count() == 12
    assert set(rollouts.values_list("example__external_id", "sample_index")) == {
        (f"e{i}", s) for i in range(6) for s in range(2)
    }


@pytest.mark.vllm_engine
def test_a_stopped_worker_leaves_no_vllm_engine_process_behind(start_worker, bundled_model_dir, private_broker):
    """A warm shutdown of a worker whose cached vLLM engine generated: the worker exits promptly and nothing it started
    outlives it. Before the engine was closed on shutdown, the worker hung at exit joining the engine's process until
    it was SIGKILLed, leaving the engine core orphaned (holding its memory, or a GPU). Checked on every process of the
    worker's session, whichever processes the engine started (on CPU it runs in the worker's own)."""
    from tests.support.vllm_servers import session_members

    pytest.importorskip("vllm")
    from webapp.endpoints.models import EndpointKind

    broker = private_broker
    task = TaskFactory()
    ExampleFactory(task=task, external_id="e0", prompt="Say hi.")
    endpoint = EndpointFactory(project=task.project, kind=EndpointKind.VLLM, model=str(bundled_model_dir), base_url="")
    job = services.generation_job_create(project=task.project, task=task, endpoint=endpoint,
                                         params={"max_tokens": 4}, samples_per_example=2, enqueue=False)
    services.generation_job_plan(job_id=job.pk)  # the worker picks the planned chunk up when it starts
    worker = start_worker("vllm-gen", {"CELERY_BROKER_URL": broker, "VLLM_CPU_KVCACHE_SPACE": "1"})
    job = wait_for(job, lambda j: j.status in JobStatus.finished(), timeout=300, log=worker.log)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert worker.process.pid in session_members([worker.process.pid])
    started = time.monotonic()
    worker.process.terminate()  # warm shutdown, as `docker compose stop` or systemd would ask
    worker.process.wait(timeout=120)
    assert time.monotonic() - started < 60, worker.log()
    while left := session_members([worker.process.pid]):
        assert time.monotonic() - started < 90, f"left behind: {left}\n{worker.log()}"
        time.sleep(0.5)
