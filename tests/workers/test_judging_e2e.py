"""Judge jobs end to end: web → Redis → a real Celery worker → Postgres, with the bundled model as judge;
and a worker killed mid-job (kill -9) whose job a restarted worker finishes with nothing lost or doubled."""

from __future__ import annotations

import time

import pytest
import redis

from tests.factories import (
    EndpointFactory,
    ExampleFactory,
    RolloutFactory,
    RubricFactory,
    RubricVersionFactory,
    TaskFactory,
)
from training.judges.stub_server import StubChatServer
from webapp.core.models import JobStatus
from webapp.endpoints.models import EndpointKind
from webapp.judging import services
from webapp.judging.models import CriterionScore, JudgeJob, RolloutScore

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SPEC = {
    "criteria": [
        {"key": "correct", "title": "Correct", "kind": "match", "weight": 1.0, "extract": "answer_tag", "mode": "numeric"},
        {"key": "polite", "title": "Polite", "kind": "judge", "weight": 0.5, "question": "Is the answer polite?",
         "choices": [{"label": "no", "description": "rude"}, {"label": "yes", "description": "polite"}]},
    ]
}


def make_rollouts(n: int):
    task = TaskFactory()
    example = ExampleFactory(task=task, prompt="What is 2 + 2?", answer="4")
    rollouts = [RolloutFactory(project=task.project, task=task, example=example, group_key=f"g{i // 4}",
                               sample_index=i % 4, completion=f"Sure (take {i})! <answer>{3 + i % 2}</answer>") for i in range(n)]
    version = RubricVersionFactory(rubric=RubricFactory(project=task.project, task=task), spec=SPEC)
    return task.project, version, rollouts


def wait_for(job: JudgeJob, *, timeout: float, until=lambda j: j.status in JobStatus.finished(), log=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        job.refresh_from_db()
        if until(job):
            return job
        assert time.monotonic() < deadline, f"job stuck at {job.status} {job.done}/{job.total}\n{log()}"
        time.sleep(0.3)


def test_judge_job_runs_on_a_real_worker_with_the_bundled_model_as_judge(celery_worker_process, bundled_model_dir):
    project, version, rollouts = make_rollouts(2)
    endpoint = EndpointFactory(project=project, kind=EndpointKind.TRANSFORMERS, model="bundled", base_url="",
                               default_params={"max_tokens": 40})
    job = services.judge_job_create(project=project, rubric_version=version, endpoint=endpoint)
    job = wait_for(job, timeout=240, log=celery_worker_process.log)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.done == job.total == 2 and job.calls_made == 2
    for score in CriterionScore.objects.filter(job=job, criterion_key="polite"):
        # A 135M judge often answers off-format: then the score is null with the raw answer and a reason.
        assert score.raw_response
        assert score.score is not None or score.error
    correct = {s.rollout_id: s.score for s in CriterionScore.objects.filter(job=job, criterion_key="correct")}
    assert correct == {rollouts[0].pk: 0.0, rollouts[1].pk: 1.0}


def test_a_worker_killed_mid_job_is_resumed_by_the_next_worker_without_loss_or_duplicates(start_worker, settings):
    broker = "redis://127.0.0.1:6379/14"  # private queues: the session worker must not help this job along
    redis.Redis.from_url(broker).flushdb()
    project, version, rollouts = make_rollouts(12)
    with StubChatServer(latency_s=1.0) as server:
        endpoint = EndpointFactory(project=project, base_url=server.base_url, max_concurrency=1)
        job = services.judge_job_create(project=project, rubric_version=version, endpoint=endpoint, enqueue=False)
        settings.RUBRICON_JUDGE_CHUNK_SIZE = 2
        assert len(services.judge_job_plan(job_id=job.pk)) == 6  # running; workers pick the chunks up when they start
        env = {"CELERY_BROKER_URL": broker}

        first = start_worker("doomed", env)
        wait_for(job, timeout=120, until=lambda j: j.done >= 2, log=first.log)
        first.kill()
        job.refresh_from_db()
        assert job.status == JobStatus.RUNNING and job.done < 12

        second = start_worker("rescuer", env)
        job = wait_for(job, timeout=120, log=second.log)
    assert job.status == JobStatus.SUCCEEDED
    assert job.done == job.total == 12 and job.failed_count == 0
    assert RolloutScore.objects.filter(job=job).count() == 12
    assert CriterionScore.objects.filter(rubric_version=version).count() == 24
    assert set(RolloutScore.objects.filter(job=job).values_list("rollout_id", flat=True)) == {r.pk for r in rollouts}
