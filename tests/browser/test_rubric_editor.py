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
    # htmx focuses the new criterion's title once the swap settles: typing before that lands in whichever field had
    # the focus when it moved (the key once stayed "length_1" while "short" went into the title).
    expect(length.get_by_label("Title")).to_be_focused()
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


def test_save_is_disabled_while_any_form_request_is_in_flight_and_no_console_error(page, live_server, login):
    """Issue 19 item 6: `hx-disabled-elt="find …"` matched nothing for requests of inner elements (the kind select's
    refresh, the live validation): htmx logged an error on every request and Save stayed clickable while the form was
    being replaced. Every request the form or an element inside it sends is recorded with Save's state."""
    from tests.browser.test_review import console_errors

    project = seed_demo()
    errors = console_errors(page)
    login(DEMO_USERNAME, DEMO_PASSWORD)
    page.goto(f"{live_server.url}/p/{project.pk}/rubrics/new/")
    page.evaluate("""() => {
      window.__sends = [];
      let formInFlight = 0;
      document.body.addEventListener("htmx:beforeSend", (event) => {
        const save = document.querySelector("#rubric-editor button[value=save]");
        const elt = event.detail.elt;
        const validate = elt.hasAttribute("hidden");
        window.__sends.push({validate, tag: elt.tagName, saveDisabled: save.disabled, formInFlight});
        if (!validate) formInFlight += 1;
      });
      document.body.addEventListener("htmx:afterRequest", (event) => {
        if (!event.detail.elt.hasAttribute("hidden")) formInFlight -= 1;
      });
    }""")
    page.get_by_label("Name", exact=True).fill("Gated")
    page.locator("#criterion-0").get_by_label("Title").fill("Helpful")  # live validation requests
    page.wait_for_function("() => window.__sends.some((s) => s.validate)")
    page.get_by_role("button", name="+ Match the answer").click()
    page.wait_for_selector("#criterion-1")
    page.locator("#criterion-1").get_by_label("Kind").select_option("format")  # the select's own request
    page.wait_for_function("() => window.__sends.some((s) => s.tag === 'SELECT')")
    page.wait_for_function("() => document.querySelector('#criterion-1 select[name=\"criteria.1.check\"]') !== null")

    sends = page.evaluate("() => window.__sends")
    form_sends = [s for s in sends if not s["validate"]]
    assert form_sends and all(s["saveDisabled"] for s in form_sends), sends
    assert any(s["tag"] == "SELECT" for s in form_sends)
    # A check in flight must not block a click on Save (unless a form request is in flight at the same time).
    alone = [s for s in sends if s["validate"] and not s["formInFlight"]]
    assert alone and all(not s["saveDisabled"] for s in alone), sends
    assert not page.locator("#rubric-editor button[value=save]").is_disabled()
    assert errors == []

    # "+ Gate" starts on the programmatic criterion, not on the LM judge that comes first, and says what a gate does.
    page.get_by_role("button", name="+ Gate").click()
    gate = page.get_by_label("Gate 1: criterion")
    assert gate.input_value() == page.locator("#criterion-1").get_by_label("Key").input_value()
    assert "sets the rollout's whole reward to 0" in page.locator("#gates-help").inner_text()
    assert errors == []


def test_a_slow_live_check_is_not_aborted_by_the_next_edit(page, live_server, login):
    """A check still in flight when the next edit's check is due: the newer one waits (hx-sync queue) instead of
    aborting it, which htmx reports as a console error; the page ends with the newest answer."""
    from tests.browser.test_review import console_errors

    project = seed_demo()
    errors = console_errors(page)
    held, sent = [], []

    def hold_the_first(route):
        sent.append(route.request)
        if held:
            route.continue_()
        else:
            held.append(route)

    login(DEMO_USERNAME, DEMO_PASSWORD)
    page.route("**/rubrics/validate/", hold_the_first)
    page.goto(f"{live_server.url}/p/{project.pk}/rubrics/new/")
    page.get_by_label("Name", exact=True).fill("Slow")
    for _ in range(100):  # the first check is sent after the 700 ms debounce and held here
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1
    page.locator("#criterion-0").get_by_label("Title").fill("Helpful")
    page.wait_for_timeout(1200)  # the second check is due while the first is still unanswered
    assert len(sent) == 1, "a newer check was sent while one was in flight"
    with page.expect_response(lambda r: r.url.endswith("/rubrics/validate/") and r.request == sent[-1] if len(sent) == 2
                              else False):
        held[0].continue_()  # answered, so the queued check goes out (and is answered) next
    assert len(sent) == 2
    assert errors == []
