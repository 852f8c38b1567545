"""Ingest of a run's sink files: each line stored once, half-written lines wait, the final status decides."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import ExampleFactory, RubricVersionFactory, TaskFactory
from training.grpo.sinks import METRICS_FILE, JsonlSink, Sample
from webapp.core.models import JobStatus, Role
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.rollouts.models import Rollout, RolloutSource
from webapp.runs import services
from webapp.runs.models import Checkpoint, TrainingMetric


@pytest.fixture
def running(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    task = TaskFactory()
    example = ExampleFactory(task=task, prompt="What is 1 + 1?", answer="2")
    run = services.training_run_create(project=task.project, name="r", task=task, preset="cpu-smoke",
                                       rubric_version=RubricVersionFactory(rubric__project=task.project),
                                       enqueue=False)
    run = services.training_run_claim(run_id=run.pk)
    return run, example, JsonlSink(services.run_dir(run.pk))


def sample(example, index: int, text: str, score: float | None) -> Sample:
    return Sample(prompt=[{"role": "user", "content": "What is 1 + 1?"}], completion=text,
                  rewards_per_criterion={"correct": score}, total=score, group=0, sample_index=index,
                  example_id=str(example.pk))


def test_every_line_is_stored_once_and_a_half_written_line_waits(running):
    run, example, sink = running
    sink.metrics(1, {"reward": 0.5, "kl": float("nan")})
    sink.samples(1, [sample(example, 0, "<answer>2</answer>", 1.0), sample(example, 1, "<b>3</b>", 0.0),
                     sample(example, 2, "", None)])
    sink.checkpoint(1, "/out/checkpoint-1")
    with open(services.run_dir(run.pk) / METRICS_FILE, "a") as handle:
        handle.write('{"step": 2, "metr')  # the process is in the middle of writing this line

    first = services.training_run_ingest(run_id=run.pk, token=run.monitor_token)
    assert (first.metrics, first.rollouts, first.checkpoints) == (1, 3, 1)
    again = services.training_run_ingest(run_id=run.pk, token=run.monitor_token)
    assert (again.metrics, again.rollouts, again.checkpoints) == (0, 0, 0)
    assert services.training_run_ingest(run_id=run.pk, token="an old monitor chain") is None

    with open(services.run_dir(run.pk) / METRICS_FILE, "a") as handle:
        handle.write('ics": {"reward": 0.75}}\n')
    assert services.training_run_ingest(run_id=run.pk, token=run.monitor_token).metrics == 1

    assert list(TrainingMetric.objects.filter(run=run).values_list("step", "metrics")) == [
        (1, {"reward": 0.5, "kl": None}), (2, {"reward": 0.75})]
    rollouts = list(Rollout.objects.filter(run=run).order_by("sample_index"))
    assert [(r.source, r.step, r.example_id, r.completion) for r in rollouts] == [
        (RolloutSource.TRAINING, 1, example.pk, "<answer>2</answer>"), (RolloutSource.TRAINING, 1, example.pk, "<b>3</b>"),
        (RolloutSource.TRAINING, 1, example.pk, "")]
    assert len({r.group_key for r in rollouts}) == 1
    assert rollouts[0].messages[-1] == {"role": "assistant", "content": "<answer>2</answer>"}
    scores = dict(CriterionScore.objects.filter(rollout__run=run).values_list("rollout__sample_index", "score"))
    assert scores == {0: 1.0, 1: 0.0, 2: None}
    assert RolloutScore.objects.filter(rollout__run=run, judge_fingerprint="training-reward").count() == 3
    assert Checkpoint.objects.get(run=run).path == "/out/checkpoint-1"


@pytest.mark.parametrize(
    ("final", "cancelled", "exit_reason", "status", "error"),
    [
        ({"status": "completed", "steps": 2}, False, None, JobStatus.SUCCEEDED, ""),
        ({"status": "stopped"}, True, None, JobStatus.CANCELLED, ""),
        ({"status": "failed", "error": "ValueError: prompt too long", "phase": "setup"}, False, "exited with code 1",
         JobStatus.FAILED, "setup failed: ValueError: prompt too long"),
        (None, False, "was killed by SIGKILL", JobStatus.FAILED, "training process was killed by SIGKILL"),
    ],
)
def test_the_final_status_comes_from_status_json_or_how_the_process_ended(
    running, final, cancelled, exit_reason, status, error
):
    run, _, sink = running
    if final is not None:
        detail = dict(final)
        sink.finished(detail.pop("status"), detail)
    if cancelled:
        services.training_run_cancel(run=run)
    run = services.training_run_finish(run_id=run.pk, exit_reason=exit_reason)
    assert run.status == status and run.error.startswith(error) and run.finished_at is not None
    assert run.monitor_token == ""


def test_run_page_polls_only_its_live_part_and_compare_draws_runs_on_shared_axes(running, client, make_member):
    run, example, sink = running
    user, _ = make_member(Role.VIEWER, project=run.project)
    client.force_login(user)
    for step, reward in ((1, 0.2), (2, 0.4)):
        sink.metrics(step, {"reward": reward, "rewards/correct/mean": reward, "kl": 0.01 * step})
    services.training_run_ingest(run_id=run.pk)
    other = services.training_run_create(project=run.project, name="other", task=run.task, preset="cpu-smoke",
                                         rubric_version=run.rubric_version, enqueue=False)
    TrainingMetric.objects.create(run=other, step=1, metrics={"reward": 0.9})

    url = reverse("runs:detail", args=[run.project_id, run.pk])
    full = client.get(url).content.decode()
    assert 'hx-trigger="every 1s"' in full and "<h1>" in full and 'id="samples"' in full
    live = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert live.lstrip().startswith('<section id="live"') and "<h1>" not in live and live.count("<polyline") == 3

    compare = client.get(reverse("runs:compare", args=[run.project_id]), {"runs": [run.pk, other.pk]})
    reward_chart = compare.content.decode().split("<figcaption>")[1]
    assert reward_chart.count("<polyline") == 2 and f"#{run.pk} r" in reward_chart and f"#{other.pk} other" in reward_chart
