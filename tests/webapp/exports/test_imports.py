"""Import what a rollouts export wrote: same rollouts back, all or nothing, errors that name the line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.factories import ExampleFactory, ProjectFactory, TaskFactory
from tests.webapp.exports.test_exports import read_back
from webapp.core.errors import ApplicationError
from webapp.exports.import_rollouts import rollouts_import, rollouts_import_path
from webapp.exports.services import export_create, export_write
from webapp.rollouts.models import Rollout

# What identifies a rollout's content (ids, job/run links, source and scores belong to the source project).
CONTENT = ["task", "example_id", "split", "prompt", "answer", "step", "model_name", "group_key", "sample_index",
           "prompt_messages", "messages", "completion", "prompt_tokens", "completion_tokens", "finish_reason",
           "latency_ms", "error", "metadata"]


def export_rows(project, format: str) -> tuple[Path, list[dict]]:
    export = export_write(export_id=export_create(project=project, kind="rollouts", format=format, enqueue=False).pk)
    path = Path(export.file.path)
    return path, read_back(path, format)


def content(rows: list[dict]) -> list[tuple]:
    return sorted(tuple(json.dumps(r[c], sort_keys=True) for c in CONTENT) for r in rows)


def target_project():
    project = ProjectFactory()
    task = TaskFactory(project=project, name="arith")
    for i in range(3):
        ExampleFactory(task=task, external_id=f"ex-{i}", prompt=f"What is {i} + 1?", answer=str(i + 1),
                       split="eval" if i == 2 else "train")
    return project


@pytest.mark.django_db
@pytest.mark.parametrize("format", ["jsonl", "parquet", "csv"])
def test_export_import_round_trip(scored, format):
    path, original = export_rows(scored["project"], format)
    target = target_project()
    assert rollouts_import_path(project=target, path=path) == 9
    _, again = export_rows(target, format)
    assert content(again) == content(original)
    assert set(Rollout.objects.filter(project=target).values_list("source", flat=True)) == {"import"}


@pytest.mark.django_db
def test_import_is_atomic_and_names_the_line(scored):
    path, _ = export_rows(scored["project"], "jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    target = target_project()
    broken = json.loads(lines[3])
    broken["sample_index"] = "three"
    data = "\n".join([*lines[:3], json.dumps(broken), *lines[4:]]).encode()
    with pytest.raises(ApplicationError, match=r"^line 4: sample_index"):
        rollouts_import(project=target, stream=io.BytesIO(data), format="jsonl")
    assert not Rollout.objects.filter(project=target).exists()
    for bad_line, message in (
        ("{not json", r"line 2: not valid JSON"),
        (json.dumps({**json.loads(lines[0]), "task": "missing"}), r"line 2: no task named 'missing'"),
        (json.dumps({**json.loads(lines[0]), "example_id": "zzz"}), r"line 2: the task has no example"),
        (json.dumps({**json.loads(lines[0]), "messages": {"a": 1}}), r"line 2: messages must be a JSON list"),
        (json.dumps({**json.loads(lines[0]), "group_key": ""}), r"line 2: group_key is empty"),
    ):
        with pytest.raises(ApplicationError, match=message):
            rollouts_import(project=target, stream=io.BytesIO(f"{lines[0]}\n{bad_line}\n".encode()), format="jsonl")
        assert not Rollout.objects.filter(project=target).exists()
    with pytest.raises(ApplicationError, match="Not a Parquet file"):
        rollouts_import(project=target, stream=io.BytesIO(b"nope"), format="parquet")


@pytest.mark.django_db
def test_import_through_the_api_needs_edit(scored):
    from rest_framework.test import APIClient

    from tests.factories import MembershipFactory, UserFactory

    path, _ = export_rows(scored["project"], "parquet")
    target = target_project()
    url = f"/api/v1/projects/{target.pk}/rollouts/import/"
    api = APIClient()
    for role, expected in (("viewer", 403), ("editor", 201)):
        user = UserFactory()
        MembershipFactory(project=target, user=user, role=role)
        api.force_authenticate(user)
        with open(path, "rb") as f:
            response = api.post(url, {"file": f, "format": "parquet"}, format="multipart")
        assert response.status_code == expected, response.content
    body = response.json()
    assert body.pop("import_id") > 0
    assert body == {"imported": 9, "scores": 0, "labels": 0, "pairwise_labels": 0, "examples": 0}
    with open(path, "rb") as f:
        # (a copy: the same bytes would otherwise be answered 409 "already imported")
        wrong = api.post(url, {"file": f, "format": "jsonl", "allow_duplicate": "true"}, format="multipart")
    assert wrong.status_code == 400 and "line 1" in wrong.json()["detail"]
    assert Rollout.objects.filter(project=target).count() == 9
