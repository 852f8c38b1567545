"""Evaluating a checkpoint: real generation with the base model and with the checkpoint (transformers on the tiny
model), both judged with the run's rubric version, base vs checkpoint per criterion; the base side is shared."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from django.urls import reverse

from tests.factories import EndpointFactory, ExampleFactory, RubricFactory, RubricVersionFactory, TaskFactory
from tests.training.grpo.conftest import tiny_model_dir  # noqa: F401  (session fixture)
from webapp.core.errors import ApplicationError
from webapp.core.jobs import job_chain_start
from webapp.core.models import JobChunk, JobStatus, Role
from webapp.judging import services as judging
from webapp.judging.models import JudgeJob, RolloutScore
from webapp.judging.services import engine_rollout
from webapp.rollouts import services as rollouts
from webapp.rollouts.models import GenerationJob, Rollout
from webapp.runs import selectors, services
from webapp.runs.models import Checkpoint, CheckpointEvaluation

SPEC = {
    "criteria": [
        {"key": "correct", "title": "Correct", "kind": "match", "weight": 1.0, "extract": "answer_tag",
         "mode": "numeric"},
        {"key": "short", "title": "Short", "kind": "length", "weight": 0.5, "unit": "chars", "max": 12, "slack": 40},
    ]
}


def perturbed_copy(source: Path, target: Path, seed: int) -> Path:
    """What training leaves: the same architecture with other weights (and the tokenizer saved beside them)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


@pytest.fixture
def setup(make_member, client, settings, tmp_path, tiny_model_dir):  # noqa: F811
    settings.VAR_DIR = tmp_path
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    task = TaskFactory(project=project)
    ExampleFactory(task=task, prompt="What is 1 + 2?", answer="3")
    for i in range(2):
        ExampleFactory(task=task, split="eval", prompt=f"What is {i} + 5?", answer=str(i + 5))
    version = RubricVersionFactory(rubric=RubricFactory(project=project, task=task), spec=SPEC)
    run = services.training_run_create(project=project, name="r", task=task, rubric_version=version,
                                       preset="cpu-smoke", base_model=str(tiny_model_dir),
                                       options={"max_completion_length": 8, "seed": 3}, enqueue=False)
    engine = EndpointFactory(project=project, name="local", kind="transformers", base_url="", model="bundled")
    checkpoints = [
        Checkpoint.objects.create(run=run, step=step, path=str(perturbed_copy(
            tiny_model_dir, tmp_path / "output" / f"checkpoint-{step}", seed=step)))
        for step in (1, 2)
    ]
    return project, run, engine, checkpoints


def generate(job: GenerationJob) -> None:
    """What the rollout workers do, in this process."""
    for index in rollouts.generation_job_plan(job_id=job.pk):
        rollouts.generation_chunk_run(job_id=job.pk, index=index)


def judge(job: JudgeJob) -> None:
    for index in judging.judge_job_plan(job_id=job.pk):
        judging.judge_chunk_run(job_id=job.pk, index=index)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.slow
def test_a_checkpoint_is_generated_judged_and_compared_with_the_base_model_per_criterion(
    client, setup, tiny_model_dir  # noqa: F811
):
    project, run, engine, (first, second) = setup
    evaluation = services.checkpoint_evaluation_create(run=run, checkpoint=second, endpoint=engine,
                                                       samples_per_example=2, enqueue=False)
    base_job, checkpoint_job = evaluation.base_job, evaluation.checkpoint_job
    # Both sides sample as the run did in training, from the same seed; each loads its own weights.
    assert base_job.params == checkpoint_job.params == {"max_tokens": 8, "temperature": 1.0, "top_p": 1.0, "seed": 3}
    assert (base_job.model_name, base_job.checkpoint) == (str(tiny_model_dir), None)
    assert (checkpoint_job.model_name, checkpoint_job.checkpoint) == (second.path, second)
    assert base_job.split == checkpoint_job.split == "eval"

    assert services.checkpoint_evaluation_advance(evaluation_id=evaluation.pk, enqueue=False)  # nothing generated
    generate(base_job)
    generate(checkpoint_job)
    base = list(Rollout.objects.filter(job=base_job).select_related("example").order_by("example_id", "sample_index"))
    tuned = list(Rollout.objects.filter(job=checkpoint_job).select_related("example")
                 .order_by("example_id", "sample_index"))
    assert len(base) == len(tuned) == 4 and not any(r.error for r in base + tuned)
    assert {r.model_name for r in tuned} == {second.path}
    assert [r.completion for r in base] != [r.completion for r in tuned]  # other weights, other text

    assert services.checkpoint_evaluation_advance(evaluation_id=evaluation.pk, enqueue=False)  # judge jobs made
    evaluation.refresh_from_db()
    assert evaluation.base_judge_job.selection["job"] == base_job.pk
    assert evaluation.checkpoint_judge_job.selection["job"] == checkpoint_job.pk
    assert evaluation.base_judge_job.rubric_version_id == run.rubric_version_id
    judge(evaluation.base_judge_job)
    judge(evaluation.checkpoint_judge_job)
    job_chain_start(kind=JobChunk.Kind.EVALUATION, job_id=evaluation.pk)  # as a worker's chain would hold it
    assert not services.checkpoint_evaluation_advance(evaluation_id=evaluation.pk, enqueue=False)
    evaluation.refresh_from_db()
    assert evaluation.status == JobStatus.SUCCEEDED, evaluation.error
    # Ended in the same transaction: the evaluation is never seen finished with its chain still running.
    assert JobChunk.objects.get(kind=JobChunk.Kind.EVALUATION, job_id=evaluation.pk, index=0).done

    # The comparison is the rubric engine's mean score of each side's rollouts, per criterion and in total.
    from training.rubrics.engine import RubricEngine
    from training.rubrics.spec import validate_spec

    rubric = RubricEngine(validate_spec(SPEC))
    expected = {side: [rubric.score(engine_rollout(r)) for r in rows] for side, rows in (("base", base),
                                                                                          ("checkpoint", tuned))}
    [item] = selectors.run_evaluations(run)
    rows = {row["key"]: row for row in item["rows"]}
    assert list(rows) == ["correct", "short"]
    for key in rows:
        for side in ("base", "checkpoint"):
            assert rows[key][side] == pytest.approx(mean([s.criteria[key].score for s in expected[side]]))
        assert rows[key]["delta"] == pytest.approx(rows[key]["checkpoint"] - rows[key]["base"])
        assert (rows[key]["base_n"], rows[key]["checkpoint_n"]) == (4, 4)
    assert item["total"]["base"] == pytest.approx(mean([s.total for s in expected["base"]]))
    assert item["total"]["checkpoint"] == pytest.approx(mean([s.total for s in expected["checkpoint"]]))

    page = client.get(reverse("runs:detail", args=[project.pk, run.pk])).content.decode()
    assert "Step 2 checkpoint vs base model" in page and 'data-criterion="short"' in page
    assert f"{item['total']['checkpoint']:.3f}" in page and f"{item['total']['base']:.3f}" in page
    # "Compare with base side by side" opens the comparison of the two generation jobs, example by example.
    link = re.search(r'<a class="compare-link" href="([^"]+)"', page)
    assert link and f"a_job={base_job.pk}&amp;b_job={checkpoint_job.pk}" in link.group(1)
    compared = client.get(html.unescape(link.group(1))).content.decode()
    assert compared.count('class="compare-row"') == 4

    # The next checkpoint is compared with the same base rollouts and scores: the base is generated once.
    later = services.checkpoint_evaluation_create(run=run, checkpoint=first, endpoint=engine,
                                                  samples_per_example=2, enqueue=False)
    assert later.base_job_id == base_job.pk and later.base_judge_job_id == evaluation.base_judge_job_id
    assert later.checkpoint_job_id != checkpoint_job.pk
    other = services.checkpoint_evaluation_create(run=run, checkpoint=first, endpoint=engine,
                                                  samples_per_example=1, enqueue=False)
    assert other.base_job_id != base_job.pk  # other settings, another base job
    assert RolloutScore.objects.filter(rollout__job=base_job).count() == 4


@pytest.mark.django_db
def test_evaluation_needs_a_local_engine_and_a_checkpoint_of_this_run(client, setup):
    project, run, engine, (checkpoint, _) = setup
    server = EndpointFactory(project=project, name="server", kind="openai")
    with pytest.raises(ApplicationError, match="choose a vLLM or transformers endpoint"):
        services.checkpoint_evaluation_create(run=run, checkpoint=checkpoint, endpoint=server, enqueue=False)
    other_run = services.training_run_create(project=project, name="other", task=run.task,
                                             rubric_version=run.rubric_version, preset="cpu-smoke", enqueue=False)
    with pytest.raises(ApplicationError, match="belongs to another run"):
        services.checkpoint_evaluation_create(run=other_run, checkpoint=checkpoint, endpoint=engine, enqueue=False)
    with pytest.raises(ApplicationError, match="local engine"):
        rollouts.generation_job_create(project=project, task=run.task, endpoint=server, checkpoint=checkpoint,
                                       enqueue=False)

    # From the run page: the form offers this run's checkpoints and local engines only.
    page = client.get(reverse("runs:detail", args=[project.pk, run.pk])).content.decode()
    assert "Evaluate checkpoint" in page and ">local<" in page and ">server<" not in page
    response = client.post(reverse("runs:evaluate", args=[project.pk, run.pk]),
                           {"checkpoint": checkpoint.pk, "endpoint": engine.pk, "samples_per_example": 1})
    assert response.status_code == 302 and response["Location"].endswith("#evaluations")
    evaluation = CheckpointEvaluation.objects.get()
    assert (evaluation.checkpoint, evaluation.status, evaluation.split) == (checkpoint, JobStatus.RUNNING, "eval")
    response = client.post(reverse("runs:evaluate", args=[project.pk, run.pk]),
                           {"checkpoint": checkpoint.pk, "endpoint": server.pk, "samples_per_example": 1})
    assert CheckpointEvaluation.objects.count() == 1  # refused at the field: not a local engine

    # A generation job that fails fails the evaluation with its reason; the page polls only while one is running.
    rollouts.generation_job_fail(job_id=evaluation.checkpoint_job_id, error="Cannot start the model backend: gone")
    assert not services.checkpoint_evaluation_advance(evaluation_id=evaluation.pk, enqueue=False)
    evaluation.refresh_from_db()
    assert evaluation.status == JobStatus.FAILED and "Cannot start the model backend: gone" in evaluation.error
    partial = client.get(reverse("runs:evaluations", args=[project.pk, run.pk]), HTTP_HX_REQUEST="true")
    assert "Cannot start the model backend" in partial.content.decode() and "hx-trigger" not in partial.content.decode()


@pytest.mark.django_db
def test_the_run_page_costs_the_same_queries_with_one_or_several_evaluations(client, setup):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    project, run, engine, (first, second) = setup

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("runs:detail", args=[project.pk, run.pk])).status_code == 200
        return len(queries)

    services.checkpoint_evaluation_create(run=run, checkpoint=first, endpoint=engine, enqueue=False)
    one = count()
    for checkpoint, samples in ((second, 1), (first, 2), (second, 2)):
        services.checkpoint_evaluation_create(run=run, checkpoint=checkpoint, endpoint=engine,
                                              samples_per_example=samples, enqueue=False)
    assert count() == one
