"""Every export kind × format, read back with the readers users have (json, csv, pyarrow, datasets)."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.webapp.exports.conftest import GROUPS
from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus
from webapp.exports.models import ExportKind
from webapp.exports.services import export_create, export_write
from webapp.judging.models import RolloutScore

FORMATS = ["jsonl", "csv", "parquet", "hf"]


def run(scored, kind: str, format: str, **filters) -> tuple[object, list[dict]]:
    export = export_create(project=scored["project"], kind=kind, format=format,
                           filters={"rubric_version": scored["version"].pk, **filters}, enqueue=False)
    export = export_write(export_id=export.pk)
    assert export.status == JobStatus.SUCCEEDED, export.error
    return export, read_back(Path(export.file.path), format)


def read_back(path: Path, format: str) -> list[dict]:
    if format == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if format == "csv":
        with open(path, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    if format == "parquet":
        return pq.read_table(path).to_pylist()
    import datasets

    target = path.parent / f"unzipped-{path.stem}"
    with zipfile.ZipFile(path) as archive:
        archive.extractall(target)
    return datasets.load_from_disk(str(target / "dataset")).to_list()


def as_json(value):
    """JSONL embeds JSON values; the tabular formats keep them as JSON text."""
    return json.loads(value) if isinstance(value, str) else value


def as_float(value):
    return None if value in (None, "") else float(value)


@pytest.mark.django_db
@pytest.mark.parametrize("format", FORMATS)
def test_rollouts_export_has_scores_and_labels(scored, format):
    export, rows = run(scored, ExportKind.ROLLOUTS, format)
    assert export.done == len(rows) == 9
    by_id = {int(r["rollout_id"]): r for r in rows}
    first = scored["rollouts"][1]
    row = by_id[first.pk]
    assert row["completion"] == first.completion  # quotes, commas, newlines and non-ASCII survive every format
    assert as_json(row["messages"]) == first.messages and as_json(row["metadata"]) == first.metadata
    assert as_float(row["reward"]) == 0.9
    scores = {s["criterion_key"]: s for s in as_json(row["criterion_scores"])}
    assert scores["polite"]["score"] == 0.9 and scores["polite"]["judge"] == "judge-a"
    assert scores["correct"]["score"] == 1.0
    assert [(lab["value"], lab["comment"]) for lab in as_json(row["labels"])] == [(1.0, "nice")]
    assert row["task"] == "arith" and row["example_id"] == "ex-0"


def messages_of(value) -> list[dict]:
    """A messages column: JSON in JSONL (values) and CSV (text); lists of structs in Parquet and HF datasets,
    where every struct field is present (unset ones None)."""
    if isinstance(value, str):
        return json.loads(value)
    return [{k: v for k, v in m.items() if v is not None or k == "content"} for m in value]


def sampled_with_a_system_prompt(rollout) -> list[dict]:
    system = {"role": "system", "content": "Answer in <answer> tags."}
    rollout.prompt_messages = [system, *rollout.prompt_messages]
    rollout.messages = [system, *rollout.messages]
    rollout.save(update_fields=["prompt_messages", "messages"])
    return rollout.prompt_messages


@pytest.mark.django_db
@pytest.mark.parametrize("format", FORMATS)
def test_sft_takes_the_best_of_each_group_above_the_threshold(scored, format):
    prompt = sampled_with_a_system_prompt(scored["rollouts"][1])
    _, rows = run(scored, ExportKind.SFT, format, threshold=0.3)
    assert sorted((r["group_key"], as_float(r["reward"])) for r in rows) == [("g1", 0.9), ("g2", 0.45)]
    g1 = next(r for r in rows if r["group_key"] == "g1")
    # TRL's conversational SFT format: the whole conversation, with the system prompt it was sampled with.
    assert messages_of(g1["messages"]) == [*prompt, {"role": "assistant", "content": scored["rollouts"][1].completion}]
    assert not {"prompt", "completion", "chosen", "rejected"} & set(g1)  # no text column TRL could pick instead
    if format in ("parquet", "hf"):
        assert isinstance(g1["messages"], list)  # nested, not JSON text


@pytest.mark.django_db
def test_sft_leaves_out_groups_whose_best_reward_is_zero_unless_asked(scored):
    RolloutScore.objects.filter(rollout__group_key="g3").update(total=0.0)
    _, rows = run(scored, ExportKind.SFT, "jsonl")
    assert sorted(r["group_key"] for r in rows) == ["g1", "g2"]
    _, rows = run(scored, ExportKind.SFT, "jsonl", threshold=0)
    assert sorted(r["group_key"] for r in rows) == ["g1", "g2", "g3"]


@pytest.mark.django_db
@pytest.mark.parametrize("format", FORMATS)
def test_preferences_pair_best_and_worst_of_a_group_by_margin(scored, format):
    prompt = sampled_with_a_system_prompt(scored["rollouts"][1])
    _, rows = run(scored, ExportKind.PREFERENCES, format, margin=0.15)
    assert [(r["group_key"], as_float(r["chosen_reward"]), as_float(r["rejected_reward"])) for r in rows] == [
        ("g1", 0.9, 0.2)
    ]
    pair = rows[0]
    # TRL's conversational preference format: prompt, chosen and rejected as message lists.
    assert messages_of(pair["prompt"]) == prompt
    assert messages_of(pair["chosen"]) == [{"role": "assistant", "content": scored["rollouts"][1].completion}]
    assert messages_of(pair["rejected"]) == [{"role": "assistant", "content": scored["rollouts"][0].completion}]
    assert abs(as_float(pair["margin"]) - 0.7) < 1e-9
    # Without a margin every group with a reward gap pairs up.
    _, rows = run(scored, ExportKind.PREFERENCES, format)
    assert sorted(r["group_key"] for r in rows) == ["g1", "g2", "g3"]


@pytest.mark.django_db
@pytest.mark.parametrize("format", FORMATS)
def test_reward_pairs_are_every_ordered_pair_of_a_group(scored, format):
    _, rows = run(scored, ExportKind.REWARD_PAIRS, format)
    # g1 0.2/0.9/0.5 and g3 0.1/0.05/0.0: three pairs each; g2 0.4/0.4/0.45: the tie is no pair.
    assert sorted((r["group_key"], as_float(r["chosen_reward"]), as_float(r["rejected_reward"])) for r in rows) == [
        ("g1", 0.5, 0.2), ("g1", 0.9, 0.2), ("g1", 0.9, 0.5), ("g2", 0.45, 0.4), ("g2", 0.45, 0.4),
        ("g3", 0.05, 0.0), ("g3", 0.1, 0.0), ("g3", 0.1, 0.05)]
    assert all(messages_of(r["chosen"])[-1]["role"] == "assistant" for r in rows)
    _, rows = run(scored, ExportKind.REWARD_PAIRS, format, margin=0.35)
    assert sorted(r["group_key"] for r in rows) == ["g1", "g1"]


@pytest.mark.django_db
@pytest.mark.parametrize("format", ["jsonl", "parquet"])
def test_preferences_from_human_pairwise_labels(scored, format):
    _, rows = run(scored, ExportKind.PREFERENCES, format, preference_source="labels")
    a, b = scored["rollouts"][3], scored["rollouts"][5]
    assert [(int(r["chosen_rollout_id"]), int(r["rejected_rollout_id"])) for r in rows] == [(b.pk, a.pk)]
    assert rows[0]["preference_source"] == "labels"


@pytest.mark.django_db
@pytest.mark.parametrize("format", FORMATS)
def test_reward_model_data(scored, format):
    _, rows = run(scored, ExportKind.REWARD_MODEL, format)
    assert len(rows) == 9
    labeled = {int(r["rollout_id"]): r for r in rows}[scored["rollouts"][2].pk]
    assert as_float(labeled["reward"]) == 0.5 and as_float(labeled["human_reward"]) == 0.0
    assert as_json(labeled["criterion_scores"]) == {"correct": 1.0, "polite": 0.5}


@pytest.mark.django_db
@pytest.mark.parametrize("format", FORMATS)
def test_calibration_set_pairs_human_labels_with_judge_outputs(scored, format):
    _, rows = run(scored, ExportKind.CALIBRATION, format)
    assert len(rows) == 2
    by_comment = {r["human_comment"]: r for r in rows}
    nice, rude = by_comment["nice"], by_comment["rude"]
    assert nice["criterion"] == "Is the answer polite?" and nice["judge"] == "judge-a"
    assert as_float(nice["judge_score"]) == 0.9 and nice["judge_rationale"] == "because 0.9"
    # `agree` compares on the criterion's scale, as the agreement dashboard does: judge 0.5 on this yes/no question
    # is "no" there (the nearest step, halves to even), which is what the rude label says.
    assert str(nice["agree"]).lower() == "true" and str(rude["agree"]).lower() == "true"
    assert str(rude["reward_hacking"]).lower() == "true"


@pytest.mark.django_db
def test_verifiers_03_results_and_metadata(scored):
    export = export_create(project=scored["project"], kind=ExportKind.VERIFIERS_03, format="jsonl",
                           filters={"rubric_version": scored["version"].pk, "split": "train"}, enqueue=False)
    export = export_write(export_id=export.pk)
    assert export.status == JobStatus.SUCCEEDED, export.error
    with zipfile.ZipFile(export.file.path) as archive:
        assert sorted(archive.namelist()) == ["metadata.json", "results.jsonl"]
        results = [json.loads(line) for line in archive.read("results.jsonl").decode().splitlines()]
        metadata = json.loads(archive.read("metadata.json"))
    # example_id is verifiers' integer dataset index; the example it came from is named beside it.
    assert len(results) == 6 and [r["example_id"] for r in results] == [0, 0, 0, 1, 1, 1]
    assert {r["example_external_id"] for r in results} == {"ex-0", "ex-1"}
    first = results[0]
    assert first["prompt"] == [{"role": "user", "content": "What is 0 + 1?"}]
    assert first["completion"][0]["role"] == "assistant" and first["answer"] == "1"
    assert set(first) >= {"reward", "correct", "polite", "task", "info"}
    assert metadata["num_examples"] == 2 and metadata["rollouts_per_example"] == 3
    assert abs(metadata["avg_reward"] - sum(GROUPS["g1"] + GROUPS["g2"]) / 6) < 1e-9
    for kind in (ExportKind.VERIFIERS, ExportKind.VERIFIERS_03):
        with pytest.raises(ApplicationError):
            export_create(project=scored["project"], kind=kind, format="csv",
                          filters={"rubric_version": scored["version"].pk}, enqueue=False)


@pytest.mark.django_db
def test_filters_select_rows(scored):
    _, rows = run(scored, ExportKind.ROLLOUTS, "jsonl", score_min=0.4, score_max=0.5)
    assert sorted(r["reward"] for r in rows) == [0.4, 0.4, 0.45, 0.5]
    _, rows = run(scored, ExportKind.ROLLOUTS, "jsonl", label_status="labeled")
    assert len(rows) == 2
    _, rows = run(scored, ExportKind.ROLLOUTS, "jsonl", label_status="unlabeled", split="eval")
    assert {r["group_key"] for r in rows} == {"g3"}
    _, rows = run(scored, ExportKind.ROLLOUTS, "jsonl", limit=4)
    assert len(rows) == 4


@pytest.mark.django_db
def test_bad_filters_and_foreign_ids_are_refused(scored, make_member):
    from tests.webapp.exports.conftest import build_scored_project

    other = build_scored_project(task_name="other")
    project = scored["project"]
    for filters, message in (
        ({"nope": 1}, "Unknown filter"),
        ({"task": "x"}, "must be a int"),
        ({"task": other["task"].pk}, "No task"),
        ({"rubric_version": other["version"].pk}, "No rubric version"),
        ({"score_min": 0.5}, "need a rubric_version"),
        ({"split": "test"}, "must be one of"),
    ):
        with pytest.raises(ApplicationError, match=message):
            export_create(project=project, kind="rollouts", format="jsonl", filters=filters, enqueue=False)
    # Score-based kinds need a rubric version; the export fails with a readable reason.
    export = export_create(project=project, kind="sft", format="jsonl", filters={}, enqueue=False)
    export = export_write(export_id=export.pk)
    assert export.status == JobStatus.FAILED and "rubric_version" in export.error
    assert export_write(export_id=export.pk) is None  # not pending any more: a second run does nothing


@pytest.mark.django_db
def test_management_command(scored, tmp_path):
    from django.core.management import call_command

    out = io.StringIO()
    target = tmp_path / "out.parquet"
    call_command("export", "--project", str(scored["project"].pk), "--kind", "sft", "--format", "parquet",
                 "--filter", f"rubric_version={scored['version'].pk}", "--filter", "threshold=0.4", "-o", str(target),
                 stdout=out)
    assert "2 rows" in out.getvalue()
    assert pq.read_table(target).num_rows == 2
