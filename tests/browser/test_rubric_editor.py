"""Authoring a rubric in real Chromium: three criteria of different kinds, an invalid regex shown inline (live
htmx validation) and fixed, live weight shares, save v1, edit and save v2, the diff, restore v1 as v3."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_tasks import screenshot
from webapp.demo.seed import DEMO_PASSWORD, DEMO_USERNAME, seed_demo
from webapp.judging.models import CriterionScore
from webapp.rubrics.models import Rubric

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

def test_author_a_rubric_fix_an_error_version_diff_and_restore(page, live_server, login, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    project = seed_demo()
    login(DEMO_USERNAME, DEMO_PASSWORD)
    page.goto(f"{live_server.url}/p/{project.pk}/rubrics/")
    page.get_by_role("link", name="New rubric").click()
    expect(page.locator("h1")).to_have_text("New rubric")

    page.get_by_label("Name", exact=True).fill("Capitals")
    judge = page.locator("#criterion-0")
    judge.get_by_label("Title").fill("Helpful")
    judge.get_by_label("Key").fill("helpful")
    judge.get_by_label("Question").fill("Does {{ completion }} answer {{ prompt }} helpfully?")
    judge.get_by_label("Choice 2 label").fill("yes")

    page.get_by_role("button", name="+ Match the answer").click()  # htmx: the form comes back with criterion 2
    match = page.locator("#criterion-1")
    expect(match.get_by_label("Title")).to_be_focused()
    match.get_by_label("Title").fill("Correct city")
    match.get_by_label("Key").fill("correct")
    match.get_by_label("Compare by").select_option("regex")
    match.get_by_label("Pattern").fill("([A-Z][a-z]+")
    match.get_by_label("Pattern").blur()
    # Live validation: the engine's error lands under the pattern input, found by its field path.
    expect(page.locator("#err-criteria-1-pattern")).to_contain_text("invalid regex (missing ): ([A-Z][a-z]+)")
    expect(page.locator("#editor-summary")).to_contain_text("1 problem to fix")
    screenshot(page, "rubric-editor-error")

    # Weights: the normalized share is updated as the user types (weight 0 = a logged metric).
    match.get_by_label("Weight").fill("3")
    expect(judge.locator("output")).to_have_text("25%")
    expect(match.locator("output")).to_have_text("75%")

    # Saving with the error is refused, nothing is written, and the error is still at the field.
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/rubrics/new/")) as saved:
        page.get_by_role("button", name="Create rubric (v1)").click()
    assert saved.value.status == 400
    expect(page.locator("#err-criteria-1-pattern")).to_contain_text("invalid regex")
    assert not Rubric.objects.filter(name="Capitals").exists()

    match.get_by_label("Pattern").fill("^[A-Z][a-z]+$")
    match.get_by_label("Pattern").blur()
    expect(page.locator("#err-criteria-1-pattern")).to_be_empty()
    expect(page.locator("#editor-summary")).to_contain_text("No problems found.")

    page.get_by_role("button", name="+ Length").click()
    length = page.locator("#criterion-2")
    length.get_by_label("Title").fill("Short")
    length.get_by_label("Key").fill("short")
    length.get_by_label("Max").fill("200")
    length.get_by_label("Weight").fill("0")
    expect(length.locator("output")).to_have_text("metric")
    expect(match.locator("output")).to_have_text("75%")
    screenshot(page, "rubric-editor")
    page.get_by_role("button", name="Create rubric (v1)").click()

    expect(page.locator(".messages")).to_contain_text("Rubric “Capitals” created (v1).")
    rubric = Rubric.objects.get(project=project, name="Capitals")
    v1 = rubric.versions.get()
    assert [(c["key"], c["kind"]) for c in v1.spec["criteria"]] == [
        ("helpful", "judge"), ("correct", "match"), ("short", "length")]
    assert v1.spec["criteria"][1]["pattern"] == "^[A-Z][a-z]+$" and v1.spec["criteria"][2]["weight"] == 0
    # a score tied to v1 must survive everything below unchanged
    score = CriterionScore.objects.create(rollout=project.rollouts.first() or _rollout(project), rubric_version=v1,
                                          criterion_key="correct", judge_fingerprint="programmatic", score=1.0)

    page.get_by_role("link", name="Edit", exact=True).click()
    length = page.locator("#criterion-2")
    length.get_by_label("Max").fill("120")
    page.locator("#criterion-2").get_by_role("button", name="Move criterion 3 up").click()  # htmx reorder
    expect(page.locator("#criterion-1").get_by_label("Key")).to_have_value("short")
    page.get_by_label("Version note").fill("Shorter answers, length first")
    page.get_by_role("button", name="Save as v2").click()
    expect(page.locator(".messages")).to_contain_text("Saved v2: Shorter answers, length first")
    assert [c["key"] for c in rubric.versions.get(number=2).spec["criteria"]] == ["helpful", "short", "correct"]

    page.get_by_role("link", name="diff with v1").click()
    expect(page.locator("h1")).to_have_text("Compare v1 with v2")
    expect(page.locator('[data-field="short.max"] td.old')).to_have_text("200")
    expect(page.locator('[data-field="short.max"] td.new')).to_have_text("120")
    expect(page.locator("#diff-short")).to_contain_text("moved from #3 to #2")
    expect(page.locator("#diff-summary")).to_contain_text("1 changed")
    screenshot(page, "rubric-diff")

    page.get_by_role("link", name="Capitals").click()
    page.get_by_role("button", name="Restore v1").click()
    expect(page.locator(".messages")).to_contain_text("Restored v1 as v3.")
    expect(page.locator("#version-3")).to_contain_text("Restored from v1")
    screenshot(page, "rubric-history")
    v3 = rubric.versions.get(number=3)
    assert v3.spec == v1.spec
    v1.refresh_from_db()
    assert v1.number == 1 and [c["key"] for c in v1.spec["criteria"]] == ["helpful", "correct", "short"]
    score.refresh_from_db()
    assert score.rubric_version_id == v1.pk and score.score == 1.0


def _rollout(project):
    from tests.factories import RolloutFactory

    return RolloutFactory(project=project, task=project.tasks.first())
