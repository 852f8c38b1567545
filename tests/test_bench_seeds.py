"""The benchmarks' seeds build their rows in Postgres (INSERT … SELECT generate_series), where they used to stream
them from Python loops by COPY: the rows, and so what the benchmarks measure, must stay those the loops wrote."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import export_throughput, review_dashboard  # noqa: E402
from webapp.judging.models import CriterionScore, RolloutScore  # noqa: E402
from webapp.reviews.models import HumanLabel  # noqa: E402
from webapp.rollouts.models import Rollout  # noqa: E402
from webapp.tasks.models import Example  # noqa: E402


def columns(model) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields if not f.primary_key and f.attname != "created_at"]


@pytest.mark.django_db
def test_the_export_seed_writes_the_rows_the_python_loop_wrote():
    # 20 rollouts in groups of 8 over 2 examples: the last 4 wrap round to the first example, as the loop's did.
    ids = export_throughput.seed(20, group=8)
    rollouts = list(Rollout.objects.filter(project_id=ids["project"]).order_by("pk").values("pk", *columns(Rollout)))
    task_id = rollouts[0]["task_id"]
    examples = list(Example.objects.filter(task_id=task_id).order_by("pk").values("pk", *columns(Example)))
    assert [{k: v for k, v in e.items() if k != "pk"} for e in examples] == [
        {"task_id": task_id, "external_id": f"ex-{i}", "prompt": f"What is {i} + 7?", "messages": None,
         "answer": str(i + 7), "info": {}, "checklist": [], "split": "train", "row_version": 1} for i in range(2)]

    expected = []
    for n in range(20):  # the loop the seed replaced, row for row
        example = examples[(n // 8) % len(examples)]
        prompt = [{"role": "user", "content": example["prompt"]}]
        completion = export_throughput.COMPLETION.format(answer=example["answer"] if n % 3 else "0")
        expected.append({
            "project_id": ids["project"], "task_id": task_id, "example_id": example["pk"], "job_id": None,
            "run_id": None, "step": None, "source": "generation", "model_name": "bundled", "group_key": f"g{n // 8}",
            "sample_index": n % 8, "prompt_messages": prompt,
            "messages": [*prompt, {"role": "assistant", "content": completion}], "completion": completion,
            "prompt_tokens": 12, "completion_tokens": 48, "finish_reason": "stop", "latency_ms": 350, "error": "",
            "metadata": {"turns": 1}, "import_record_id": None,
        })
    assert [{k: v for k, v in r.items() if k != "pk"} for r in rollouts] == expected

    version = ids["version"]
    scores = list(CriterionScore.objects.filter(rollout__project_id=ids["project"]).order_by("pk")
                  .values_list(*columns(CriterionScore)))
    blank = {"job_id": None, "raw_response": "", "prompt_tokens": None, "completion_tokens": None,
             "latency_ms": None, "cached": False, "error": ""}
    expected_scores = []
    for r in rollouts:
        rid = r["pk"]
        expected_scores.append({**blank, "rollout_id": rid, "rubric_version_id": version, "criterion_key": "correct",
                                "judge_fingerprint": "programmatic", "score": 1.0 if rid % 3 else 0.0,
                                "raw_choice": "", "rationale": ""})
        expected_scores.append({**blank, "rollout_id": rid, "rubric_version_id": version, "criterion_key": "clear",
                                "judge_fingerprint": "judge-a", "score": (rid % 5) / 4, "raw_choice": "yes",
                                "rationale": "The steps are laid out plainly."})
    assert scores == [tuple(s[c] for c in columns(CriterionScore)) for s in expected_scores]

    totals = list(RolloutScore.objects.filter(rollout__project_id=ids["project"]).order_by("pk")
                  .values_list(*columns(RolloutScore)))
    assert totals == [(r["pk"], version, "judge-a", None, (r["pk"] % 7) / 6, "", "") for r in rollouts]

    assert export_throughput.seed(20, group=8) == ids  # seeded rows of the size asked are reused


@pytest.mark.django_db(transaction=True)  # the seed VACUUMs, which no transaction may hold
def test_the_dashboard_seed_draws_the_shape_the_python_loop_drew():
    rollouts = 400
    project_id, version_id, _viewer, _annotator = review_dashboard.seed(rollouts)
    rows = list(Rollout.objects.filter(project_id=project_id).order_by("pk")
                .values_list("pk", "group_key", "sample_index", "completion", "completion_tokens"))
    first = rows[0][0]
    stamp = rows[0][1].removesuffix("0")
    assert rows == [(first + i, f"{stamp}{i // 8}", i % 8, "answer " * (1 + i % 50), 1 + i % 50)
                    for i in range(rollouts)]
    assert Rollout.objects.create(project_id=project_id, task_id=Rollout.objects.get(pk=first).task_id,
                                  group_key="after").pk > first + rollouts - 1  # the id sequence moved past them

    criteria, judges, choices = review_dashboard.CRITERIA, review_dashboard.JUDGES, review_dashboard.CHOICES
    scores = list(CriterionScore.objects.filter(rubric_version_id=version_id).order_by("pk")
                  .values_list("rollout_id", "criterion_key", "judge_fingerprint", "raw_choice", "score"))
    # Every rollout × criterion × judge once, in the loop's order; the choice and the score say the same.
    assert [s[:3] for s in scores] == [(first + i, key, judge) for i in range(rollouts) for key in criteria
                                       for judge in judges]
    assert all(choices.index(choice) / 2 == score for *_, choice, score in scores)
    verdicts = {(rid, key, judge): choices.index(choice) for rid, key, judge, choice, _ in scores}

    labels = list(HumanLabel.objects.filter(rubric_version_id=version_id).order_by("pk")
                  .values_list("annotator__username", "rollout_id", "criterion_key", "choice", "value"))
    labeled, again = int(rollouts * 0.16), int(rollouts * 0.04)
    assert [(name.split("-")[1], rid, key) for name, rid, key, *_ in labels] == (
        [("ann1", first + i, key) for i in range(labeled) for key in criteria]
        + [("ann2", first + i, key) for i in range(again) for key in criteria])
    assert all(choices.index(choice) / 2 == value for *_, choice, value in labels)

    # Judges give the true choice with probability 0.7, else a uniform one (0.8 in all), labels with 0.85 (0.9):
    # two judges agree with probability 0.8² + 2 × 0.1² = 0.66, a judge and a label 0.8 × 0.9 + 2 × 0.1 × 0.05 = 0.73.
    judges_agree = [verdicts[(first + i, key, judges[0])] == verdicts[(first + i, key, judges[1])]
                    for i in range(rollouts) for key in criteria]
    assert 0.6 < sum(judges_agree) / len(judges_agree) < 0.72
    label_agrees = [verdicts[(rid, key, judge)] == choices.index(choice)
                    for name, rid, key, choice, _ in labels if "ann1" in name for judge in judges]
    assert 0.64 < sum(label_agrees) / len(label_agrees) < 0.82
    assert all(950 < count < 1180 for count in Counter(s[3] for s in scores).values())  # uniform: 1,067 each


def _copy_text(value) -> str:
    if value is None:
        return "\\N"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


@pytest.mark.django_db
def test_the_ingest_files_are_those_the_python_loop_wrote(tmp_path):
    from bench import ingest_throughput
    from webapp.exports.import_rollouts import DB_COLUMNS

    prepared = ingest_throughput.prepare(20, tmp_path, group=8)
    copy_lines = Path(prepared["copy"]).read_text().splitlines()
    created_at = copy_lines[0].split("\t")[DB_COLUMNS.index("created_at")]
    examples = list(Example.objects.filter(task__project_id=prepared["project"]).order_by("pk"))
    assert [(e.external_id, e.prompt, e.answer) for e in examples] == [
        (f"ex-{i}", f"What is {i} + 7?", str(i + 7)) for i in range(2)]
    jsonl, copy = [], []
    for n in range(20):  # the loop prepare replaced, line for line
        example = examples[(n // 8) % len(examples)]
        prompt = [{"role": "user", "content": example.prompt}]
        completion = export_throughput.COMPLETION.format(answer=example.answer if n % 3 else "0")
        record = {
            "task": "arith", "example_id": example.external_id, "step": None, "model_name": "bundled",
            "group_key": f"g{n // 8}", "sample_index": n % 8, "prompt_messages": prompt,
            "messages": [*prompt, {"role": "assistant", "content": completion}], "completion": completion,
            "prompt_tokens": 12, "completion_tokens": 48, "finish_reason": "stop", "latency_ms": 350, "error": "",
            "metadata": {"turns": 1},
        }
        jsonl.append(json.dumps(record, ensure_ascii=False))
        db = {**record, "project_id": prepared["project"], "task_id": example.task_id, "example_id": example.pk,
              "source": "import", "created_at": created_at, "import_record_id": None,
              "prompt_messages": json.dumps(prompt), "messages": json.dumps(record["messages"]),
              "metadata": json.dumps(record["metadata"])}
        copy.append("\t".join(_copy_text(db[col]) for col in DB_COLUMNS))
    assert Path(prepared["jsonl"]).read_text().splitlines() == jsonl
    assert copy_lines == copy
    assert datetime.fromisoformat(created_at).tzinfo is not None
