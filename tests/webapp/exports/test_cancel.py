"""Export cancel: a status the writer checks with every progress update; from the page (button) and the API."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, ProjectFactory, TaskFactory, UserFactory
from webapp.core.models import JobStatus
from webapp.exports import writers
from webapp.exports.models import Export
from webapp.exports.services import export_cancel, export_create, export_path, export_write
from webapp.rollouts.models import Rollout


def member(project, role: str):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=role)
    return user


@pytest.mark.django_db
def test_a_cancelled_pending_export_never_runs(scored):
    export = export_create(project=scored["project"], kind="rollouts", format="jsonl", enqueue=False)
    assert export_cancel(export=export) is True
    assert export_write(export_id=export.pk) is None  # the worker's delivery finds nothing to do
    export.refresh_from_db()
    assert export.status == JobStatus.CANCELLED and not export.file and export.finished_at
    assert not export_path(export)[1].exists()
    assert export_cancel(export=export) is False  # already finished


@pytest.mark.django_db
def test_a_finished_export_cannot_be_cancelled(scored):
    export = export_write(export_id=export_create(project=scored["project"], kind="rollouts", format="csv",
                                                enqueue=False).pk)
    assert export_cancel(export=export) is False
    export.refresh_from_db()
    assert export.status == JobStatus.SUCCEEDED and Path(export.file.path).exists()


@pytest.mark.django_db(transaction=True)
def test_a_running_export_stops_at_its_next_progress_check(monkeypatch, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setattr(writers, "PROGRESS_EVERY", 1)  # check the status after every row
    project = ProjectFactory()
    task = TaskFactory(project=project)
    Rollout.objects.bulk_create(
        Rollout(project=project, task=task, group_key=f"g{i // 4}", sample_index=i % 4, completion="x" * 200)
        for i in range(4000)
    )
    export = export_create(project=project, kind="rollouts", format="jsonl", enqueue=False)
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["export"] = export_write(export_id=export.pk)
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 60
    while Export.objects.get(pk=export.pk).done == 0:
        assert time.monotonic() < deadline and worker.is_alive(), "the export never reported progress"
        time.sleep(0.002)
    assert export_cancel(export=Export.objects.get(pk=export.pk))
    worker.join(60)
    assert not worker.is_alive()
    export.refresh_from_db()
    assert export.status == JobStatus.CANCELLED, export.status
    assert 0 < export.done < 4000 and export.total == 4000
    assert not export.file and not export_path(export)[1].exists()  # the partial file is gone


@pytest.mark.django_db
def test_cancel_from_the_page_and_the_api(client, scored):
    project = scored["project"]
    export = export_create(project=project, kind="rollouts", format="jsonl", enqueue=False)
    page = reverse("exports:list", args=[project.pk])
    cancel = reverse("exports:cancel", args=[project.pk, export.pk])
    viewer, editor = member(project, "viewer"), member(project, "editor")
    client.force_login(viewer)
    assert f'id="cancel-export-{export.pk}"'.encode() not in client.get(page).content
    assert client.post(cancel).status_code == 403
    client.force_login(editor)
    assert f'id="cancel-export-{export.pk}"'.encode() in client.get(page).content
    fragment = client.post(cancel, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and b"<html" not in fragment.content and b"cancelled" in fragment.content
    assert f'id="cancel-export-{export.pk}"'.encode() not in fragment.content
    Export.objects.filter(pk=export.pk).update(status=JobStatus.PENDING)
    assert client.post(cancel).status_code == 302
    assert Export.objects.get(pk=export.pk).status == JobStatus.CANCELLED

    second = export_create(project=project, kind="rollouts", format="jsonl", enqueue=False)
    api = APIClient()
    url = f"/api/v1/projects/{project.pk}/exports/{second.pk}/cancel/"
    api.force_authenticate(viewer)
    assert api.post(url).status_code == 403
    api.force_authenticate(editor)
    response = api.post(url)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    other = export_create(project=ProjectFactory(), kind="rollouts", format="jsonl", enqueue=False)
    assert api.post(f"/api/v1/projects/{project.pk}/exports/{other.pk}/cancel/").status_code == 404
    assert Export.objects.get(pk=other.pk).status == JobStatus.PENDING


@pytest.mark.django_db
def test_delete_an_export_and_its_file(scored, django_capture_on_commit_callbacks):
    project = scored["project"]
    export = export_write(export_id=export_create(project=project, kind="rollouts", format="jsonl", enqueue=False).pk)
    path = Path(export.file.path)
    api = APIClient()
    url = f"/api/v1/projects/{project.pk}/exports/{export.pk}/"
    api.force_authenticate(member(project, "annotator"))
    assert api.delete(url).status_code == 403
    api.force_authenticate(member(project, "editor"))
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(url).status_code == 204
    assert not Export.objects.filter(pk=export.pk).exists() and not path.exists()
