"""Launching work through the API (generation jobs, training runs, review queues), cancelling it, and deletes:
the same services and the same roles as the UI, errors at their field, never another project's rows."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import EndpointFactory, ExampleFactory, ProjectFactory, TaskFactory
from tests.webapp.api.builders import one_of_everything
from tests.webapp.api.test_api import client_for
from webapp.core.models import JobStatus, Role
from webapp.endpoints.models import ModelEndpoint
from webapp.reviews.models import ReviewQueue
from webapp.rollouts.models import GenerationJob
from webapp.runs.models import TrainingRun
from webapp.tasks.models import Example, Task


@pytest.fixture
def world(db):
    return {"mine": one_of_everything(ProjectFactory(), "mine"),
            "secret": one_of_everything(ProjectFactory(), "secret")}


def url(objs, resource: str, pk: int | None = None, action: str = "") -> str:
    tail = f"{pk}/" if pk else ""
    return f"/api/v1/projects/{objs['project'].pk}/{resource}/{tail}{f'{action}/' if action else ''}"


@pytest.mark.django_db
def test_generation_job_create_and_cancel(world):
    mine, secret = world["mine"], world["secret"]
    api, user = client_for(Role.EDITOR, mine["project"])
    body = {"task": mine["task"].pk, "endpoint": mine["endpoint"].pk, "split": "train", "samples_per_example": 3,
            "params": {"temperature": 0.5, "max_tokens": 32, "top_p": 0.9, "seed": 7}}
    created = api.post(url(mine, "generation-jobs"), body, format="json")
    assert created.status_code == 201, created.content
    job = GenerationJob.objects.get(pk=created.json()["id"])
    assert (job.project, job.task, job.endpoint, job.created_by) == (mine["project"], mine["task"],
                                                                      mine["endpoint"], user)
    assert job.params == {"temperature": 0.5, "max_tokens": 32, "top_p": 0.9, "seed": 7}
    assert (job.samples_per_example, job.model_name, job.status) == (3, mine["endpoint"].model, JobStatus.PENDING)
    # The service's own checks answer at their field.
    empty = TaskFactory(project=mine["project"], name="empty")
    refused = api.post(url(mine, "generation-jobs"), {**body, "task": empty.pk}, format="json")
    assert refused.status_code == 400 and "has no examples" in refused.json()["detail"]
    for field, value in (("task", secret["task"].pk), ("endpoint", secret["endpoint"].pk)):
        response = api.post(url(mine, "generation-jobs"), {**body, field: value}, format="json")
        assert response.status_code == 400 and response.json()["field"] == field
    assert api.post(url(mine, "generation-jobs"), {**body, "params": {"temperature": 99}},
                    format="json").status_code == 400
    assert GenerationJob.objects.filter(project=mine["project"]).count() == 2  # the builder's and this one

    viewer, _ = client_for(Role.VIEWER, mine["project"])
    assert viewer.post(url(mine, "generation-jobs", job.pk, "cancel")).status_code == 403
    cancelled = api.post(url(mine, "generation-jobs", job.pk, "cancel"))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == JobStatus.CANCELLED
    assert api.post(url(mine, "generation-jobs", secret["job"].pk, "cancel")).status_code == 404
    assert GenerationJob.objects.get(pk=secret["job"].pk).status == JobStatus.PENDING


@pytest.mark.django_db
def test_training_run_create_lists_every_problem_then_launches(world):
    mine = world["mine"]
    api, user = client_for(Role.OWNER, mine["project"])
    body = {"task": mine["task"].pk, "rubric_version": mine["version"].pk, "preset": "cpu-smoke",
            "options": {"max_steps": 2, "num_generations": 2}}
    refused = api.post(url(mine, "training-runs"), body, format="json")
    assert refused.status_code == 400
    fields = {e["field"] for e in refused.json()["errors"]}
    # The rubric has an LM-judge criterion and the judge is not calibrated: both reported at once.
    assert {"judge_endpoint", "calibration_override"} <= fields, refused.json()
    reserved = api.post(url(mine, "training-runs"), {**body, "options": {"model": "/etc"}}, format="json")
    assert reserved.status_code == 400 and "options" in reserved.json()
    bad_option = api.post(url(mine, "training-runs"), {**body, "judge_endpoint": mine["endpoint"].pk,
                                                       "calibration_override": True, "calibration_note": "demo",
                                                       "options": {"no_such_option": 1}}, format="json")
    assert bad_option.status_code == 400 and bad_option.json()["errors"][0]["field"] == "no_such_option"
    created = api.post(url(mine, "training-runs"), {**body, "judge_endpoint": mine["endpoint"].pk,
                                                    "calibration_override": True, "calibration_note": "demo"},
                       format="json")
    assert created.status_code == 201, created.content
    run = TrainingRun.objects.get(pk=created.json()["id"])
    assert (run.created_by, run.calibration_override, run.calibration_note) == (user, True, "demo")
    assert run.config["max_steps"] == 2 and run.config["num_generations"] == 2
    cancelled = api.post(url(mine, "training-runs", run.pk, "cancel"))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == JobStatus.CANCELLED


@pytest.mark.django_db
def test_review_queue_create(world):
    mine, secret = world["mine"], world["secret"]
    api, user = client_for(Role.EDITOR, mine["project"])
    annotator_api, annotator = client_for(Role.ANNOTATOR, mine["project"])
    body = {"name": "spot check", "rubric_version": mine["version"].pk, "size": 5, "strategy": "random",
            "selection": {"task": mine["task"].pk}, "assignees": [annotator.pk], "blind": False}
    created = api.post(url(mine, "review-queues"), body, format="json")
    assert created.status_code == 201, created.content
    queue = ReviewQueue.objects.get(pk=created.json()["id"])
    assert queue.items.count() == 1 and list(queue.assignees.all()) == [annotator] and not queue.blind
    assert queue.created_by == user and queue.selection == {"task": mine["task"].pk}
    assert annotator_api.post(url(mine, "review-queues"), body, format="json").status_code == 403
    for change, field in (({"assignees": [secret["annotator"].pk]}, "assignees"),
                          ({"rubric_version": secret["version"].pk}, "rubric_version"),
                          ({"selection": {"task": "abc"}}, "selection"),
                          ({"strategy": "psychic"}, "strategy")):
        response = api.post(url(mine, "review-queues"), {**body, **change}, format="json")
        assert response.status_code == 400 and field in str(response.json()), (change, response.json())
    nothing = api.post(url(mine, "review-queues"), {**body, "selection": {"q": "no such text"}}, format="json")
    assert nothing.status_code == 400 and "widen the filters" in nothing.json()["detail"]
    assert ReviewQueue.objects.filter(project=mine["project"]).count() == 3  # the builder's two and this one


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.OWNER, Role.EDITOR, Role.ANNOTATOR, Role.VIEWER, "non-member"])
def test_deletes_by_role(world, role):
    mine, secret = world["mine"], world["secret"]
    api, _ = client_for(role, mine["project"])
    spare_task = TaskFactory(project=mine["project"], name="spare")
    spare_example = ExampleFactory(task=spare_task)
    spare_endpoint = EndpointFactory(project=mine["project"], name="spare")
    targets = [("examples", spare_example, Example), ("tasks", spare_task, Task),
               ("endpoints", spare_endpoint, ModelEndpoint)]
    for resource, obj, model in targets:
        response = api.delete(url(mine, resource, obj.pk))
        if role in (Role.OWNER, Role.EDITOR):
            assert response.status_code == 204, (resource, response.status_code)
            assert not model.objects.filter(pk=obj.pk).exists()
        else:
            assert response.status_code == (404 if role == "non-member" else 403), (resource, response.status_code)
            assert model.objects.filter(pk=obj.pk).exists()
        # Another project's row through my project's URL is never found.
        other = {"tasks": secret["task"], "examples": secret["example"], "endpoints": secret["endpoint"]}[resource]
        assert api.delete(url(mine, resource, other.pk)).status_code in (403, 404)
        assert model.objects.filter(pk=other.pk).exists()
    if role in (Role.OWNER, Role.EDITOR):
        # A task with rollouts keeps them: the service refuses, the API answers 409 with the reason.
        held = api.delete(url(mine, "tasks", mine["task"].pk))
        assert held.status_code == 409 and "rollout" in held.json()["detail"]
    # Versions, rollouts and scores are not deleted through the API.
    for resource, key in (("rubric-versions", "version"), ("rollouts", "rollout"), ("labels", "label")):
        assert api.delete(url(mine, resource, mine[key].pk)).status_code in (403, 404, 405)


@pytest.mark.django_db
def test_schema_documents_the_new_operations(client, world):
    client.force_login(world["mine"]["annotator"])
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    base = "/api/v1/projects/{project_id}"
    assert "post" in paths[f"{base}/generation-jobs/"] and "post" in paths[f"{base}/training-runs/"]
    assert "post" in paths[f"{base}/review-queues/"]
    for resource in ("generation-jobs", "training-runs", "exports"):
        assert "post" in paths[f"{base}/{resource}/{{id}}/cancel/"], resource
    for resource in ("tasks", "examples", "endpoints", "exports"):
        assert "delete" in paths[f"{base}/{resource}/{{id}}/"], resource
    params = {p["name"] for p in paths[f"{base}/rollouts/"]["get"]["parameters"]}
    assert {"agreement", "agreement_tolerance"} <= params
    client.logout()
    assert APIClient().get("/api/schema/").status_code in (401, 403)
