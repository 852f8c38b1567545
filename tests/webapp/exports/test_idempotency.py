"""Imports are idempotent: a retried upload of the same file does not double the rows (issue 15 item 5)."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import ExampleFactory, TaskFactory
from tests.webapp.exports.test_import_kinds import export_file, target_for
from webapp.core.errors import ApplicationError
from webapp.core.models import ImportRecord, Role
from webapp.exports.import_datasets import dataset_import
from webapp.judging.models import RolloutScore
from webapp.rollouts.models import Rollout
from webapp.tasks.models import Example

pytestmark = pytest.mark.django_db


def _api(target) -> APIClient:
    api = APIClient()
    api.force_authenticate(target["user"])
    return api


def _post(api, target, path, **fields):
    with open(path, "rb") as f:
        return api.post(f"/api/v1/projects/{target['project'].pk}/rollouts/import/",
                        {"file": f, "format": "jsonl", **fields}, format="multipart",
                        **({"HTTP_IDEMPOTENCY_KEY": fields.pop("key")} if "key" in fields else {}))


@pytest.mark.parametrize("kind", ["rollouts", "sft", "verifiers"])
def test_api_retry_of_the_same_file_is_refused_and_a_copy_is_on_request(scored, kind):
    path, _ = export_file(scored["project"], kind, "jsonl", scored["version"])
    target = target_for(scored)
    api = _api(target)
    fields = {"kind": kind, "rubric_version": target["version"].pk}
    first = _post(api, target, path, **fields)
    assert first.status_code == 201, first.content
    rollouts = Rollout.objects.filter(project=target["project"]).count()
    scores = RolloutScore.objects.filter(rollout__project=target["project"]).count()
    assert rollouts > 0

    retry = _post(api, target, path, **fields)
    assert retry.status_code == 409, retry.content
    body = retry.json()
    assert body["import_id"] == first.json()["import_id"]
    assert f"already imported as import #{body['import_id']}" in body["detail"]
    assert Rollout.objects.filter(project=target["project"]).count() == rollouts
    assert RolloutScore.objects.filter(rollout__project=target["project"]).count() == scores

    copy = _post(api, target, path, allow_duplicate="true", **fields)
    assert copy.status_code == 201, copy.content
    assert Rollout.objects.filter(project=target["project"]).count() == 2 * rollouts
    assert ImportRecord.objects.filter(project=target["project"]).count() == 2


def test_same_file_into_another_task_is_a_new_import(scored):
    path, _ = export_file(scored["project"], "rollouts", "jsonl", scored["version"])
    target = target_for(scored)
    other = TaskFactory(project=target["project"], name="arith-2")
    for example in target["task"].examples.all():
        ExampleFactory(task=other, external_id=example.external_id, prompt=example.prompt)
    with open(path, "rb") as f:
        dataset_import(project=target["project"], stream=f, kind="rollouts", format="jsonl", task=target["task"])
    with open(path, "rb") as f:
        dataset_import(project=target["project"], stream=f, kind="rollouts", format="jsonl", task=other)
    with open(path, "rb") as f, pytest.raises(ApplicationError, match="already imported") as error:
        dataset_import(project=target["project"], stream=f, kind="rollouts", format="jsonl", task=other)
    assert error.value.status == 409


def test_idempotency_key_names_the_import_whatever_the_bytes(scored):
    path, _ = export_file(scored["project"], "rollouts", "jsonl", scored["version"])
    target = target_for(scored)
    api = _api(target)
    first = _post(api, target, path, key="upload-7f3a")
    assert first.status_code == 201, first.content
    # The client re-sends under the same key (its file was re-generated, so the bytes differ): still the same import.
    changed = path.with_name("changed.jsonl")
    changed.write_bytes(path.read_bytes() + b"\n")
    retry = _post(api, target, changed, key="upload-7f3a")
    assert retry.status_code == 409 and "Idempotency-Key" in retry.json()["detail"]


def test_a_failed_import_does_not_block_its_retry(scored):
    target = target_for(scored)
    bad = SimpleUploadedFile("bad.jsonl", b'{"group_key": "g", "task": "arith"}\n{not json\n')
    for _ in range(2):
        bad.seek(0)
        with pytest.raises(ApplicationError, match="line 2") as error:
            dataset_import(project=target["project"], stream=bad, kind="rollouts", format="jsonl")
        assert error.value.status != 409
    assert not ImportRecord.objects.filter(project=target["project"]).exists()


def test_import_page_refuses_a_retry_and_offers_a_copy(client, scored):
    path, _ = export_file(scored["project"], "rollouts", "jsonl", scored["version"])
    target = target_for(scored)
    client.force_login(target["user"])
    url = reverse("exports:import", args=[target["project"].pk])

    def post(**extra):
        with open(path, "rb") as f:
            return client.post(url, {"kind": "rollouts", "format": "jsonl", "file": f, **extra})

    assert post().status_code == 302
    count = Rollout.objects.filter(project=target["project"]).count()
    retry = post()
    assert retry.status_code == 400
    assert re.search(r"already imported as import #\d+", retry.content.decode())
    assert Rollout.objects.filter(project=target["project"]).count() == count
    assert post(allow_duplicate="on").status_code == 302
    assert Rollout.objects.filter(project=target["project"]).count() == 2 * count


def test_task_examples_import_is_refused_the_second_time(client, make_member, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    task = TaskFactory(project=project)
    content = b'{"id": "a", "prompt": "1 + 1?"}\n{"id": "b", "prompt": "2 + 2?"}\n'

    def upload_and_confirm(**extra):
        response = client.post(reverse("tasks:import_upload", args=[project.pk, task.pk]),
                               {"file": SimpleUploadedFile("ex.jsonl", content)})
        token = re.search(r"token=([\w-]+)", response["Location"]).group(1)
        preview = client.get(reverse("tasks:import_preview", args=[project.pk, task.pk]), {"token": token})
        data = {"token": token, "default_split": "train", "unknown_columns": "info", "col_0": "id",
                "col_1": "prompt", **extra}
        return preview, client.post(reverse("tasks:import_confirm", args=[project.pk, task.pk]), data)

    preview, confirmed = upload_and_confirm()
    assert "already imported" not in preview.content.decode()
    assert confirmed.status_code == 302
    assert Example.objects.filter(task=task).count() == 2
    preview, retried = upload_and_confirm()
    assert re.search(r"already imported as import #\d+", preview.content.decode())  # warned before confirming
    assert retried.status_code == 400 and "already imported as import #" in retried.content.decode()
    assert Example.objects.filter(task=task).count() == 2
