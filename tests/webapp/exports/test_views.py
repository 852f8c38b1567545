"""The exports page, downloads (login + project role), imports from the page, and an export run by a real
Celery worker from an API request."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, ProjectFactory, TaskFactory, UserFactory
from tests.webapp.exports.conftest import build_scored_project
from webapp.core.models import JobStatus, Role
from webapp.exports.models import Export
from webapp.exports.services import export_create, export_write
from webapp.rollouts.models import Rollout


def member(project, role):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=role)
    return user


@pytest.mark.django_db
def test_page_lists_exports_and_only_editors_create(client, scored, django_capture_on_commit_callbacks):
    project = scored["project"]
    url = reverse("exports:list", args=[project.pk])
    client.force_login(member(project, Role.VIEWER))
    page = client.get(url)
    assert page.status_code == 200 and b"New export" not in page.content
    assert client.post(reverse("exports:create", args=[project.pk]), {"kind": "rollouts", "format": "jsonl"}).status_code == 403

    client.force_login(member(project, Role.EDITOR))
    assert b"New export" in client.get(url).content
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("exports:create", args=[project.pk]),
                               {"kind": "sft", "format": "parquet", "rubric_version": scored["version"].pk,
                                "threshold": "0.5"})
    assert response.status_code == 302
    export = Export.objects.get(project=project)
    assert (export.kind, export.format, export.filters) == ("sft", "parquet",
                                                            {"rubric_version": scored["version"].pk, "threshold": 0.5})
    assert len(callbacks) == 1  # the Celery job is queued after commit
    bad = client.post(reverse("exports:create", args=[project.pk]), {"kind": "sft", "format": "csv", "score_min": "1"})
    assert bad.status_code == 400 and b"need a rubric_version" in bad.content
    # While an export is pending the table polls itself; the htmx request gets only the table.
    partial = client.get(url, HTTP_HX_REQUEST="true")
    assert b"every 2s" in partial.content and b"<html" not in partial.content


@pytest.mark.django_db
def test_download_needs_login_and_a_role_in_the_project(client, scored):
    project = scored["project"]
    export = export_write(export_id=export_create(project=project, kind="rollouts", format="jsonl", enqueue=False).pk)
    page_url = reverse("exports:download", args=[project.pk, export.pk])
    api_url = f"/api/v1/projects/{project.pk}/exports/{export.pk}/download/"

    assert client.get(page_url).status_code == 302  # to login
    assert APIClient().get(api_url).status_code == 403
    outsider = member(ProjectFactory(), Role.OWNER)
    client.force_login(outsider)
    assert client.get(page_url).status_code == 404
    api = APIClient()
    api.force_authenticate(outsider)
    assert api.get(api_url).status_code == 404
    # Another project's export under my project's URL is not found either.
    assert client.get(reverse("exports:download", args=[outsider.memberships.get().project_id, export.pk])).status_code == 404

    viewer = member(project, Role.VIEWER)
    client.force_login(viewer)
    response = client.get(page_url)
    assert response.status_code == 200
    assert len(b"".join(response.streaming_content).splitlines()) == 9
    api.force_authenticate(viewer)
    body = api.get(f"/api/v1/projects/{project.pk}/exports/{export.pk}/").json()
    assert body["download_url"] == api_url and body["row_count"] == 9 and body["status"] == "succeeded"
    assert api.get(api_url).status_code == 200


@pytest.mark.django_db
def test_import_from_the_page(client, scored):
    source = scored["project"]
    export = export_write(export_id=export_create(project=source, kind="rollouts", format="jsonl", enqueue=False).pk)
    target = ProjectFactory()
    task = TaskFactory(project=target, name="elsewhere")
    url = reverse("exports:import", args=[target.pk])

    def upload(user, **extra):
        client.force_login(user)
        with open(export.file.path, "rb") as f:
            return client.post(url, {"file": f, "format": "jsonl", **extra})

    assert upload(member(target, Role.VIEWER)).status_code == 403
    editor = member(target, Role.EDITOR)
    refused = upload(editor)  # the file's task "arith" does not exist in the target project
    assert refused.status_code == 400 and b"line 1: no task named" in refused.content
    assert not Rollout.objects.filter(project=target).exists()
    # The examples of "arith" do not exist in "elsewhere" either, so drop example ids and import into one task.
    lines = [json.loads(line) for line in Path(export.file.path).read_text(encoding="utf-8").splitlines()]
    stripped = "\n".join(json.dumps({**row, "example_id": None}) for row in lines).encode()
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(editor)
    response = client.post(url, {"file": SimpleUploadedFile("r.jsonl", stripped), "format": "jsonl", "task": task.pk})
    assert response.status_code == 302
    assert Rollout.objects.filter(project=target, task=task, source="import").count() == 9


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_export_runs_on_a_celery_worker_with_progress_and_download(celery_worker_process, settings):
    from webapp.settings import test as test_settings

    settings.MEDIA_ROOT = test_settings.MEDIA_ROOT  # the worker writes where its settings say
    scored = build_scored_project()
    project = scored["project"]
    editor = member(project, Role.EDITOR)
    api = APIClient()
    api.force_authenticate(editor)
    created = api.post(f"/api/v1/projects/{project.pk}/exports/",
                       {"kind": "rollouts", "format": "parquet", "filters": {"rubric_version": scored["version"].pk}},
                       format="json")
    assert created.status_code == 201, created.content
    url = f"/api/v1/projects/{project.pk}/exports/{created.json()['id']}/"
    deadline = time.monotonic() + 60
    while (body := api.get(url).json())["status"] not in JobStatus.finished():
        assert time.monotonic() < deadline, f"export still {body['status']}; worker log: {celery_worker_process.log_path}"
        time.sleep(0.3)
    assert body["status"] == "succeeded", body["error"]
    assert body["row_count"] == body["total"] == 9
    response = api.get(body["download_url"])
    assert response.status_code == 200
    import io

    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(b"".join(response.streaming_content)))
    assert table.num_rows == 9 and "criterion_scores" in table.column_names
    Export.objects.get(pk=created.json()["id"]).file.delete(save=False)  # the shared media folder stays clean
