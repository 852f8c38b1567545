"""Hostile import files get a 400 naming the line, never a 500 (issue 15 item 4): NUL characters, lone surrogates,
JSON nested 100,000 levels, CSV rows with more cells than the header."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import TaskFactory
from tests.webapp.exports.test_import_kinds import target_for
from webapp.core.models import Role
from webapp.rollouts.models import Rollout
from webapp.tasks.models import Example

pytestmark = pytest.mark.django_db

GOOD = b'{"task": "arith", "group_key": "g1", "completion": "fine"}\n'
DEEP = b"[" * 100_000 + b"]" * 100_000

ROLLOUT_FILES = {
    "NUL in text": (GOOD + b'{"task": "arith", "group_key": "g2", "completion": "a\\u0000b"}\n', "line 2"),
    "lone surrogate": (GOOD + b'{"task": "arith", "group_key": "g2", "completion": "a\\ud800b"}\n', "line 2"),
    "raw NUL byte": (GOOD + b'{"task": "arith", "group_key": "g2", "completion": "a\x00b"}\n', "line 2"),
    "deep JSON line": (GOOD + DEEP + b"\n", "line 2"),
    "deep messages": (GOOD + b'{"task": "arith", "group_key": "g2", "messages": ' + DEEP + b"}\n", "line 2"),
    "NUL in metadata": (GOOD + b'{"task": "arith", "group_key": "g2", "metadata": {"k": "\\u0000"}}\n', "line 2"),
    "CSV extra cells": (b"task,group_key,completion\narith,g1,fine\narith,g2,two,EXTRA\n", "line 3"),
    "CSV NUL in JSON cell": (b"task,group_key,metadata\narith,g1,{}\narith,g2,\"{\"\"k\"\": \"\"\\u0000\"\"}\"\n", "line 3"),
}


@pytest.mark.parametrize("name", ROLLOUT_FILES)
@pytest.mark.parametrize("kind", ["rollouts", "rollouts+version"])
def test_hostile_rollout_file_is_refused_with_its_line(scored, name, kind):
    content, where = ROLLOUT_FILES[name]
    target = target_for(scored)
    api = APIClient()
    api.force_authenticate(target["user"])
    fields = {"format": "csv" if name.startswith("CSV") else "jsonl", "kind": "rollouts"}
    if kind == "rollouts+version":
        fields["rubric_version"] = target["version"].pk
    response = api.post(f"/api/v1/projects/{target['project'].pk}/rollouts/import/",
                        {"file": SimpleUploadedFile("f", content), **fields}, format="multipart")
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert where in response.json()["detail"], response.json()
    assert not Rollout.objects.filter(project=target["project"]).exists()


def test_deep_json_api_body_is_a_400(scored):
    target = target_for(scored)
    api = APIClient()
    api.force_authenticate(target["user"])
    body = b'{"rubric_version": 1, "selection": ' + DEEP + b"}"
    response = api.post(f"/api/v1/projects/{target['project'].pk}/judge-jobs/", body,
                        content_type="application/json")
    assert response.status_code == 400 and "nested deeper" in response.json()["detail"]


@pytest.mark.parametrize("info", ['{"k": "a\\u0000b"}', '{"k": "\\udc00"}', '{"\\u0000": 1}'])
def test_nul_or_surrogate_anywhere_in_an_api_body_is_a_400(scored, info):
    target = target_for(scored)
    api = APIClient()
    api.force_authenticate(target["user"])
    body = '{"task": ' + str(target["task"].pk) + ', "external_id": "x9", "prompt": "p", "info": ' + info + "}"
    response = api.post(f"/api/v1/projects/{target['project'].pk}/examples/", body,
                        content_type="application/json")
    assert response.status_code == 400, response.content
    assert "cannot be stored" in response.json()["detail"]


@pytest.mark.parametrize("selection", [{"task": "abc"}, {"ids": ["a"]}, {"score_min": "abc"}, {"labeled": [1]},
                                       {"labelled": "yes"}, {"score_min": 0.5}, {"ids": "1,2"}])
def test_malformed_judge_selection_is_a_400_naming_the_field(scored, selection):
    target = target_for(scored)
    api = APIClient()
    api.force_authenticate(target["user"])
    response = api.post(f"/api/v1/projects/{target['project'].pk}/judge-jobs/",
                        {"rubric_version": target["version"].pk, "selection": selection}, format="json")
    assert response.status_code == 400, response.content
    assert "selection" in response.json()


TASK_FILES = {
    "CSV extra cells": ("ex.csv", b"id,prompt\na,1 + 1?\nb,2 + 2?,EXTRA\n", r"Row 2|Line 3"),
    "deep JSON": ("ex.jsonl", b'{"id": "a", "prompt": "p"}\n{"id": "b", "prompt": "p", "info": ' + DEEP + b"}\n",
                  r"Line 2"),
}


@pytest.mark.parametrize("name", TASK_FILES)
def test_hostile_task_file_is_refused_with_its_line(client, make_member, settings, tmp_path, name):
    settings.MEDIA_ROOT = tmp_path / "media"
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    task = TaskFactory(project=project)
    filename, content, where = TASK_FILES[name]
    response = client.post(reverse("tasks:import_upload", args=[project.pk, task.pk]),
                           {"file": SimpleUploadedFile(filename, content)})
    if response.status_code == 302:  # the preview reads the first rows only; the rest fails at confirm
        token = re.search(r"token=([\w-]+)", response["Location"]).group(1)
        response = client.post(reverse("tasks:import_confirm", args=[project.pk, task.pk]),
                               {"token": token, "default_split": "train", "unknown_columns": "info",
                                "col_0": "id", "col_1": "prompt"})
    assert response.status_code == 400, response.status_code
    assert re.search(where, response.content.decode()), response.content.decode()[-3000:]
    assert not Example.objects.filter(task=task).exists()
