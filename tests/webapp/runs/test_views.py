"""Launch form (presets, fix-it validation at the field, calibration gate), permissions, runs list queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import EndpointFactory, ExampleFactory, ProjectFactory, RubricVersionFactory, TaskFactory
from tests.webapp.runs.test_calibration import JUDGED
from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Role
from webapp.runs import services
from webapp.runs.models import TrainingRun


@pytest.fixture
def setup(make_member, client):
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    task = TaskFactory(project=project)
    ExampleFactory.create_batch(2, task=task)
    ExampleFactory(task=task, split="eval")
    return project, task, RubricVersionFactory(rubric__project=project)


def form_data(task, version, **extra) -> dict:
    return {"preset": "cpu-smoke", "task": task.pk, "split": "train", "rubric_version": version.pk,
            "base_model": "bundled", **extra}


@pytest.mark.django_db
def test_form_shows_presets_and_a_programmatic_rubric_launches_with_preset_values(client, setup):
    project, task, version = setup
    page = client.get(reverse("runs:create", args=[project.pk])).content.decode()
    assert "CPU smoke test" in page and "Single GPU" in page and "Multi-GPU" in page
    response = client.post(reverse("runs:create", args=[project.pk]), form_data(task, version, learning_rate="3e-5"))
    assert response.status_code == 302
    run = TrainingRun.objects.get()
    assert run.status == JobStatus.PENDING and not run.calibration_override and run.split == "train"
    assert run.config["preset"] == "cpu-smoke" and run.config["num_generations"] == 4
    assert run.config["learning_rate"] == 3e-5 and run.config["rubric"] == version.spec
    assert len(run.config["examples"]) == 2  # the train split only
    assert {e["example_id"] for e in run.config["examples"]} == {
        str(pk) for pk in task.examples.filter(split="train").values_list("pk", flat=True)}


@pytest.mark.django_db
def test_invalid_config_is_refused_with_a_fix_it_message_at_the_field(client, setup):
    project, task, version = setup
    response = client.post(reverse("runs:create", args=[project.pk]), form_data(task, version, num_generations=3))
    assert response.status_code == 400
    form = response.context["form"]
    assert "must be divisible by num_generations (3)" in form.errors["num_generations"][0]
    response = client.post(reverse("runs:create", args=[project.pk]), form_data(task, version, beta=-1))
    assert "greater than or equal to 0" in response.context["form"].errors["beta"][0]
    response = client.post(reverse("runs:create", args=[project.pk]), form_data(task, version, use_vllm="true"))
    assert "use_vllm needs a GPU node but use_cpu is set" in response.context["form"].errors["use_vllm"][0]
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_uncalibrated_judge_needs_explicit_confirmation_and_a_note_recorded_on_the_run(client, setup):
    project, task, _ = setup
    version = RubricVersionFactory(rubric__project=project, spec=JUDGED)
    endpoint = EndpointFactory(project=project)
    url = reverse("runs:create", args=[project.pk])
    data = form_data(task, version, judge_endpoint=endpoint.pk)

    page = client.get(url, {"rubric_version": version.pk}).content.decode()
    assert "Judge not calibrated" in page and "Train on this judge anyway" in page

    response = client.post(url, data)
    assert response.status_code == 400
    assert "Judge not calibrated" in response.context["form"].errors["calibration_override"][0]
    response = client.post(url, {**data, "calibration_override": "on"})
    assert "Say why" in response.context["form"].errors["calibration_note"][0]
    assert not TrainingRun.objects.exists()

    response = client.post(url, {**data, "calibration_override": "on", "calibration_note": "pilot run"})
    assert response.status_code == 302
    run = TrainingRun.objects.get()
    assert run.calibration_override and run.calibration_note == "pilot run"
    assert run.config["judge"]["base_url"] == endpoint.base_url


@pytest.mark.django_db
def test_judge_rubric_without_endpoint_is_refused_at_the_endpoint_field(client, setup):
    project, task, _ = setup
    version = RubricVersionFactory(rubric__project=project, spec=JUDGED)
    response = client.post(reverse("runs:create", args=[project.pk]),
                           form_data(task, version, calibration_override="on", calibration_note="x"))
    assert "choose a judge endpoint" in response.context["form"].errors["judge_endpoint"][0]


@pytest.mark.django_db
def test_a_checkpoint_of_an_earlier_run_is_a_base_model(setup):
    project, task, version = setup
    earlier = services.training_run_create(project=project, name="a", task=task, rubric_version=version,
                                           preset="cpu-smoke", enqueue=False)
    checkpoint = earlier.checkpoints.create(step=2, path="/models/run1/final")
    run = services.training_run_create(project=project, name="b", task=task, rubric_version=version,
                                       preset="cpu-smoke", base_model=f"checkpoint:{checkpoint.pk}", enqueue=False)
    assert run.config["model"] == "/models/run1/final" and run.base_model == f"checkpoint:{checkpoint.pk}"

    other_task = TaskFactory(project=ProjectFactory())
    ExampleFactory(task=other_task)
    foreign = services.training_run_create(
        project=other_task.project, name="c", task=other_task, preset="cpu-smoke", enqueue=False,
        rubric_version=RubricVersionFactory(rubric__project=other_task.project),
    ).checkpoints.create(step=1, path="/elsewhere")
    with pytest.raises(ApplicationError) as error:
        services.training_run_create(project=project, name="d", task=task, rubric_version=version,
                                     preset="cpu-smoke", base_model=f"checkpoint:{foreign.pk}", enqueue=False)
    assert error.value.field == "base_model"


@pytest.mark.django_db
def test_viewer_cannot_launch_or_cancel_and_other_projects_are_404(client, make_member, setup):
    project, task, version = setup
    run = services.training_run_create(project=project, name="r", task=task, rubric_version=version,
                                       preset="cpu-smoke", enqueue=False)
    viewer, _ = make_member(Role.VIEWER, project=project)
    client.force_login(viewer)
    assert client.get(reverse("runs:create", args=[project.pk])).status_code == 403
    assert client.post(reverse("runs:create", args=[project.pk]), form_data(task, version)).status_code == 403
    assert client.post(reverse("runs:cancel", args=[project.pk, run.pk])).status_code == 403
    assert client.get(reverse("runs:detail", args=[project.pk, run.pk])).status_code == 200
    run.refresh_from_db()
    assert run.status == JobStatus.PENDING

    outsider, other = make_member(Role.OWNER)
    client.force_login(outsider)
    for url in (reverse("runs:detail", args=[project.pk, run.pk]), reverse("runs:list", args=[project.pk])):
        assert client.get(url).status_code == 404
    assert client.post(reverse("runs:cancel", args=[project.pk, run.pk])).status_code == 404
    # A run id of another project under the outsider's own project is not found either.
    assert client.get(reverse("runs:detail", args=[other.pk, run.pk])).status_code == 404


@pytest.mark.django_db
def test_cancel_of_a_pending_run_cancels_it_at_once(client, setup):
    project, task, version = setup
    run = services.training_run_create(project=project, name="r", task=task, rubric_version=version,
                                       preset="cpu-smoke", enqueue=False)
    assert client.post(reverse("runs:cancel", args=[project.pk, run.pk])).status_code == 302
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED and run.cancel_requested_at is not None
    assert services.training_run_claim(run_id=run.pk) is None  # the launch task then does nothing


@pytest.mark.django_db
def test_a_running_run_that_went_silent_says_its_node_may_be_down(client, setup):
    from datetime import timedelta

    from django.utils import timezone

    project, task, version = setup
    run = services.training_run_create(project=project, name="r", task=task, rubric_version=version,
                                       preset="cpu-smoke", enqueue=False)
    url = reverse("runs:detail", args=[project.pk, run.pk])
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING, hostname="gpu-7",
                                                 heartbeat_at=timezone.now() - timedelta(seconds=5))
    assert "may be down" not in client.get(url).content.decode()
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    html = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "last heard 10" in html and "node running it (gpu-7) may be down" in html
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.FAILED)
    assert "may be down" not in client.get(url).content.decode()


@pytest.mark.django_db
def test_runs_list_query_count_does_not_grow_with_runs(client, setup):
    project, task, version = setup

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("runs:list", args=[project.pk])).status_code == 200
        return len(queries)

    services.training_run_create(project=project, name="r0", task=task, rubric_version=version,
                                 preset="cpu-smoke", enqueue=False)
    one = count()
    for i in range(1, 6):
        other_task = TaskFactory(project=project)
        ExampleFactory(task=other_task)
        services.training_run_create(project=project, name=f"r{i}", task=other_task,
                                     rubric_version=RubricVersionFactory(rubric__project=project),
                                     preset="cpu-smoke", enqueue=False)
    assert count() == one
