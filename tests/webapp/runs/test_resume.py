"""Resuming a failed or cancelled run from a checkpoint: a new run linked to the checkpoint, validated up front."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import ExampleFactory, RubricVersionFactory, TaskFactory
from training.grpo.sinks import JsonlSink
from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Role
from webapp.runs import services
from webapp.runs.models import Checkpoint, TrainingRun


@pytest.fixture
def stopped(make_member, client, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    task = TaskFactory(project=project)
    ExampleFactory.create_batch(2, task=task)
    run = services.training_run_create(project=project, name="long", task=task, preset="cpu-smoke",
                                       rubric_version=RubricVersionFactory(rubric__project=project),
                                       options={"max_steps": 10, "save_steps": 2}, enqueue=False)
    run = services.training_run_claim(run_id=run.pk)
    sink = JsonlSink(services.run_dir(run.pk))
    output = services.run_dir(run.pk) / "output"
    for step in (2, 4):
        sink.checkpoint(step, str(output / f"checkpoint-{step}"))
    # A stopped run saves a resumable checkpoint and the final model at the same step, in that order.
    sink.checkpoint(5, str(output / "checkpoint-5"))
    sink.checkpoint(5, str(output / "final"))
    sink.finished("stopped", {"steps": 5})
    services.training_run_cancel(run=run)
    run = services.training_run_finish(run_id=run.pk, exit_reason="exited with code 0")
    assert run.status == JobStatus.CANCELLED
    return project, run


@pytest.mark.django_db
def test_the_step_keeps_its_resumable_checkpoint_when_the_final_model_is_saved_at_the_same_step(stopped):
    _, run = stopped
    assert [(c.step, c.path.rsplit("/", 1)[1]) for c in Checkpoint.objects.filter(run=run)] == [
        (2, "checkpoint-2"), (4, "checkpoint-4"), (5, "checkpoint-5")]


@pytest.mark.django_db
def test_resume_creates_a_linked_run_that_continues_from_the_checkpoint(client, stopped):
    project, run = stopped
    page = client.get(reverse("runs:detail", args=[project.pk, run.pk])).content.decode()
    assert "Resume run" in page and "step 5 · checkpoint-5" in page

    checkpoint = Checkpoint.objects.get(run=run, step=5)
    response = client.post(reverse("runs:resume", args=[project.pk, run.pk]), {"checkpoint": checkpoint.pk})
    child = TrainingRun.objects.latest("pk")
    assert response.status_code == 302 and response["Location"].endswith(f"/{child.pk}/")
    assert child.pk != run.pk and child.status == JobStatus.PENDING and child.resumed_from == checkpoint
    assert child.name == "long · resumed at step 5"
    assert child.config["resume_from_checkpoint"] == checkpoint.path
    assert child.config["max_steps"] == 10 and child.config["examples"] == run.config["examples"]
    assert (child.task, child.rubric_version, child.base_model) == (run.task, run.rubric_version, run.base_model)
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED  # the parent and its history stay as they were

    child_page = client.get(reverse("runs:detail", args=[project.pk, child.pk])).content.decode()
    assert "Continues" in child_page and f"run #{run.pk}" in child_page and "from its step 5 checkpoint" in child_page
    assert "Resume run" not in child_page  # pending: nothing to resume
    parent_page = client.get(reverse("runs:detail", args=[project.pk, run.pk])).content.decode()
    assert "Continued by" in parent_page and f"run #{child.pk}" in parent_page

    with pytest.raises(ApplicationError, match=f"Run #{child.pk} is already resuming this run"):
        services.training_run_resume(run=run, checkpoint=checkpoint, enqueue=False)


@pytest.mark.django_db
def test_resume_refuses_what_cannot_continue_with_a_reason(client, stopped):
    project, run = stopped
    early = Checkpoint.objects.get(run=run, step=2)
    with pytest.raises(ApplicationError, match=r"max_steps \(2\) must be above the checkpoint's step \(2\)"):
        services.training_run_resume(run=run, checkpoint=early, max_steps=2, enqueue=False)
    final = Checkpoint.objects.create(run=run, step=6, path="/somewhere/final")
    with pytest.raises(ApplicationError, match="final model without optimizer state"):
        services.training_run_resume(run=run, checkpoint=final, enqueue=False)
    running = services.training_run_create(project=project, name="busy", task=run.task, preset="cpu-smoke",
                                           rubric_version=run.rubric_version, enqueue=False)
    with pytest.raises(ApplicationError, match="only a failed or cancelled run can be resumed"):
        services.training_run_resume(run=running, checkpoint=early, enqueue=False)
    with pytest.raises(ApplicationError, match="belongs to another run"):
        TrainingRun.objects.filter(pk=running.pk).update(status=JobStatus.FAILED)
        running.refresh_from_db()
        services.training_run_resume(run=running, checkpoint=early, enqueue=False)

    # Through the page: the message says why, and max_steps can be raised past the parent's.
    response = client.post(reverse("runs:resume", args=[project.pk, run.pk]),
                           {"checkpoint": early.pk, "max_steps": 1}, follow=True)
    assert "max_steps (1) must be above" in response.content.decode()
    response = client.post(reverse("runs:resume", args=[project.pk, run.pk]), {"checkpoint": final.pk}, follow=True)
    assert "Select a valid choice" in response.content.decode()  # final models are not offered
    client.post(reverse("runs:resume", args=[project.pk, run.pk]), {"checkpoint": early.pk, "max_steps": 20})
    assert TrainingRun.objects.latest("pk").config["max_steps"] == 20
