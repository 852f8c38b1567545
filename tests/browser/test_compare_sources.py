"""Comparison sides beyond generation jobs in real Chromium (issue 19): from the grouped rollouts picker, a training
run at one step against the same run at another step, then against an import; chosen by name, with steps; the
paired table shows. Any console error fails the test."""

from __future__ import annotations

import pytest

from tests.browser.test_compare import pick
from tests.browser.test_review import console_errors
from tests.browser.test_tasks import screenshot
from tests.webapp.compare.test_compare_sources import build, side
from tests.webapp.compare.test_compare_sources import page as comparison

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_compare_a_run_step_with_another_step_and_with_an_import(page, live_server, login, make_member):
    w = build(make_member)
    browser = page
    errors = console_errors(browser)
    login(w["editor"].username, "pw")
    browser.goto(f"{live_server.url}/p/{w['project'].pk}/compare/")
    groups = browser.locator("select[name=a_src] optgroup").evaluate_all("gs => gs.map(g => g.label)")
    assert any(g.startswith("Training runs") for g in groups) and "Imports" in groups

    # Step 1 of the run against step 4 of the same run (B: the run again, picked by name, with its step).
    pick(browser, "a_src", "grpo-demo · bundled")
    browser.fill("input[name=a_steps]", "1")
    pick(browser, "b_src", "grpo-demo · bundled")
    browser.fill("input[name=b_steps]", "4")
    pick(browser, "a_version", "Arith")
    with browser.expect_navigation():
        browser.click("form.compare-sides button[type=submit]")
    expected = comparison(side(w, run_id=w["run"].pk, steps="1"), side(w, "B", run_id=w["run"].pk, steps="4"))
    rows = browser.locator("tr.compare-row")
    assert rows.count() == len(expected.rows) > 0
    assert "step 1 answer" in rows.first.inner_text() and "step 4 answer" in rows.first.inner_text()
    diffs = {t.strip() for t in browser.locator("tr.compare-row td.diff").all_inner_texts()}
    assert diffs == {"0.300"}, diffs  # reward step/10: step 4 − step 1
    screenshot(browser, "compare-steps")

    # The same step 1 against the import, picked by its file name from the "Imports" group.
    pick(browser, "b_src", "vf-eval-run.jsonl")
    with browser.expect_navigation():
        browser.click("form.compare-sides button[type=submit]")
    expected = comparison(side(w, run_id=w["run"].pk, steps="1"), side(w, "B", import_id=w["batch"].pk))
    rows = browser.locator("tr.compare-row")
    assert rows.count() == len(expected.rows) > 0
    assert "imported answer" in rows.first.inner_text()
    assert f"b_import={w['batch'].pk}" in browser.url or f"b_src=import%3A{w['batch'].pk}" in browser.url
    assert not errors, errors
