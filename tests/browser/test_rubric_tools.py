"""Rubric tools in real Chromium with a real Celery worker: preview scores on rollouts (programmatic at once, the
judge through polling), draft a rubric with the bundled model and accept it, a dry run, and "test connection"."""

from __future__ import annotations

import re

import pytest

from tests.browser.test_tasks import screenshot
from tests.factories import EndpointFactory, RolloutFactory
from tests.support.judge_server import StubChatServer
from webapp.demo.seed import (
    DEMO_ENDPOINT_NAME,
    DEMO_PASSWORD,
    DEMO_RUBRIC_NAME,
    DEMO_TASK_NAME,
    DEMO_USERNAME,
    seed_demo,
)
from webapp.rubrics.models import Rubric
from webapp.rubrics.services import rubric_version_create
from webapp.tasks.models import Example, Task

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

POLITE = {"key": "polite", "title": "Polite", "kind": "judge", "weight": 0.75, "question": "Is the answer polite?",
          "choices": [{"label": "no"}, {"label": "yes"}]}


@pytest.fixture
def demo():
    project = seed_demo()
    task = Task.objects.get(project=project, name=DEMO_TASK_NAME)
    example = task.examples.order_by("pk").first()
    right = RolloutFactory(project=project, task=task, example=example, group_key="g-1", sample_index=0,
                           completion=f"Sure! <answer>{example.answer}</answer>")
    wrong = RolloutFactory(project=project, task=task, example=example, group_key="g-1", sample_index=1,
                           completion="<answer>-1</answer> <img src=x onerror=\"window.pwned=1\">")
    rubric = Rubric.objects.get(project=project, name=DEMO_RUBRIC_NAME)
    return project, task, rubric, right, wrong


def test_preview_scores_rollouts_programmatic_at_once_and_the_judge_by_polling(
        page, live_server, login, demo, celery_worker_process):
    project, task, rubric, right, wrong = demo
    v1 = rubric.versions.get()
    v2 = rubric_version_create(rubric=rubric, spec={"criteria": [*v1.spec["criteria"], POLITE]}, note="judge")
    login(DEMO_USERNAME, DEMO_PASSWORD)

    # programmatic only: scored in the request, no polling
    page.goto(f"{live_server.url}/p/{project.pk}/rubrics/versions/{v1.pk}/preview/")
    page.click("button:has-text('Score')")
    assert "Choose at least one rollout" in page.locator("#preview-result .error").inner_text()
    page.check(f"#rollout-{right.pk}")
    page.check(f"#rollout-{wrong.pk}")
    page.click("button:has-text('Score')")
    page.wait_for_selector("#preview-result .preview-item")
    totals = page.locator(".preview-total").all_inner_texts()
    assert totals == ["Total: 1.000", "Total: 0.200"]  # the wrong one still uses the tags
    assert page.evaluate("window.pwned") is None

    with StubChatServer(latency_s=1.5) as server:
        EndpointFactory(project=project, name="Stub judge", base_url=server.base_url)
        page.goto(f"{live_server.url}/p/{project.pk}/rubrics/versions/{v2.pk}/preview/")
        page.check(f"#rollout-{wrong.pk}")
        page.select_option("#id_endpoint", label="Stub judge")
        page.click("button:has-text('Score')")
        page.wait_for_selector("#preview-result .preview-item")
        row = page.locator("tr[data-key=correct]").first
        assert row.locator(".score").inner_text() == "0.00"  # programmatic, before the judge answers
        assert "waiting for the judge" in page.locator(".preview-total").inner_text()
        assert "judging…" in page.locator("tr[data-key=polite]").inner_text()
        page.wait_for_selector("text=Total: 0.500", timeout=60_000)  # (0*1 + 1*0.25 + 1*0.75) / 2
        polite = page.locator("tr[data-key=polite]").inner_text()
        assert "yes" in polite and "stub judge" in polite
        screenshot(page, "rubric-preview")
        assert server.stats["requests"] == 1


def test_draft_a_rubric_with_the_bundled_model_and_accept_it(
        page, live_server, login, demo, bundled_model_dir, celery_worker_process):
    project, task, *_ = demo
    login(DEMO_USERNAME, DEMO_PASSWORD)
    page.goto(f"{live_server.url}/p/{project.pk}/rubrics/draft/?task={task.pk}")
    page.select_option("#id_endpoint", label=DEMO_ENDPOINT_NAME)
    page.fill("#id_examples", "2")
    page.fill("#id_max_tokens", "48")
    page.click("button:has-text('Draft rubric')")
    assert "writing the draft" in page.locator("#draft-status").inner_text()
    page.wait_for_selector("text=Accept and create rubric", timeout=300_000)
    criteria = page.locator("table.draft-criteria tbody tr").count()
    assert criteria >= 3  # whatever the 135M model wrote, the draft is a usable rubric
    screenshot(page, "rubric-draft")

    first = Example.objects.filter(task=task).order_by("-split", "pk").first()
    page.fill("#id_name", "Drafted arithmetic")
    page.fill(f"#id_checklist_{first.pk}", f"Gives {first.answer}\nUses <answer> tags")
    spec_text = page.input_value("#id_spec_json")
    page.fill("#id_spec_json", spec_text.replace('"criteria"', '"criteria_typo"', 1))
    page.click("button:has-text('Accept and create rubric')")
    assert "Invalid rubric" in page.locator(".error").first.inner_text()
    assert not Rubric.objects.filter(name="Drafted arithmetic").exists()
    page.fill("#id_spec_json", spec_text)
    page.click("button:has-text('Accept and create rubric')")
    page.wait_for_url(re.compile(r"/rubrics/\d+/edit/$"))  # accepted: v1 saved, opened in the editor to refine
    assert page.input_value("input[name=name]") == "Drafted arithmetic"
    rubric = Rubric.objects.get(name="Drafted arithmetic")
    assert rubric.task == task and rubric.versions.get().note.startswith("Drafted by")
    first.refresh_from_db()
    assert first.checklist == [f"Gives {first.answer}", "Uses <answer> tags"]


def test_dry_run_shows_calls_and_zero_variance_groups(page, live_server, login, demo, celery_worker_process):
    project, task, rubric, right, wrong = demo
    RolloutFactory(project=project, task=task, group_key="g-2", completion="<answer>0</answer>")
    RolloutFactory(project=project, task=task, group_key="g-2", sample_index=1, completion="<answer>0</answer>")
    login(DEMO_USERNAME, DEMO_PASSWORD)
    page.goto(f"{live_server.url}/p/{project.pk}/rubrics/versions/{rubric.versions.get().pk}/dry-run/")
    page.click("button:has-text('Estimate')")
    page.wait_for_selector(".dryrun-facts", timeout=60_000)
    assert page.locator(".dry-calls").inner_text() == "0"
    screenshot(page, "rubric-dry-run")
    assert re.search(r"50 %.*1 of 2 sampled groups", page.locator(".dry-zero").inner_text())


def test_test_connection_runs_on_a_worker(page, live_server, login, demo, celery_worker_process):
    project = demo[0]
    with StubChatServer(lambda body, i: "pong", latency_s=1.0) as server:
        endpoint = EndpointFactory(project=project, name="Stub", base_url=server.base_url)
        login(DEMO_USERNAME, DEMO_PASSWORD)
        page.goto(f"{live_server.url}/p/{project.pk}/endpoints/{endpoint.pk}/")
        page.click("button:has-text('Test connection')")
        page.wait_for_selector("text=Calling the model on a worker")
        page.wait_for_selector("#connection-result .ok-line", timeout=60_000)
        assert page.locator("#connection-result pre.reply").inner_text() == "pong"
