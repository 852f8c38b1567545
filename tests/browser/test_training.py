"""Training journeys in real Chromium: the launch form (preset switch and calibration gate over htmx, a config error
shown at its field), and a running run's page that follows new metrics and the final status by htmx polling."""

from __future__ import annotations

import pytest

from tests.factories import EndpointFactory, ExampleFactory, RubricVersionFactory, TaskFactory, UserFactory
from tests.training.grpo.conftest import tiny_model_dir  # noqa: F401  (session fixture)
from tests.webapp.runs.test_calibration import JUDGED
from tests.webapp.runs.test_evaluation import perturbed_copy
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
    page.wait_for_function("() => document.querySelector('#id_max_completion_length').placeholder === '512'")

    page.get_by_label("Task").select_option(str(task.pk))
    page.get_by_label("Rubric version").select_option(str(judged.pk))
    page.get_by_text("Judge not calibrated").wait_for()
    assert page.get_by_label("Train on this judge anyway").is_visible()

    page.get_by_label("Preset").select_option("cpu-smoke")
    page.wait_for_function("() => document.querySelector('#id_max_completion_length').placeholder === '32'")
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
    assert page.locator("#live .job-progress .status").inner_text() == "running"
    assert page.locator(".samples pre.completion").inner_text() == "<img src=x onerror=alert(1)>"
    assert page.locator(".chart polyline").count() >= 3

    assert "No checkpoints yet" in page.locator("#evaluate").inner_text()

    sink.metrics(2, {"reward": 0.75, "rewards/correct/mean": 0.75, "loss": 0.05, "timing/update_s": 1.1})
    sink.checkpoint(2, str(services.run_dir(run.pk) / "output" / "checkpoint-2"))
    sink.finished("completed", {"steps": 2})
    services.training_run_finish(run_id=run.pk, exit_reason="exited with code 0")
    page.locator("#live .job-progress .status", has_text="succeeded").wait_for(timeout=10_000)
    assert "step 2" in page.locator("#live").inner_text()
    assert "Took" in page.locator("#live .job-duration").inner_text()
    assert page.get_by_role("button", name="Cancel run").count() == 0
    # Issue 19 item 5: the part of the page that depends on the run's state re-rendered with it, without a reload.
    assert "step 2" in page.locator("#live").inner_text() and "checkpoint-2" in page.locator("#live").inner_text()
    page.locator("#evaluate", has_text="Add a local vLLM").wait_for(timeout=5_000)
    assert "No checkpoints yet" not in page.locator("#evaluate").inner_text()


@pytest.mark.slow
def test_evaluate_a_checkpoint_and_resume_a_cancelled_run_from_its_page(
    page, live_server, login, editor_project, settings, tmp_path, tiny_model_dir, celery_worker_process  # noqa: F811
):
    """"Evaluate checkpoint" → a real worker generates with the base model and the checkpoint and judges both; the
    page polls until the comparison shows. "Resume run" opens the new run, which says why it could not continue."""
    settings.VAR_DIR = tmp_path
    task = editor_project
    ExampleFactory.create_batch(2, task=task, split="eval")
    run = services.training_run_create(project=task.project, name="halted", task=task, preset="cpu-smoke",
                                       rubric_version=RubricVersionFactory(rubric__project=task.project),
                                       base_model=str(tiny_model_dir), options={"max_completion_length": 8},
                                       enqueue=False)
    run = services.training_run_claim(run_id=run.pk)
    sink = JsonlSink(services.run_dir(run.pk))
    # Weights only: evaluable, but without trainer_state.json a resume from it must fail and say so.
    checkpoint = perturbed_copy(tiny_model_dir, services.run_dir(run.pk) / "output" / "checkpoint-1", seed=1)
    sink.checkpoint(1, str(checkpoint))
    sink.finished("stopped", {"steps": 1})
    services.training_run_cancel(run=run)
    services.training_run_finish(run_id=run.pk, exit_reason="exited with code 0")
    EndpointFactory(project=task.project, name="local", kind="transformers", base_url="", model="bundled")

    login("trainer", "pw")
    page.goto(f"{live_server.url}/p/{task.project_id}/training/{run.pk}/")
    page.get_by_label("Engine").select_option(label="local")
    page.get_by_role("button", name="Evaluate checkpoint").click()
    page.locator("#evaluations .status", has_text="succeeded").wait_for(timeout=120_000)
    table = page.locator("#evaluations table.comparison")
    assert "Step 1 checkpoint vs base model" in page.locator("#evaluations h3").inner_text()
    assert table.locator("tr[data-criterion='correct'] td.base").inner_text() != "—"
    assert table.locator("tr[data-criterion='total'] td.checkpoint").inner_text() != "—"
    assert "2 / 2" in table.locator("tr[data-criterion='total']").inner_text()  # 2 eval examples, 1 sample each

    page.get_by_role("button", name="Resume run").click()
    page.locator("dt", has_text="Continues").wait_for()
    assert f"run #{run.pk}" in page.locator(".facts").inner_text()
    page.locator("#live .job-progress .status", has_text="failed").wait_for(timeout=120_000)
    assert "has no trainer_state.json" in page.locator("#live .job-error").inner_text()


def test_the_launch_form_takes_no_choice_while_it_re_renders(page, live_server, login, editor_project):
    """Found walking the README loop: picking a rubric version re-renders the form from the values sent with that
    request, so a judge endpoint chosen while it was in flight was silently dropped. The form is disabled meanwhile."""
    task = editor_project
    project = task.project
    judged = RubricVersionFactory(rubric__project=project, rubric__name="Politeness", spec=JUDGED)
    EndpointFactory(project=project, name="judge")
    login("trainer", "pw")
    held = []

    def hold(route):  # the refresh stays in flight until the test has looked at the form
        held.append(route)

    page.route(lambda url: "/training/new/" in url, lambda route: hold(route) if route.request.headers.get("hx-request") else
               route.continue_())
    page.goto(f"{live_server.url}/p/{project.pk}/training/new/")
    page.get_by_label("Rubric version").select_option(str(judged.pk))
    page.wait_for_function("() => document.querySelector('#id_judge_endpoint').matches(':disabled')")
    assert page.get_by_role("button", name="Launch run").is_disabled()
    # htmx disables the form before the request reaches the route; Playwright hands the route to `hold` only while
    # this thread is inside one of its calls, so wait in one until it has (this assert failed once under load).
    for _ in range(200):
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1
    held[0].continue_()
    page.wait_for_function("() => !document.querySelector('#id_judge_endpoint').matches(':disabled')")
    page.get_by_text("Judge not calibrated").wait_for()
