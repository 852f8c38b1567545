"""The README's loop in real Chromium, as a new user walks it (issue 19, "Done when"): import a task → a rubric with an
LM-judge criterion → generate → judge → a blind review queue → agreement → a GRPO run with the judge criterion as
reward → evaluate the checkpoint and compare it with the base side by side → export. Every choice is made by name
(no id is typed), every page is reached by a link, every job state is waited for on the page that shows it (it must
update by itself: no reload), and any console error fails the test.

Small on purpose (4 examples, 2 samples, a few tokens, one GRPO step) so it runs in bounded time on CPU: the bundled
SmolLM2 is the policy, the judge and the base model; a real Celery worker runs every job."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.browser.test_review import LABELING_READY, console_errors
from webapp.demo.seed import DEMO_ENDPOINT_NAME, DEMO_PASSWORD, DEMO_USERNAME, seed_demo
from webapp.exports.models import Export
from webapp.runs.models import TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CSV = (
    "qid,question,gold,fold\n"
    "s-1,What is 2 + 3? Answer inside <answer></answer>.,5,train\n"
    "s-2,What is 4 + 4? Answer inside <answer></answer>.,8,train\n"
    "s-3,What is 1 + 6? Answer inside <answer></answer>.,7,eval\n"
    "s-4,What is 3 + 3? Answer inside <answer></answer>.,6,eval\n"
)
JOB_S = 300_000  # a job on two loaded CPU cores; the page must get there by itself


def nav(page, label: str) -> None:
    with page.expect_navigation():
        page.locator("nav a", has_text=label).first.click()


def pick(page, selector: str, text: str) -> None:
    """Choose the option of a picker by the name it shows (never by id)."""
    option = page.locator(f"{selector} option", has_text=text).first
    page.select_option(selector, value=option.get_attribute("value"))


def test_the_readme_loop_by_names_only(page, live_server, login, settings, tmp_path, celery_worker_process):
    try:
        walk(page, live_server, login, settings, tmp_path)
    except Exception:
        print("FAILED AT", page.url, page.locator("main").inner_text()[-1500:])
        if page.locator("#evaluations").count():
            print("EVALUATIONS", page.locator("#evaluations").inner_text())
        from webapp.judging.models import CriterionScore, RolloutScore

        # What failed, as stored: the pages only say that each reason is kept with its item.
        for model in (CriterionScore, RolloutScore):
            for row in model.objects.exclude(error="").values("rollout_id", "error")[:10]:
                print("STORED ERROR", model.__name__, row)
        raise


def walk(page, live_server, login, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    started = time.monotonic()
    seed_demo()  # what `make run` leaves: the demo user, its project and the bundled model as an endpoint
    errors = console_errors(page)
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.monotonic() - started, 1)

    login(DEMO_USERNAME, DEMO_PASSWORD)
    with page.expect_navigation():
        page.get_by_role("link", name="Demo: arithmetic").first.click()

    # 1. Import: a new task, its examples from a CSV with a column mapping.
    nav(page, "Tasks")
    page.get_by_role("link", name="New task").click()
    page.fill("#id_name", "Sums")
    page.get_by_role("button", name="Create task").click()
    page.get_by_role("link", name="Import examples").click()
    page.set_input_files("input[type=file]", files=[{"name": "sums.csv", "mimeType": "text/csv",
                                                     "buffer": CSV.encode()}])
    page.get_by_role("button", name="Upload and preview").click()
    page.get_by_label("Use column qid as").select_option("id")
    page.get_by_label("Use column question as").select_option("prompt")
    page.get_by_label("Use column gold as").select_option("answer")
    page.get_by_label("Use column fold as").select_option("split")
    page.get_by_role("button", name="Import all rows").click()
    expect(page.locator(".messages")).to_contain_text("Imported 4 examples from sums.csv.")
    lap("import")

    # 2. A rubric with an LM-judge criterion and a programmatic one.
    nav(page, "Rubrics")
    page.get_by_role("link", name="New rubric").click()
    page.get_by_label("Name", exact=True).fill("Sums judged")
    judge = page.locator("#criterion-0")
    judge.get_by_label("Title").fill("Helpful")
    judge.get_by_label("Key").fill("helpful")
    judge.get_by_label("Question").fill("Does {{ completion }} answer {{ prompt }}?")
    page.get_by_role("button", name="+ Match the answer").click()
    match = page.locator("#criterion-1")
    expect(match.get_by_label("Title")).to_be_focused()  # the swap has settled (htmx's autofocus): now type
    match.get_by_label("Title").fill("Correct")
    match.get_by_label("Key").fill("correct")
    match.get_by_label("Title").blur()
    expect(page.locator("#editor-summary")).to_contain_text("No problems found.")
    with page.expect_navigation():
        page.get_by_role("button", name="Create rubric (v1)").click()
    lap("rubric")

    # 3. Generate: every example, two samples each, with the bundled model.
    nav(page, "Rollouts")
    page.locator("main a[href$='/rollouts/jobs/']").first.click()
    page.select_option("#id_task", label="Sums")
    page.select_option("#id_endpoint", label=DEMO_ENDPOINT_NAME)
    page.fill("#id_samples_per_example", "2")
    page.fill("#id_max_tokens", "12")
    page.fill("#id_seed", "1")
    page.get_by_role("button", name="Start generation job").click()
    page.wait_for_selector("#progress .status-succeeded", timeout=JOB_S)
    assert page.locator(".progress-count").inner_text() == "8 / 8"
    page.get_by_role("link", name="Browse this job's rollouts").click()
    expect(page.locator("table.rollouts tbody tr")).to_have_count(8)
    lap("generate")

    # 4. Judge them with the rubric, the bundled model as the judge.
    nav(page, "Judging")
    pick(page, "#id_rubric_version", "Sums judged v1")
    page.select_option("#id_endpoint", label=DEMO_ENDPOINT_NAME)
    page.select_option("#id_task", label="Sums")
    page.get_by_role("button", name="Start judge job").click()
    page.wait_for_selector("#progress .status-succeeded", timeout=JOB_S)
    lap("judge")

    # 5. A blind review queue of the judged rollouts, labeled with the keyboard.
    nav(page, "Review")
    page.get_by_role("link", name="New queue").click()
    page.fill("#id_name", "Spot check")
    pick(page, "#id_rubric_version", "Sums judged v1")
    page.get_by_label("Items").fill("4")
    pick(page, "#id_task", "Sums")
    assert page.get_by_label("Blind").is_checked()
    with page.expect_navigation():
        page.get_by_role("button", name="Create queue").click()
    page.get_by_role("link", name="Start labeling").click()
    for n in range(4):
        page.wait_for_selector(LABELING_READY)
        assert page.locator("#label-form .judge-score").count() == 0  # blind until submitted
        assert page.locator("h1").inner_text().endswith(f"{n} / 4 labels done")
        page.keyboard.press(str(1 + n % 2))  # helpful: no / yes; focus moves on to "correct"
        page.keyboard.press("2" if n % 2 else "1")
        with page.expect_navigation():
            page.keyboard.press("n")
    expect(page.locator("h1")).to_contain_text("Nothing left for you")
    lap("review")

    # 6. Agreement between the judge and the labels, n shown.
    nav(page, "Review")
    page.get_by_role("link", name="Agreement dashboard").click()
    pick(page, "select[name=version]", "Sums judged v1")
    with page.expect_navigation():
        page.get_by_role("button", name="Show").click()
    card = page.locator("section.agreement-card[data-criterion=helpful]")
    expect(card.locator(".pairs-n")).to_contain_text("n = ")
    lap("agreement")

    # 7. A GRPO run whose reward includes the LM-judge criterion, the bundled model judging in the run.
    nav(page, "Training")
    page.get_by_role("link", name="Launch a GRPO run").click()
    page.fill("#id_name", "Sums loop")
    page.get_by_label("Task").select_option(label="Sums")
    # A rubric version re-renders the whole form (placeholders, calibration) with what was entered when it was
    # asked for: what is chosen while that request is in flight is lost, so wait for it as a person would.
    with page.expect_response(lambda r: "/training/new/" in r.url and r.request.method == "GET"):
        pick(page, "#id_rubric_version", "Sums judged v1")
    page.locator("#calibration table").wait_for()
    page.get_by_label("Judge endpoint").select_option(label=DEMO_ENDPOINT_NAME)
    override = page.get_by_label("Train on this judge anyway")
    override.wait_for()  # four labels do not calibrate a judge: the form says so
    override.check()
    page.get_by_label("Why (kept with the run)").fill("A smoke run of the loop.")
    page.get_by_label("Num generations").fill("2")
    page.get_by_label("Per device train batch size").fill("2")
    page.get_by_label("Max completion length").fill("8")
    page.get_by_label("Max steps").fill("1")
    page.get_by_label("Save steps").fill("1")
    with page.expect_navigation():
        page.get_by_role("button", name="Launch run").click()
    assert not page.locator(".has-error").count(), page.locator(".has-error").all_inner_texts()
    expect(page.locator("h1")).to_contain_text("Sums loop")
    page.locator("#live .job-progress .status", has_text="succeeded").wait_for(timeout=JOB_S)
    run = TrainingRun.objects.get(name="Sums loop")
    assert run.judge_endpoint is not None and "helpful" in run.rubric_version.spec["criteria"][0]["key"]
    lap("train")

    # 8. Evaluate the checkpoint against the base model (the evaluate form appeared without a reload), then open
    # the side-by-side comparison.
    page.get_by_label("Engine").select_option(label=DEMO_ENDPOINT_NAME)
    page.get_by_role("button", name="Evaluate checkpoint").click()
    page.locator("#evaluations .status", has_text="ed").first.wait_for(timeout=JOB_S)  # succeeded / failed
    expect(page.locator("#evaluations .status").first).to_have_text("succeeded")
    assert "checkpoint vs base model" in page.locator("#evaluations h3").inner_text()
    with page.expect_navigation():
        page.locator("#evaluations a.compare-link").first.click()
    rows = page.locator("tr.compare-row")
    expect(rows).to_have_count(2)  # the two eval examples, base and checkpoint side by side
    lap("compare")

    # 9. Export the judged rollouts, picked by name.
    nav(page, "Exports")
    form = page.locator("#export-form")
    form.locator("[name=kind]").select_option("rollouts")
    form.locator("[name=task]").select_option(label="Sums")
    form.locator("[name=rubric_version]").select_option(label="Sums judged v1")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    export = Export.objects.get(project=run.project)
    page.locator(f"#export-{export.pk} .status", has_text="succeeded").wait_for(timeout=JOB_S)
    assert "task: Sums" in page.locator(f"#export-{export.pk}").inner_text()
    lap("export")

    print("readme loop timings (s since start):", timings)
    assert not errors, errors
