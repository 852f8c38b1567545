"""Training journeys in real Chromium: the launch form (preset switch and calibration gate over htmx, a config error
shown at its field), and a running run's page that follows new metrics and the final status by htmx polling."""

from __future__ import annotations

import pytest

from tests.factories import EndpointFactory, ExampleFactory, RubricVersionFactory, TaskFactory, UserFactory
from tests.webapp.runs.test_calibration import JUDGED
from training.grpo.sinks import JsonlSink, Sample
from webapp.core.models import Membership, Role
from webapp.runs import services
from webapp.runs.models import TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def editor_project():
    user = UserFactory(username="trainer")
    task = TaskFactory(name="Arithmetic")
    ExampleFactory.create_batch(2, task=task)
    Membership.objects.create(project=task.project, user=user, role=Role.EDITOR)
    return task


def test_launch_form_switches_presets_shows_the_calibration_gate_and_errors_at_the_field(
    page, live_server, login, editor_project
):
    task = editor_project
    project = task.project
    judged = RubricVersionFactory(rubric__project=project, rubric__name="Politeness", spec=JUDGED)
    EndpointFactory(project=project, name="judge")
    login("trainer", "pw")
    page.goto(f"{live_server.url}/p/{project.pk}/training/new/")
    assert page.get_by_label("Max completion length").get_attribute("placeholder") == "32"
    page.get_by_label("Preset").select_option("single-gpu")
    page.wait_for_function("document.querySelector('#id_max_completion_length').placeholder === '512'")

    page.get_by_label("Task").select_option(str(task.pk))
    page.get_by_label("Rubric version").select_option(str(judged.pk))
    page.get_by_text("Judge not calibrated").wait_for()
    assert page.get_by_label("Train on this judge anyway").is_visible()

    page.get_by_label("Preset").select_option("cpu-smoke")
    page.wait_for_function("document.querySelector('#id_max_completion_length').placeholder === '32'")
    page.get_by_label("Judge endpoint").select_option(label="judge")
    page.get_by_label("Num generations").fill("3")
    page.get_by_role("button", name="Launch run").click()
    error = page.locator(".field.has-error").filter(has=page.get_by_label("Num generations"))
    assert "must be divisible by num_generations (3)" in error.inner_text()
    assert "Judge not calibrated" in page.locator(".field.has-error").filter(
        has=page.get_by_label("Train on this judge anyway")).inner_text()
    assert not TrainingRun.objects.exists()


def test_the_run_page_follows_a_running_run_by_polling(page, live_server, login, editor_project, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    task = editor_project
    run = services.training_run_create(project=task.project, name="live", task=task, preset="cpu-smoke",
                                       rubric_version=RubricVersionFactory(rubric__project=task.project),
                                       enqueue=False)
    run = services.training_run_claim(run_id=run.pk)
    sink = JsonlSink(services.run_dir(run.pk))
    example = task.examples.first()
    sink.metrics(1, {"reward": 0.25, "rewards/correct/mean": 0.25, "loss": 0.1, "timing/update_s": 1.0})
    sink.samples(1, [Sample(prompt=[{"role": "user", "content": "q"}], completion="<img src=x onerror=alert(1)>",
                            rewards_per_criterion={"correct": 0.0}, total=0.0, group=0, sample_index=0,
                            example_id=str(example.pk))])
    services.training_run_ingest(run_id=run.pk)

    login("trainer", "pw")
    page.goto(f"{live_server.url}/p/{task.project_id}/training/{run.pk}/")
    assert page.locator("#run-status").inner_text() == "running"
    assert page.locator(".samples pre.completion").inner_text() == "<img src=x onerror=alert(1)>"
    assert page.locator(".chart polyline").count() >= 3

    sink.metrics(2, {"reward": 0.75, "rewards/correct/mean": 0.75, "loss": 0.05, "timing/update_s": 1.1})
    sink.finished("completed", {"steps": 2})
    services.training_run_finish(run_id=run.pk, exit_reason="exited with code 0")
    page.locator("#run-status", has_text="succeeded").wait_for(timeout=10_000)
    assert "step 2" in page.locator("#live").inner_text()
    assert page.get_by_role("button", name="Cancel run").count() == 0
