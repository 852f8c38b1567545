"""Comparison sides beyond generation jobs (issue 19): a training run's rollouts at a step, a range of steps or up
to a checkpoint, and an import, against each other and against generation jobs; chosen by name; one statement per
page; the blind rule; reached from the run page. Real rows in Postgres, the import through the real importer."""

from __future__ import annotations

import io
import json
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import (
    ExampleFactory,
    GenerationJobFactory,
    RolloutFactory,
    RubricVersionFactory,
    TaskFactory,
)
from webapp.compare import selectors
from webapp.core.models import ImportRecord, Role
from webapp.exports.import_datasets import dataset_import
from webapp.judging.models import RolloutScore
from webapp.reviews.models import ReviewItem, ReviewQueue
from webapp.rollouts.models import Rollout, RolloutSource
from webapp.runs.models import Checkpoint, TrainingRun

SPEC = {"criteria": [{"key": "correct", "title": "Correct", "kind": "match", "weight": 1.0, "extract": "answer_tag",
                      "mode": "numeric", "tolerance": 0.0}]}
TRAINING_FP = "training-reward"


def build(make_member, *, examples: int = 4, steps: int = 4, samples: int = 2) -> dict:
    """A run that trained on the same examples at every step (reward step/10 + sample/100), checkpoints at steps 2
    and 4, a base generation job on those examples (reward 0.05), and an import of another model's rollouts on them
    (through the importer, then scored 0.9)."""
    editor, project = make_member(Role.EDITOR)
    task = TaskFactory(project=project, name="Arithmetic")
    version = RubricVersionFactory(rubric__project=project, rubric__name="Arith", spec=SPEC)
    run = TrainingRun.objects.create(project=project, name="grpo-demo", task=task, rubric_version=version,
                                     base_model="bundled")
    exs = [ExampleFactory(task=task, external_id=f"ex{i}", prompt=f"question {i}") for i in range(examples)]
    for step in range(1, steps + 1):
        for i, example in enumerate(exs):
            for s in range(samples):
                rollout = RolloutFactory(project=project, task=task, example=example, job=None, run=run, step=step,
                                         source=RolloutSource.TRAINING, group_key=f"s{step}e{i}", sample_index=s,
                                         completion=f"step {step} answer {i}.{s}")
                RolloutScore.objects.create(rollout=rollout, rubric_version=version, judge_fingerprint=TRAINING_FP,
                                            total=step / 10 + s / 100)
    checkpoints = {step: Checkpoint.objects.create(run=run, step=step, path=f"/tmp/ckpt-{step}") for step in (2, 4)}
    base = GenerationJobFactory(project=project, task=task, model_name="base-model")
    for i, example in enumerate(exs):
        for s in range(samples):
            rollout = RolloutFactory(project=project, task=task, example=example, job=base, sample_index=s,
                                     group_key=f"base{i}", completion=f"base answer {i}.{s}")
            RolloutScore.objects.create(rollout=rollout, rubric_version=version, judge_fingerprint="judge-a",
                                        total=0.05)
    lines = [{"task": "Arithmetic", "example_id": f"ex{i}", "group_key": f"imp{i}", "sample_index": s,
              "model_name": "imported-model", "completion": f"imported answer {i}.{s}"}
             for i in range(examples) for s in range(samples)]
    stream = io.BytesIO("".join(json.dumps(line) + "\n" for line in lines).encode())
    stream.name = "vf-eval-run.jsonl"
    result = dataset_import(project=project, stream=stream, kind="rollouts", format="jsonl", task=task)
    batch = ImportRecord.objects.get(pk=result.import_id)
    for rollout in Rollout.objects.filter(import_record=batch):
        RolloutScore.objects.create(rollout=rollout, rubric_version=version, judge_fingerprint="judge-a", total=0.9)
    return {"editor": editor, "project": project, "task": task, "version": version, "run": run,
            "checkpoints": checkpoints, "base": base, "batch": batch, "examples": exs}


def side(w, name="A", **kw) -> selectors.Side:
    rollouts = selectors.rollouts_build(project=w["project"], name=name, **kw)
    found = selectors.side_build(project=w["project"], rollouts=rollouts, version_id=w["version"].pk, judge_id=None,
                                 name=name)
    assert found is not None
    return found


def page(a, b, **filters) -> selectors.ComparisonPage:
    return selectors.comparison_page(a=a, b=b, filters=selectors.Filters(**filters), size=100)


def url(w, **params) -> str:
    return reverse("compare:view", args=[w["project"].pk]) + "?" + urlencode(params)


@pytest.mark.django_db
def test_the_importer_names_its_import_on_every_rollout(make_member):
    w = build(make_member)
    imported = Rollout.objects.filter(project=w["project"], source=RolloutSource.IMPORT)
    assert imported.count() == 8 and set(imported.values_list("import_record", flat=True)) == {w["batch"].pk}
    assert not Rollout.objects.filter(project=w["project"]).exclude(source=RolloutSource.IMPORT).exclude(
        import_record=None).exists()


@pytest.mark.django_db
def test_step_vs_step_and_range_vs_range_of_one_run(make_member):
    w = build(make_member)
    a, b = side(w, run_id=w["run"].pk, steps="1"), side(w, "B", run_id=w["run"].pk, steps="4")
    assert a.fingerprint == TRAINING_FP and "step 1" in a.label and "grpo-demo" in a.label
    result = page(a, b, sort="diff")
    assert result.total == 8 and not result.same_rollouts
    assert {round(r.diff, 3) for r in result.rows} == {0.3}
    assert all(r.completion.startswith("step 1 ") for r in result.rows)
    partners = Rollout.objects.in_bulk([r.b_id for r in result.rows])
    assert {p.step for p in partners.values()} == {4}
    assert all(partners[r.b_id].example_id == r.example_id and partners[r.b_id].sample_index == r.sample_index
               for r in result.rows)
    # Ranges: every rollout of steps 1-2 is a row; its partner is the newest of steps 3-4 on its example and sample.
    a, b = side(w, run_id=w["run"].pk, steps="1-2"), side(w, "B", run_id=w["run"].pk, steps="3-4")
    result = page(a, b)
    assert result.total == 16
    assert {Rollout.objects.get(pk=r.b_id).step for r in result.rows} == {4}
    assert sorted({round(r.diff, 3) for r in result.rows}) == [0.2, 0.3]
    # Open ranges and every step.
    assert page(side(w, run_id=w["run"].pk, steps="3-"), b).total == 16
    assert page(side(w, run_id=w["run"].pk, steps="-1"), b).total == 8
    assert page(side(w, run_id=w["run"].pk), b).total == 32
    # The same run and steps on both sides: the same rollouts, scored twice.
    same = page(a, side(w, "B", run_id=w["run"].pk, steps="2-1"))
    assert same.same_rollouts and all(r.b_id == r.pk for r in same.rows)


@pytest.mark.django_db
def test_a_checkpoint_is_its_runs_rollouts_since_the_previous_one(make_member):
    w = build(make_member)
    up_to_4 = side(w, "B", checkpoint_id=w["checkpoints"][4].pk)
    assert (up_to_4.rollouts.first, up_to_4.rollouts.last) == (3, 4)
    up_to_2 = side(w, checkpoint_id=w["checkpoints"][2].pk)
    assert (up_to_2.rollouts.first, up_to_2.rollouts.last) == (0, 2)
    result = page(up_to_2, up_to_4, sort="diff")
    assert result.total == 16 and {Rollout.objects.get(pk=r.b_id).step for r in result.rows} == {4}
    # Base vs checkpoint N: the base job's rollouts against the run's up to the checkpoint.
    base = side(w, job_id=w["base"].pk)
    assert base.fingerprint == "judge-a"
    result = page(base, up_to_4, sort="diff")
    assert result.total == 8 and all(r.completion.startswith("base answer") for r in result.rows)
    assert {round(r.diff, 3) for r in result.rows} == {0.35, 0.36}  # 0.4 + s/100 − 0.05


@pytest.mark.django_db
def test_an_import_against_a_job_and_a_run(make_member):
    w = build(make_member)
    imported = side(w, import_id=w["batch"].pk)
    assert "vf-eval-run.jsonl" in imported.label and imported.fingerprint == "judge-a"
    result = page(imported, side(w, "B", job_id=w["base"].pk), sort="-diff")
    assert result.total == 8 and {round(r.diff, 3) for r in result.rows} == {-0.85}
    assert all(r.completion.startswith("imported answer") and r.b_completion.startswith("base answer")
               for r in result.rows)
    result = page(side(w, run_id=w["run"].pk, steps="2"), imported)
    assert result.total == 8 and all(r.b_completion.startswith("imported answer") for r in result.rows)
    # Another project's import, run or checkpoint is no side here.
    other = build(make_member)
    for kw in ({"import_id": other["batch"].pk}, {"run_id": other["run"].pk},
               {"checkpoint_id": other["checkpoints"][2].pk}):
        with pytest.raises(Exception) as refused:
            selectors.rollouts_build(project=w["project"], name="A", **kw)
        assert getattr(refused.value, "status", None) == 404, kw


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["run", "checkpoint", "import"])
def test_the_page_reads_rows_in_one_statement_whatever_their_number(client, make_member, kind):
    counts = {}
    for examples in (2, 12):
        w = build(make_member, examples=examples)
        client.force_login(w["editor"])
        sources = {"run": {"a_src": f"run:{w['run'].pk}", "a_steps": "1", "b_steps": "3-4"},
                   "checkpoint": {"a_src": f"job:{w['base'].pk}", "b_src": f"checkpoint:{w['checkpoints'][4].pk}"},
                   "import": {"a_src": f"import:{w['batch'].pk}", "b_src": f"run:{w['run'].pk}"}}[kind]
        target = url(w, a_version=w["version"].pk, sort="diff", **sources)
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(target, headers={"HX-Request": "true"})
        assert response.status_code == 200
        text = response.content.decode()
        assert text.count('class="compare-row"') == min(examples * 2, selectors.PAGE_SIZE), kind
        reads = [q["sql"] for q in ctx.captured_queries if "FROM rollouts_rollout a" in q["sql"] and "OFFSET" in q["sql"]]  # the page, not its count
        assert len(reads) == 1, reads
        assert not [q["sql"] for q in ctx.captured_queries if 'FROM "tasks_example"' in q["sql"]]
        counts[examples] = len(ctx.captured_queries)
    assert counts[2] == counts[12], counts


@pytest.mark.django_db
def test_pickers_show_names_and_keep_the_choice(client, make_member):
    w = build(make_member)
    client.force_login(w["editor"])
    text = client.get(url(w)).content.decode()
    for label in ("Generation jobs", "Training runs", "Checkpoints", "Imports", "grpo-demo · bundled",
                  "grpo-demo · step 4 checkpoint", "vf-eval-run.jsonl", "base-model"):
        assert label in text, label
    text = client.get(url(w, a_src=f"run:{w['run'].pk}", a_steps="1", b_steps="4",
                          a_version=w["version"].pk)).content.decode()
    assert f'<option value="run:{w["run"].pk}" selected>' in text and 'value="1"' in text and 'value="4"' in text
    assert "training rollouts, step 1" in text and "training rollouts, step 4" in text
    assert text.count('class="compare-row"') == 8
    # The filter bar and the pager keep the sides (the run and its steps).
    assert f'name="a_run" value="{w["run"].pk}"' in text and 'name="b_steps" value="4"' in text
    # Steps that are no steps: the reason, not a 500; links naming a generation job keep working.
    bad = client.get(url(w, a_src=f"run:{w['run'].pk}", a_steps="one"))
    assert bad.status_code == 400 and "steps are a step" in bad.content.decode()
    legacy = client.get(url(w, a_job=w["base"].pk, a_version=w["version"].pk)).content.decode()
    assert legacy.count('class="compare-row"') == 8 and f'<option value="job:{w["base"].pk}" selected>' in legacy


@pytest.mark.django_db
def test_blind_annotators_are_refused_every_kind_of_side(client, make_member):
    w = build(make_member)
    annotator, _ = make_member(Role.ANNOTATOR, w["project"])
    client.force_login(annotator)
    targets = [url(w, a_src=f"run:{w['run'].pk}", a_steps="1", b_steps="4", a_version=w["version"].pk),
               url(w, a_src=f"import:{w['batch'].pk}", b_src=f"checkpoint:{w['checkpoints'][2].pk}",
                   a_version=w["version"].pk)]
    assert all(client.get(t).status_code == 200 for t in targets)
    queue = ReviewQueue.objects.create(project=w["project"], name="blind", rubric_version=w["version"], blind=True)
    ReviewItem.objects.create(queue=queue, position=1, rollout=Rollout.objects.filter(run=w["run"]).first())
    for target in targets:
        response = client.get(target)
        assert response.status_code == 403 and "0.300" not in response.content.decode()


@pytest.mark.django_db
def test_the_run_page_compares_two_of_its_steps(client, make_member):
    w = build(make_member)
    client.force_login(w["editor"])
    text = client.get(reverse("runs:detail", args=[w["project"].pk, w["run"].pk])).content.decode()
    form = text[text.index('class="inline-form compare-steps"'):]
    form = form[:form.index("</form>")]
    assert reverse("compare:view", args=[w["project"].pk]) in form
    assert f'name="a_run" value="{w["run"].pk}"' in form and f'name="a_version" value="{w["version"].pk}"' in form
    assert 'name="a_steps" value="1"' in form and 'name="b_steps" value="4"' in form
    # What the form sends: step 1 against step 4, sorted by the difference.
    compared = client.get(url(w, a_run=w["run"].pk, a_version=w["version"].pk, sort="diff", a_steps="1",
                              b_steps="4")).content.decode()
    assert compared.count('class="compare-row"') == 8 and "0.300" in compared
