"""Authoring journeys in real Chromium: import a CSV with a column mapping and see the examples; edit an example
inline (htmx) and change its split; create a task and hit a template error at the field."""

from __future__ import annotations

import os

import pytest

from tests.conftest import REPO_ROOT
from webapp.demo.seed import DEMO_PASSWORD, DEMO_TASK_NAME, DEMO_USERNAME, seed_demo
from webapp.tasks.models import Example, Task

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
CSV = (
    "qid,question,gold,fold,source\n"
    'geo-1,"What is the capital of France?",Paris,train,atlas\n'
    "geo-2,What is the capital of Peru?,Lima,eval,atlas\n"
    "geo-3,What is the capital of Kenya?,Nairobi,train,atlas\n"
)


def screenshot(page, name: str) -> None:
    if os.environ.get("RUBRICON_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def demo_task(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    seed_demo()
    return Task.objects.get(name=DEMO_TASK_NAME)


def test_import_a_csv_with_a_mapping_and_see_the_examples(page, live_server, login, demo_task):
    login(DEMO_USERNAME, DEMO_PASSWORD)
    page.goto(f"{live_server.url}/p/{demo_task.project_id}/tasks/{demo_task.pk}/")
    page.get_by_role("link", name="Import examples").click()
    page.set_input_files("input[type=file]", files=[
        {"name": "capitals.csv", "mimeType": "text/csv", "buffer": CSV.encode()}])
    page.get_by_role("button", name="Upload and preview").click()

    assert page.locator("h1").inner_text() == "Map the columns of capitals.csv"
    assert "What is the capital of Peru?" in page.locator("table.import-preview").inner_text()
    assert Example.objects.filter(task=demo_task, external_id__startswith="geo").count() == 0
    page.get_by_label("Use column qid as").select_option("id")
    page.get_by_label("Use column question as").select_option("prompt")
    page.get_by_label("Use column gold as").select_option("answer")
    page.get_by_label("Use column fold as").select_option("split")
    page.get_by_label("Use column source as").select_option("ignore")
    screenshot(page, "import-mapping")
    page.get_by_role("button", name="Import all rows").click()

    assert "Imported 3 examples from capitals.csv." in page.locator(".messages").inner_text()
    examples = page.locator("#examples").inner_text()
    assert "geo-1" in examples and "What is the capital of Kenya?" in examples and "Nairobi" in examples
    assert Example.objects.get(task=demo_task, external_id="geo-2").split == "eval"
    assert Example.objects.get(task=demo_task, external_id="geo-1").info == {}

    # The same file again (a retry after a dropped connection): the preview already says it was imported, and
    # importing it is refused as a whole.
    page.get_by_role("link", name="Import examples").click()
    page.set_input_files("input[type=file]", files=[
        {"name": "capitals.csv", "mimeType": "text/csv", "buffer": CSV.encode()}])
    page.get_by_role("button", name="Upload and preview").click()
    assert "already imported as import #" in page.locator("[role=alert]").inner_text()
    page.get_by_role("button", name="Import all rows").click()
    assert "already imported as import #" in page.locator("[role=alert]").first.inner_text()
    assert Example.objects.filter(task=demo_task, external_id__startswith="geo").count() == 3
    # Asked to import a copy, the rows' ids still clash: refused as a whole, with the line named.
    page.get_by_label("Import a copy").check()
    page.get_by_role("button", name="Import all rows").click()
    assert "Line 2: id 'geo-1' already exists in this task (3 ids in all). Nothing was imported." in (
        page.locator("[role=alert]").first.inner_text())
    assert Example.objects.filter(task=demo_task, external_id__startswith="geo").count() == 3


def test_edit_an_example_inline_and_change_its_split(page, live_server, login, demo_task):
    example = demo_task.examples.order_by("-pk").first()  # the first row of the table
    login(DEMO_USERNAME, DEMO_PASSWORD)
    page.goto(f"{live_server.url}/p/{demo_task.project_id}/tasks/{demo_task.pk}/")
    row = page.locator(f"#example-{example.pk}")
    row.locator("td").nth(2).click()  # a click on the prompt opens the inline editor (htmx)
    # Swapped-in content carries `htmx-added` until htmx has bound its attributes (one settle later, ~20 ms, more
    # on a busy machine); a change made before that would fire no request, so wait as a person would.
    settled = f"#example-{example.pk}:not(.htmx-added)"
    page.locator(f"{settled} form.example-edit").wait_for()
    editor = page.locator(f"#example-{example.pk} form.example-edit")
    editor.get_by_label("Prompt").fill("What is 6 * 7? Answer with a number.")
    editor.get_by_label("Reference answer").fill("42")
    screenshot(page, "example-inline-edit")
    editor.get_by_role("button", name="Save").click()
    page.locator(f"#example-{example.pk} form.example-edit").wait_for(state="detached")
    page.locator(settled).wait_for()
    assert "What is 6 * 7? Answer with a number." in row.inner_text()
    assert page.url.endswith(f"/tasks/{demo_task.pk}/")  # an in-place swap, no navigation

    row.get_by_label(f"Split of {example.external_id}").select_option("train")
    page.wait_for_function(
        "id => document.querySelector(`#example-${id} select`).getAttribute('hx-vals').includes('\"3\"')",
        arg=example.pk, timeout=60_000)  # a model engine starting in the session worker can stall the page a while
    example.refresh_from_db()
    assert (example.prompt, example.answer, example.split, example.row_version) == (
        "What is 6 * 7? Answer with a number.", "42", "train", 3)

    page.reload()
    assert "What is 6 * 7?" in page.locator(f"#example-{example.pk}").inner_text()


def test_create_a_task_fixing_a_template_error(page, live_server, login, demo_task):
    login(DEMO_USERNAME, DEMO_PASSWORD)
    page.goto(f"{live_server.url}/p/{demo_task.project_id}/tasks/")
    page.get_by_role("link", name="New task").click()
    page.get_by_label("Name").fill("Capitals")
    assert not page.get_by_label("Environment", exact=True).is_visible()  # single-turn hides environment fields
    page.get_by_label("Prompt template").fill("Question: {{ question }}")
    page.get_by_role("button", name="Create task").click()
    assert "Unknown variable 'question'" in page.locator(".field-prompt_template .errorlist").inner_text()
    page.get_by_label("Prompt template").fill("Question: {{ prompt }}")
    page.get_by_role("button", name="Create task").click()
    assert page.locator("h1").inner_text() == "Capitals"
    assert "Question: {{ prompt }}" in page.locator("pre.text").last.inner_text()


def test_a_file_above_the_limit_is_refused_before_it_is_uploaded(page, live_server, login, demo_task, settings):
    settings.RUBRICON_MAX_IMPORT_MB = 1
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    login(DEMO_USERNAME, DEMO_PASSWORD)
    posts.clear()
    page.goto(f"{live_server.url}/p/{demo_task.project_id}/tasks/{demo_task.pk}/import/")
    page.set_input_files("input[type=file]", files=[
        {"name": "big.jsonl", "mimeType": "application/json", "buffer": b'{"id": 1, "prompt": "x"}\n' * 100_000}])
    alert = page.locator("#file-size-error")
    assert alert.inner_text() == ("The file is 2 MB; imports are limited to 1 MB. "
                                  "Split it into smaller files and import them one after another.")
    page.get_by_role("button", name="Upload and preview").click()
    assert alert.is_visible() and posts == []


def test_pages_run_under_the_csp_without_violations_and_delete_asks_first(page, live_server, login, demo_task):
    """The CSP allows no inline script: what used to be inline (confirm on delete, the row's click-to-edit) runs
    from static/js/app.js, and Chromium reports no violation on the way."""
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    login(DEMO_USERNAME, DEMO_PASSWORD)
    page.goto(f"{live_server.url}/p/{demo_task.project_id}/tasks/{demo_task.pk}/edit/")
    dialogs: list[str] = []

    def dismiss(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.get_by_role("button", name="Delete task").click()
    page.wait_for_timeout(300)
    assert dialogs == [f"Delete the task “{demo_task.name}” and all its examples?"]
    assert Task.objects.filter(pk=demo_task.pk).exists()  # dismissed: nothing deleted
    for path in ("", f"p/{demo_task.project_id}/", f"p/{demo_task.project_id}/tasks/{demo_task.pk}/",
                 f"p/{demo_task.project_id}/rubrics/", f"p/{demo_task.project_id}/review/"):
        page.goto(f"{live_server.url}/{path}")
        page.wait_for_load_state("networkidle")
    assert violations == []
