"""GRPO runs end to end: launch form → Redis → a real Celery worker → `python -m training.grpo.run` (real TRL on
CPU, a tiny model built from the bundled model's config) → metrics, rollouts and rewards in Postgres → run page.
Also: cancel from the UI stops the process within seconds and keeps its metrics; a training process killed with
kill -9 ends the run failed with the reason; a worker killed mid-run is replaced by one that re-attaches."""

from __future__ import annotations

import html
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
from django.urls import reverse

from tests.factories import EndpointFactory, ExampleFactory, RubricFactory, RubricVersionFactory, TaskFactory
from tests.training.grpo.conftest import tiny_model_dir  # noqa: F401  (session fixture shared with the GRPO tests)
from webapp.core.models import JobStatus, Role
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.judging.services import engine_rollout
from webapp.reviews.models import ReviewQueue
from webapp.rollouts.models import Rollout, RolloutSource
from webapp.runs import services
from webapp.runs.models import Checkpoint, CheckpointEvaluation, TrainingMetric, TrainingRun
from workers.celery import app
from workers.training import launch_run, reattach_runs

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SPEC = {
    "criteria": [
        {"key": "correct", "title": "Correct", "kind": "match", "weight": 1.0, "extract": "answer_tag",
         "mode": "numeric"},
        # Varies with the (random) completion length, so the stored rewards are not all zero.
        {"key": "short", "title": "Short", "kind": "length", "weight": 0.5, "unit": "chars", "max": 12, "slack": 40},
    ]
}


@pytest.fixture(autouse=True)
def _remove_run_directories():
    """Run directories live under settings.VAR_DIR, which the worker process shares with development."""
    yield
    for run_id in TrainingRun.objects.values_list("pk", flat=True):
        shutil.rmtree(services.run_dir(run_id), ignore_errors=True)


@pytest.fixture
def editor(make_member, client):
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    task = TaskFactory(project=project)
    for i in range(2):
        ExampleFactory(task=task, prompt=f"What is {i} + 2?", answer=str(i + 2))
    version = RubricVersionFactory(rubric=RubricFactory(project=project, task=task), spec=SPEC)
    return project, task, version


def launch(client, project, task, version, model_dir, **options) -> TrainingRun:
    data = {"preset": "cpu-smoke", "task": task.pk, "split": "train", "rubric_version": version.pk,
            "base_model": str(model_dir), "max_completion_length": 8, "max_steps": 2, "seed": 1, **options}
    response = client.post(reverse("runs:create", args=[project.pk]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    return TrainingRun.objects.filter(project=project).latest("pk")


def wait_for(run: TrainingRun, until, *, timeout: float, log=lambda: "") -> TrainingRun:
    deadline = time.monotonic() + timeout
    while True:
        run.refresh_from_db()
        if until(run):
            return run
        assert time.monotonic() < deadline, f"run stuck at {run.status}: {run.error}\n{log()}"
        time.sleep(0.2)


def finished(run: TrainingRun) -> bool:
    return run.status in JobStatus.finished()


def first_step_stored(run: TrainingRun) -> bool:
    return finished(run) or TrainingMetric.objects.filter(run=run).exists()


def test_runs_launched_from_the_form_train_stop_on_cancel_and_fail_when_killed(
    client, editor, celery_worker_process, tiny_model_dir  # noqa: F811
):
    """Three runs side by side (their processes import torch and TRL at the same time, which keeps the suite
    short): one trains its two steps, one is cancelled from the run page, one has its process killed."""
    project, task, version = editor
    run = launch(client, project, task, version, tiny_model_dir, name="two steps")
    to_cancel = launch(client, project, task, version, tiny_model_dir, name="cancelled", max_steps=500)
    to_kill = launch(client, project, task, version, tiny_model_dir, name="killed", max_steps=500)
    for started in (to_cancel, to_kill):
        wait_for(started, first_step_stored, timeout=240, log=celery_worker_process.log)
        assert started.status == JobStatus.RUNNING, started.error

    response = client.post(reverse("runs:cancel", args=[project.pk, to_cancel.pk]))
    assert response.status_code == 302
    cancelled_at = time.monotonic()
    os.kill(to_kill.pid, signal.SIGKILL)

    to_cancel = wait_for(to_cancel, finished, timeout=60, log=celery_worker_process.log)
    assert to_cancel.status == JobStatus.CANCELLED, to_cancel.error
    assert time.monotonic() - cancelled_at < 20
    assert 1 <= TrainingMetric.objects.filter(run=to_cancel).count() < 500
    with pytest.raises(ProcessLookupError):
        os.kill(to_cancel.pid, 0)

    to_kill = wait_for(to_kill, finished, timeout=30, log=celery_worker_process.log)
    assert to_kill.status == JobStatus.FAILED
    assert "killed by SIGKILL" in to_kill.error and "last log lines" in to_kill.error
    assert TrainingMetric.objects.filter(run=to_kill).exists()  # what it reported before dying is kept
    page = client.get(reverse("runs:detail", args=[project.pk, to_kill.pk])).content.decode()
    assert "killed by SIGKILL" in page

    run = wait_for(run, finished, timeout=240, log=celery_worker_process.log)
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.pid and run.hostname and run.heartbeat_at
    metrics = {m.step: m.metrics for m in TrainingMetric.objects.filter(run=run)}
    assert sorted(metrics) == [1, 2]
    assert {"reward", "rewards/correct/mean", "rewards/short/mean", "timing/step_s"} <= set(metrics[1])
    assert Checkpoint.objects.filter(run=run, path__endswith="final").exists()

    rollouts = list(Rollout.objects.filter(run=run).select_related("example").order_by("step", "sample_index"))
    assert len(rollouts) == 8  # 2 steps × 1 prompt × 4 generations
    assert {r.source for r in rollouts} == {RolloutSource.TRAINING} and {r.step for r in rollouts} == {1, 2}
    assert all(r.example is not None and r.prompt_messages for r in rollouts)

    # The rewards stored are the rubric engine's scores for the same completions.
    from training.rubrics.engine import RubricEngine
    from training.rubrics.spec import validate_spec

    engine = RubricEngine(validate_spec(SPEC))
    stored = {(s.rollout_id, s.criterion_key): s.score for s in
              CriterionScore.objects.filter(rollout__in=rollouts, judge_fingerprint="training-reward")}
    totals = dict(RolloutScore.objects.filter(rollout__in=rollouts).values_list("rollout_id", "total"))
    for rollout in rollouts:
        expected = engine.score(engine_rollout(rollout))
        for key in ("correct", "short"):
            assert stored[(rollout.pk, key)] == pytest.approx(expected.criteria[key].score)
        assert totals[rollout.pk] == pytest.approx(expected.total)
    # TRL's logged mean reward is the mean of the totals of the step's completions.
    step1 = [totals[r.pk] for r in rollouts if r.step == 1]
    assert metrics[1]["reward"] == pytest.approx(sum(step1) / len(step1), abs=1e-5)

    page = client.get(reverse("runs:detail", args=[project.pk, run.pk])).content.decode()
    assert "succeeded" in page and "<svg" in page and "polyline" in page
    last_step = [r for r in rollouts if r.step == 2]
    assert all(html.escape(r.completion) in page for r in last_step)  # model output is escaped, never markup
    listing = client.get(reverse("runs:list", args=[project.pk])).content.decode()
    assert f"#{run.pk}" in listing


def test_a_run_whose_worker_is_killed_is_picked_up_by_the_next_worker_and_finishes(
    client, editor, start_worker, tiny_model_dir, private_broker  # noqa: F811
):
    broker = private_broker  # private queues: the session worker must not pick this run up
    env = {"CELERY_BROKER_URL": broker}
    project, task, version = editor
    first = start_worker("doomed-trainer", env)
    run = services.training_run_create(
        project=project, name="survivor", task=task, rubric_version=version, preset="cpu-smoke",
        base_model=str(tiny_model_dir), options={"max_completion_length": 8, "max_steps": 3}, enqueue=False,
    )
    with app.connection_for_write(broker) as connection:
        launch_run.apply_async(kwargs={"run_id": run.pk}, connection=connection)
    run = wait_for(run, lambda r: r.pid is not None or finished(r), timeout=60, log=first.log)
    first.kill()  # kill -9 of the worker; the training process runs in its own session and lives on
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING
    os.kill(run.pid, 0)

    second = start_worker("rescuer-trainer", env)
    run = wait_for(run, finished, timeout=240, log=second.log)
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert sorted(TrainingMetric.objects.filter(run=run).values_list("step", flat=True)) == [1, 2, 3]


def test_a_run_whose_worker_and_process_are_gone_is_failed_as_worker_lost_when_a_worker_starts(editor, settings,
                                                                                                tmp_path):
    settings.VAR_DIR = tmp_path
    project, task, version = editor
    run = services.training_run_create(project=project, name="orphan", task=task, rubric_version=version,
                                       preset="cpu-smoke", enqueue=False)
    services.training_run_claim(run_id=run.pk)
    gone = subprocess.Popen(["true"])
    gone.wait()
    services.training_run_process_started(run_id=run.pk, pid=gone.pid, hostname=socket.gethostname())

    reattach_runs(socket.gethostname())  # what a starting worker does (worker_ready)
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and "worker lost" in run.error


def test_a_cancelled_run_is_resumed_from_the_ui_and_its_checkpoint_evaluated_against_the_base(
    client, editor, celery_worker_process, tiny_model_dir  # noqa: F811
):
    """Cancel leaves a resumable checkpoint; "Resume run" starts a linked run whose step count goes on from it;
    "Evaluate checkpoint" generates on the eval split with the base model and the checkpoint (rollout queue), judges
    both with the run's rubric (judge queue) and the run page shows base vs checkpoint per criterion."""
    project, task, version = editor
    for i in range(2):
        ExampleFactory(task=task, split="eval", prompt=f"What is {i} + 7?", answer=str(i + 7))
    parent = launch(client, project, task, version, tiny_model_dir, name="interrupted", max_steps=500)
    wait_for(parent, first_step_stored, timeout=240, log=celery_worker_process.log)
    client.post(reverse("runs:cancel", args=[project.pk, parent.pk]))
    parent = wait_for(parent, finished, timeout=60, log=celery_worker_process.log)
    assert parent.status == JobStatus.CANCELLED, parent.error
    stopped_at = max(TrainingMetric.objects.filter(run=parent).values_list("step", flat=True))
    checkpoint = Checkpoint.objects.get(run=parent, step=stopped_at)
    assert checkpoint.path.endswith(f"checkpoint-{stopped_at}")  # resumable: optimizer and trainer state

    response = client.post(reverse("runs:resume", args=[project.pk, parent.pk]),
                           {"checkpoint": checkpoint.pk, "max_steps": stopped_at + 2})
    assert response.status_code == 302
    # While the resumed run trains, the checkpoint it started from is evaluated against the base model.
    engine = EndpointFactory(project=project, name="local", kind="transformers", base_url="", model="bundled")
    response = client.post(reverse("runs:evaluate", args=[project.pk, parent.pk]),
                           {"checkpoint": checkpoint.pk, "endpoint": engine.pk, "samples_per_example": 2})
    assert response.status_code == 302

    child = TrainingRun.objects.get(resumed_from=checkpoint)
    child = wait_for(child, finished, timeout=240, log=celery_worker_process.log)
    assert child.status == JobStatus.SUCCEEDED, child.error
    assert list(TrainingMetric.objects.filter(run=child).values_list("step", flat=True)) == [
        stopped_at + 1, stopped_at + 2]
    assert set(Rollout.objects.filter(run=child).values_list("step", flat=True)) == {stopped_at + 1, stopped_at + 2}
    assert Checkpoint.objects.get(run=child, step=stopped_at + 2).path.endswith("final")

    evaluation = CheckpointEvaluation.objects.get(run=parent)
    deadline = time.monotonic() + 180
    while evaluation.status not in JobStatus.finished():
        assert time.monotonic() < deadline, f"evaluation stuck\n{celery_worker_process.log()}"
        time.sleep(0.5)
        evaluation.refresh_from_db()
    assert evaluation.status == JobStatus.SUCCEEDED, evaluation.error
    assert evaluation.base_job.model_name == str(tiny_model_dir)
    assert evaluation.checkpoint_job.model_name == checkpoint.path
    assert Rollout.objects.filter(job=evaluation.checkpoint_job, example__split="eval").count() == 4
    assert RolloutScore.objects.filter(rollout__job__in=[evaluation.base_job, evaluation.checkpoint_job],
                                       rubric_version=version, total__isnull=False).count() == 8
    page = client.get(reverse("runs:detail", args=[project.pk, parent.pk])).content.decode()
    assert f"Step {stopped_at} checkpoint vs base model" in page
    assert 'data-criterion="correct"' in page and 'data-criterion="total"' in page
    assert f"run #{child.pk}" in page  # continued by


JUDGE_SPEC = {
    "criteria": [
        {"key": "correct", "title": "Correct", "kind": "judge", "weight": 1.0, "use_reference": True,
         "question": "Is the completion's final answer the same as the reference answer?",
         "choices": [{"label": "no"}, {"label": "yes"}]},
        {"key": "short", "title": "Short", "kind": "length", "weight": 0.5, "unit": "chars", "max": 12, "slack": 40},
    ]
}


def test_a_rubric_with_an_lm_judge_criterion_trains_with_the_bundled_local_judge_as_reward(
    client, editor, celery_worker_process, tiny_model_dir  # noqa: F811
):
    """The core promise in embedded mode: the launch form accepts the bundled (local transformers) judge, the
    training process loads it itself, and the judge's verdicts are the rewards stored with the training rollouts —
    the same verdicts a judge job of that endpoint gives for the same completions."""
    project, task, _ = editor
    version = RubricVersionFactory(rubric=RubricFactory(project=project, task=task), spec=JUDGE_SPEC)
    judge = EndpointFactory(project=project, name="Bundled judge", kind="transformers", base_url="", model="bundled")
    # No human labels yet: the calibration gate asks for a confirmation and a note.
    run = launch(client, project, task, version, tiny_model_dir, name="judged", judge_endpoint=judge.pk,
                 calibration_override="on", calibration_note="smoke test of the local judge")
    assert run.config["local_judge"] == {"model": "bundled", "engine": "transformers", "max_new_tokens": 512,
                                         "temperature": 0.0, "enforce_eager": True, "start_timeout_s": 600.0}
    assert run.config["judge"] is None
    # "Send to review" before the run has any rollouts: the queue follows the run as it trains.
    response = client.post(reverse("runs:review", args=[project.pk, run.pk]), {"size": 4, "reviewers_per_item": 1})
    assert response.status_code == 302
    queue = ReviewQueue.objects.get(follow_run=run)
    run = wait_for(run, finished, timeout=300, log=celery_worker_process.log)
    assert run.status == JobStatus.SUCCEEDED, f"{run.error}\n{services.run_log_tail(run)}"

    metrics = {m.step: m.metrics for m in TrainingMetric.objects.filter(run=run)}
    assert sorted(metrics) == [1, 2]
    assert "rewards/correct/mean" in metrics[1] and "rewards/short/mean" in metrics[1]
    rollouts = list(Rollout.objects.filter(run=run).select_related("example").order_by("step", "sample_index"))
    assert len(rollouts) == 8
    stored = {s.rollout_id: s for s in CriterionScore.objects.filter(
        rollout__in=rollouts, criterion_key="correct", judge_fingerprint="training-reward")}
    assert len(stored) == 8 and all(s.score in (0.0, 1.0) for s in stored.values())

    # The same verdicts a judge job of this endpoint reaches for the same completions.
    import asyncio

    from training.rubrics.engine import RubricEngine
    from training.rubrics.spec import validate_spec
    from webapp.judging.judges import judge_for_endpoint

    engine = RubricEngine(validate_spec(JUDGE_SPEC), judge=judge_for_endpoint(judge, cached=False))
    for rollout in rollouts[:3]:
        expected = asyncio.run(engine.ascore(engine_rollout(rollout)))
        assert stored[rollout.pk].score == expected.criteria["correct"].score
    step1 = [s.score for r, s in ((r, stored[r.pk]) for r in rollouts) if r.step == 1]
    assert metrics[1]["rewards/correct/mean"] == pytest.approx(sum(step1) / len(step1), abs=1e-5)

    # The monitor sampled each step into the queue as it came: 2 per step (4 items over 2 steps).
    items = list(queue.items.order_by("position").select_related("rollout"))
    assert [i.rollout.step for i in items] == [1, 1, 2, 2] and all(i.rollout.run_id == run.pk for i in items)

