"""A generation job through real workers: kill -9 the worker mid-job, start another, and every rollout
exists exactly once."""

from __future__ import annotations

import time

import pytest
import redis

from tests.factories import EndpointFactory, ExampleFactory, TaskFactory
from training.judges.stub_server import StubChatServer
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


def test_generation_survives_a_killed_worker_without_lost_or_duplicate_rollouts(start_worker, settings):
    broker = "redis://127.0.0.1:6379/6"  # private queues: no other worker may help this job along
    redis.Redis.from_url(broker).flushdb()
    task = TaskFactory()
    for i in range(6):
        ExampleFactory(task=task, external_id=f"e{i}", prompt=f"What is {i} * 2?", answer=str(2 * i))
    with StubChatServer(lambda body, i: "<answer>0</answer>", latency_s=1.0) as server:
        endpoint = EndpointFactory(project=task.project, base_url=server.base_url, max_concurrency=1)
        job = services.generation_job_create(project=task.project, task=task, endpoint=endpoint,
                                             params={"max_tokens": 8}, samples_per_example=2, enqueue=False)
        settings.RUBRICON_GENERATION_CHUNK_SIZE = 1
        assert len(services.generation_job_plan(job_id=job.pk)) == 6  # workers pick chunks up when they start
        env = {"CELERY_BROKER_URL": broker}

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
