"""Every export kind comes back in: export → import into another project → export again gives the same rows
(ids aside); verifiers eval outputs (zip, folder, or results.jsonl + metadata.json) import with their scores; errors
name the line, nothing is half-imported, and the size limit holds."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import (
    ExampleFactory,
    MembershipFactory,
    ProjectFactory,
    RubricFactory,
    RubricVersionFactory,
    TaskFactory,
    UserFactory,
)
from tests.webapp.api.builders import SPEC
from tests.webapp.exports.conftest import GROUPS
from tests.webapp.exports.test_exports import read_back
from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus
from webapp.exports.import_datasets import (
    VERIFIERS_JUDGE,
    dataset_import,
    dataset_import_path,
    verifiers_import,
)
from webapp.exports.services import export_create, export_write
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.reviews.models import HumanLabel, PairwiseLabel
from webapp.rollouts.models import Rollout
from webapp.tasks.models import Example

FIXTURES = Path(__file__).parent / "fixtures" / "verifiers"
# Columns that are ids in the source project, or facts the imported rows cannot carry (the size of the group an
# SFT row was the best of; the mean human value behind a reward-model row, which has no per-criterion labels).
# Rollouts come in with source "import" and without the source's job and run.
NOT_CARRIED = {"rollout_id", "chosen_rollout_id", "rejected_rollout_id", "label_id", "group_size", "human_reward",
               "source", "job_id", "run_id"}


def export_file(project, kind: str, format: str, version, **filters) -> tuple[Path, list[dict]]:
    export = export_create(project=project, kind=kind, format=format,
                           filters={"rubric_version": version.pk, **filters}, enqueue=False)
    export = export_write(export_id=export.pk)
    assert export.status == JobStatus.SUCCEEDED, export.error
    path = Path(export.file.path)
    if kind in ("verifiers", "verifiers_03"):
        with zipfile.ZipFile(path) as archive:
            lines = archive.read("traces.jsonl" if kind == "verifiers" else "results.jsonl").decode().splitlines()
        return path, [json.loads(line) for line in lines]
    return path, read_back(path, format)


def target_for(scored) -> dict:
    """A second project with the same task, examples and rubric; the source's annotator is a member."""
    project = ProjectFactory()
    task = TaskFactory(project=project, name="arith")
    for i in range(3):
        ExampleFactory(task=task, external_id=f"ex-{i}", prompt=f"What is {i} + 1?", answer=str(i + 1),
                       split="eval" if i == 2 else "train", info={"level": i})
    version = RubricVersionFactory(rubric=RubricFactory(project=project, name="arith-rubric", task=task), number=1,
                                   spec=SPEC)
    MembershipFactory(project=project, user=scored["annotator"], role="annotator")
    importer = UserFactory()
    MembershipFactory(project=project, user=importer, role="editor")
    return {"project": project, "task": task, "version": version, "user": importer}


def _without_version(value):
    """criterion_scores / labels entries name the source's rubric version id: compare the rest."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        value = json.loads(value)
    if isinstance(value, list):
        return [{k: v for k, v in entry.items() if k != "rubric_version"} if isinstance(entry, dict) else entry
                for entry in value]
    return value


def comparable(rows: list[dict]) -> list[str]:
    out = []
    for row in rows:
        clean = {k: _without_version(v) for k, v in row.items() if k not in NOT_CARRIED}
        out.append(json.dumps(clean, sort_keys=True, default=str))
    return sorted(out)


CASES = [
    ("rollouts", {}),
    ("sft", {}),
    ("preferences", {}),
    ("preferences", {"preference_source": "labels"}),
    ("reward_model", {}),
    ("reward_pairs", {}),
    ("calibration", {}),
]


@pytest.mark.django_db
@pytest.mark.parametrize("format", ["jsonl", "csv", "parquet", "hf"])
@pytest.mark.parametrize(("kind", "filters"), CASES, ids=[f"{k}-{'-'.join(f.values()) or 'default'}" for k, f in CASES])
def test_every_kind_round_trips(scored, kind, filters, format):
    path, original = export_file(scored["project"], kind, format, scored["version"], **filters)
    assert original, "the source export is empty"
    target = target_for(scored)
    task = target["task"] if kind in ("preferences", "reward_pairs", "calibration") else None
    result = dataset_import_path(path=path, project=target["project"], kind=kind, format=format, task=task,
                                 rubric_version=target["version"], user=target["user"])
    assert result.rollouts > 0
    _, again = export_file(target["project"], kind, format, target["version"], **filters)
    assert comparable(again) == comparable(original)
    assert set(Rollout.objects.filter(project=target["project"]).values_list("source", flat=True)) == {"import"}
    if filters.get("preference_source") == "labels":
        assert PairwiseLabel.objects.filter(rubric_version=target["version"], annotator=target["user"]).count() == 1


@pytest.mark.django_db
def test_rollouts_with_scores_and_labels_keep_judges_and_annotators(scored):
    path, _ = export_file(scored["project"], "rollouts", "jsonl", scored["version"])
    target = target_for(scored)
    result = dataset_import_path(path=path, project=target["project"], kind="rollouts",
                                 rubric_version=target["version"], user=target["user"])
    assert (result.rollouts, result.scores, result.labels) == (9, 9 * 2 + 9, 2)
    labels = HumanLabel.objects.filter(rubric_version=target["version"])
    assert {label.annotator_id for label in labels} == {scored["annotator"].pk}
    assert labels.get(comment="rude").reward_hacking is True
    assert set(CriterionScore.objects.filter(rubric_version=target["version"]).values_list(
        "judge_fingerprint", flat=True)) == {"programmatic", "judge-a"}


@pytest.mark.django_db
def test_hf_zip_imports_through_the_fast_path(scored):
    path, original = export_file(scored["project"], "rollouts", "hf", scored["version"])
    target = target_for(scored)
    result = dataset_import_path(path=path, project=target["project"], kind="rollouts")
    assert result.rollouts == 9 and result.scores == 0
    _, again = export_file(target["project"], "rollouts", "hf", target["version"])
    keep = ["task", "example_id", "prompt", "group_key", "sample_index", "messages", "completion", "metadata"]
    assert sorted(json.dumps([r[c] for c in keep]) for r in again) == sorted(
        json.dumps([r[c] for c in keep]) for r in original)


@pytest.mark.django_db
def test_errors_name_the_line_and_nothing_is_imported(scored):
    target = target_for(scored)
    project, version = target["project"], target["version"]
    path, _ = export_file(scored["project"], "calibration", "jsonl", scored["version"])
    lines = path.read_text(encoding="utf-8").splitlines()
    cases = [
        ({**json.loads(lines[1]), "criterion_key": "nope"}, r"^line 2: criterion 'nope' is not in rubric version"),
        ({**json.loads(lines[1]), "annotator": "stranger"}, r"^line 2: annotator 'stranger' is not a member"),
        ({**json.loads(lines[1]), "human_value": 3}, r"^line 2: human_value must be between 0 and 1"),
        ({**json.loads(lines[1]), "judge_score": "high"}, r"^line 2: judge_score must be a number"),
    ]
    for bad, message in cases:
        data = f"{lines[0]}\n{json.dumps(bad)}\n".encode()
        with pytest.raises(ApplicationError, match=message):
            dataset_import(project=project, stream=io.BytesIO(data), kind="calibration", format="jsonl",
                           task=target["task"], rubric_version=version, user=target["user"])
    assert not Rollout.objects.filter(project=project).exists()
    assert not HumanLabel.objects.filter(rubric_version=version).exists()
    with pytest.raises(ApplicationError, match="needs a rubric version"):
        dataset_import(project=project, stream=io.BytesIO(b"{}"), kind="sft", format="jsonl")
    sft, _ = export_file(scored["project"], "sft", "parquet", scored["version"])
    with pytest.raises(ApplicationError, match=r"^row 1: no task named 'arith'"):
        other = ProjectFactory()
        dataset_import_path(path=sft, project=other, kind="sft",
                            rubric_version=RubricVersionFactory(rubric=RubricFactory(project=other), spec=SPEC))
    with pytest.raises(ApplicationError, match="holds no Hugging Face dataset"):
        dataset_import(project=project, stream=io.BytesIO(_zip({"x.txt": "hi"})), kind="sft", format="hf",
                       rubric_version=version)


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.mark.django_db
def test_size_limit(scored, settings):
    path, _ = export_file(scored["project"], "rollouts", "jsonl", scored["version"])
    target = target_for(scored)
    settings.RUBRICON_MAX_IMPORT_MB = 0
    with pytest.raises(ApplicationError, match="imports are limited to 0 MB") as error:
        dataset_import_path(path=path, project=target["project"], kind="rollouts")
    assert error.value.status == 413
    api = APIClient()
    api.force_authenticate(target["user"])
    with open(path, "rb") as f:
        response = api.post(f"/api/v1/projects/{target['project'].pk}/rollouts/import/",
                            {"file": f, "format": "jsonl"}, format="multipart")
    assert response.status_code == 413 and "limited" in response.json()["detail"]
    assert not Rollout.objects.filter(project=target["project"]).exists()


# --- verifiers ---------------------------------------------------------------------------------------------------


def _episode_comparable(row: dict) -> dict:
    """A traces.jsonl line without what differs between two exports of the same rollouts: ids, timestamps, the
    project slug (the env id)."""
    trace = row["traces"][0]
    return {"task": trace["task"]["data"], "ok": row["ok"],
            "messages": [node["message"] for node in trace["nodes"]], "rewards": trace["rewards"],
            "metrics": trace["metrics"], "model": trace["agent"]["config"].get("model"),
            "usage": [call.get("usage") for call in trace["calls"]]}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["verifiers", "verifiers_03"])
@pytest.mark.parametrize("as_zip", [True, False])
def test_verifiers_export_round_trips(scored, kind, as_zip):
    """Both layouts come back with our rubric totals (the file says its reward is a Rubricon rubric total), the
    criterion scores, and linked to the target task's examples (by the example id Rubricon wrote)."""
    path, original = export_file(scored["project"], kind, "jsonl", scored["version"])
    target = target_for(scored)
    if as_zip:
        with open(path, "rb") as stream:
            result = verifiers_import(project=target["project"], results=stream, rubric_version=target["version"],
                                      task=target["task"])
    else:  # the lines file and its config / metadata file as two uploads
        lines_name, meta_name = (("traces.jsonl", "configs/resolved/eval.json") if kind == "verifiers"
                                 else ("results.jsonl", "metadata.json"))
        with zipfile.ZipFile(path) as archive:
            lines, metadata = archive.read(lines_name), archive.read(meta_name)
        result = dataset_import(project=target["project"], stream=io.BytesIO(lines), kind=kind,
                                format="jsonl", rubric_version=target["version"], metadata=io.BytesIO(metadata),
                                task=target["task"])
    assert result.rollouts == 9 and result.examples == 0  # the examples exist in the target task
    again_path, again = export_file(target["project"], kind, "jsonl", target["version"])
    if kind == "verifiers":
        assert [_episode_comparable(r) for r in again] == [_episode_comparable(r) for r in original]
    else:  # timing is in epoch seconds from the rollout's creation: compare the generation time it carries
        def durations(rows: list[dict]) -> list[dict]:
            return [{**r, "timing": round(r["timing"]["generation"]["end"] - r["timing"]["generation"]["start"], 3)}
                    for r in rows]
        assert comparable(durations(again)) == comparable(durations(original))
    totals = sorted(RolloutScore.objects.filter(rubric_version=target["version"]).values_list("total", flat=True))
    assert totals == sorted(r for rewards in GROUPS.values() for r in rewards)
    if kind == "verifiers_03":
        with zipfile.ZipFile(path) as a, zipfile.ZipFile(again_path) as b:
            before, after = json.loads(a.read("metadata.json")), json.loads(b.read("metadata.json"))
        for key in ("env_id", "rubricon"):  # the project's slug and its version
            before.pop(key), after.pop(key)
        assert after == before


@pytest.mark.django_db
def test_vf_eval_output_folder_imports_with_scores(make_member):
    user, project = make_member("editor")
    task = TaskFactory(project=project, name="vf-arith")
    version = RubricVersionFactory(rubric=RubricFactory(project=project, task=task), spec=SPEC)
    folder = FIXTURES / "new"
    expected = [json.loads(line) for line in next(folder.rglob("results.jsonl")).read_text().splitlines()]
    result = dataset_import_path(path=folder, project=project, kind="verifiers", task=task, rubric_version=version)
    assert (result.rollouts, result.examples) == (4, 2)
    # The metric that names a criterion is its score; verifiers' reward (a weighted sum of the environment's own
    # rewards, 1.25 at most here) is an external score, never our rubric total.
    assert result.scores == 4
    rollouts = list(Rollout.objects.filter(project=project).select_related("example").order_by("id"))
    assert [r.model_name for r in rollouts] == ["HuggingFaceTB/SmolLM2-135M-Instruct"] * 4
    assert [(r.example.external_id, r.sample_index) for r in rollouts] == [("0", 0), ("0", 1), ("1", 0), ("1", 1)]
    assert len({r.group_key for r in rollouts}) == 2
    first, truncated, tool_use = rollouts[0], rollouts[1], rollouts[3]
    assert first.prompt_messages == expected[0]["prompt"]
    assert first.messages == expected[0]["prompt"] + expected[0]["completion"]
    assert first.completion == "<answer>5</answer>"
    assert (first.prompt_tokens, first.completion_tokens, first.latency_ms) == (21, 9, 124)
    assert truncated.finish_reason == "length"
    assert tool_use.completion == "<answer>4</answer>" and tool_use.messages[2]["tool_calls"][0]["id"] == "call_1"
    assert first.metadata["verifiers"]["metrics"] == {"correct": 1.0, "length_penalty": -0.01}
    assert first.metadata["verifiers"]["sampling_args"] == {"temperature": 0.7, "max_tokens": 64}
    assert [r.metadata["external_scores"]["verifiers"]["reward"] for r in rollouts] == [
        row["reward"] for row in expected]
    example = Example.objects.get(task=task, external_id="1")
    assert (example.prompt, example.answer, example.info) == ("What is 7 * 6?", "42", {"level": 2})
    assert not RolloutScore.objects.filter(rollout__project=project).exists()
    assert not CriterionScore.objects.filter(criterion_key="length_penalty").exists()
    assert sorted(CriterionScore.objects.filter(rollout__project=project, judge_fingerprint=VERIFIERS_JUDGE)
                  .values_list("rollout_id", "score")) == [(r.pk, row["correct"]) for r, row in zip(
                      rollouts, expected, strict=True)]


@pytest.mark.django_db
def test_vf_eval_rows_link_to_the_tasks_examples_by_prompt(make_member):
    """example_id in a ≤ 0.3 file is the dataset index: rows whose prompt is an example's prompt link to it, and
    importing the run again links to the same examples (no "0", "1" duplicates)."""
    _, project = make_member("editor")
    task = TaskFactory(project=project, name="vf-arith")
    mine = [ExampleFactory(task=task, external_id="sum", prompt="What is 2 + 3?"),
            ExampleFactory(task=task, external_id="product", prompt="What is 7 * 6?")]
    for _ in range(2):
        result = dataset_import_path(path=FIXTURES / "new", project=project, kind="verifiers", task=task)
        assert (result.rollouts, result.examples) == (4, 0)
    assert Example.objects.filter(task=task).count() == 2
    linked = list(Rollout.objects.filter(project=project).order_by("id").values_list("example_id", flat=True))
    assert linked == [mine[0].pk, mine[0].pk, mine[1].pk, mine[1].pk] * 2


@pytest.mark.django_db
def test_first_vf_eval_layout_and_no_rubric_version(make_member):
    _, project = make_member("editor")
    task = TaskFactory(project=project, name="old")
    result = dataset_import_path(path=FIXTURES / "old", project=project, kind="verifiers", task=task)
    assert (result.rollouts, result.examples, result.scores) == (4, 2, 0)
    rollout = Rollout.objects.filter(project=project).order_by("id").first()
    assert rollout.model_name == "smollm2-135m" and rollout.latency_ms == 102
    assert rollout.metadata["verifiers"]["metrics"] == {"correct": 1.0}
    assert rollout.metadata["answer"] == "0"


@pytest.mark.django_db
def test_verifiers_errors_name_the_line_and_roll_back(make_member):
    user, project = make_member("editor")
    task = TaskFactory(project=project, name="vf")
    version = RubricVersionFactory(rubric=RubricFactory(project=project, task=task), spec=SPEC)
    lines = next((FIXTURES / "new").rglob("results.jsonl")).read_text().splitlines()
    cases = [
        ({**json.loads(lines[2]), "metrics": {"correct": "yes"}}, r"^results.jsonl line 3: metric 'correct'"),
        ({**json.loads(lines[2]), "correct": 7.0, "metrics": {}}, r"^results.jsonl line 3: correct must be between"),
        ({**json.loads(lines[2]), "completion": 5}, r"^results.jsonl line 3: completion must be a list of chat"),
        ({k: v for k, v in json.loads(lines[2]).items() if k != "example_id"}, r"line 3: example_id is missing"),
    ]
    for bad, message in cases:
        data = "\n".join([lines[0], lines[1], json.dumps(bad)]).encode()
        with pytest.raises(ApplicationError, match=message):
            verifiers_import(project=project, results=io.BytesIO(data), task=task, rubric_version=version)
    with pytest.raises(ApplicationError, match="no task"):
        verifiers_import(project=project, results=io.BytesIO(lines[0].replace('"arith"', '"x"').encode()))
    with pytest.raises(ApplicationError, match="metadata.json is not valid JSON"):
        verifiers_import(project=project, results=io.BytesIO(lines[0].encode()), task=task,
                         metadata=io.BytesIO(b"{nope"))
    with pytest.raises(ApplicationError, match="Not a verifiers run: no traces.jsonl"):
        verifiers_import(project=project, results=io.BytesIO(_zip({"metadata.json": "{}"})), task=task)
    assert not Rollout.objects.filter(project=project).exists()
    assert not Example.objects.filter(task=task).exists()


@pytest.mark.django_db
def test_verifiers_upload_through_page_and_api(client, make_member):
    user, project = make_member("editor")
    task = TaskFactory(project=project, name="vf")
    version = RubricVersionFactory(rubric=RubricFactory(project=project, task=task), spec=SPEC)
    folder = next((FIXTURES / "new").rglob("results.jsonl")).parent
    bundle = _zip({f"run/{p.name}": p.read_text() for p in folder.iterdir()})
    client.force_login(user)
    page = client.post(reverse("exports:import", args=[project.pk]), {
        "kind": "verifiers", "format": "jsonl", "task": task.pk, "rubric_version": version.pk,
        "file": SimpleUploadedFile("eval.zip", bundle)}, follow=True)
    assert page.status_code == 200 and b"Imported 4 rollouts, 4 scores, 2 new examples" in page.content
    api = APIClient()
    api.force_authenticate(user)
    url = f"/api/v1/projects/{project.pk}/rollouts/import/"
    response = api.post(url, {
        "kind": "verifiers", "task": task.pk, "rubric_version": version.pk,
        "file": SimpleUploadedFile("results.jsonl", (folder / "results.jsonl").read_bytes()),
        "metadata": SimpleUploadedFile("metadata.json", (folder / "metadata.json").read_bytes()),
    }, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body.pop("import_id") > 0  # the import record a retry of this file would be told about
    assert body == {"imported": 4, "scores": 4, "labels": 0, "pairwise_labels": 0, "examples": 0}
    viewer, _ = make_member("viewer", project)
    api.force_authenticate(viewer)
    assert api.post(url, {"kind": "verifiers", "file": SimpleUploadedFile("r.jsonl", b"{}")},
                    format="multipart").status_code == 403
    other = RubricVersionFactory(rubric=RubricFactory(project=ProjectFactory()), spec=SPEC)
    api.force_authenticate(user)
    refused = api.post(url, {"kind": "verifiers", "task": task.pk, "rubric_version": other.pk,
                             "file": SimpleUploadedFile("r.jsonl", b"{}")}, format="multipart")
    assert refused.status_code == 400 and refused.json()["field"] == "rubric_version"
    assert Rollout.objects.filter(project=project).count() == 8
