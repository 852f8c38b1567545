"""A person's first minute with Rubricon, in real Chromium: log in, open the demo project, see the task and rubric."""

from __future__ import annotations

import os

import pytest

from tests.conftest import REPO_ROOT
from webapp.demo.seed import DEMO_PASSWORD, DEMO_RUBRIC_NAME, DEMO_TASK_NAME, DEMO_USERNAME, seed_demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = REPO_ROOT / "var" / "screenshots"


def test_demo_user_logs_in_and_sees_the_task_and_rubric(page, live_server, login):
    seed_demo()
    page.goto(f"{live_server.url}/p/1/tasks/")
    assert "/login/" in page.url  # not logged in yet

    login(DEMO_USERNAME, "wrong")
    assert page.locator(".error").inner_text().startswith("Your username and password didn't match")
    login(DEMO_USERNAME, DEMO_PASSWORD)

    page.get_by_role("link", name="Demo: arithmetic").click()
    assert page.locator("h1").inner_text() == "Demo: arithmetic"
    assert page.locator(".stat", has_text="examples").locator(".n").inner_text() == "50"

    page.get_by_role("navigation", name="Project sections").get_by_role("link", name="Tasks").click()
    page.get_by_role("link", name=DEMO_TASK_NAME, exact=True).click()
    assert "What is" in page.locator("#examples").inner_text()
    page.locator(".filters").get_by_role("link", name="Eval").click()  # htmx swap of the examples table
    page.wait_for_url("**split=eval")
    assert page.locator("#examples tbody tr").count() == 10

    page.get_by_role("navigation", name="Project sections").get_by_role("link", name="Rubrics").click()
    page.get_by_role("link", name=DEMO_RUBRIC_NAME, exact=True).click()
    criteria = page.locator("table.criteria").inner_text()
    assert "correct" in criteria and "format" in criteria
    if os.environ.get("RUBRICON_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "rubric.png"), full_page=True)


def test_htmx_is_served_locally_and_csrf_header_is_set(page, live_server, login):
    seed_demo()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    login(DEMO_USERNAME, DEMO_PASSWORD)
    assert page.evaluate("typeof htmx") == "object"
    assert all(url.startswith(live_server.url) for url in requests), [u for u in requests if not u.startswith(live_server.url)]
    assert "X-CSRFToken" in page.locator("body").get_attribute("hx-headers")
