"""Review journeys in real Chromium: label five items with the keyboard only in a blind queue (scores appear only
after submitting), and read dashboard figures equal to an independent computation."""

from __future__ import annotations

import pytest

from tests.browser.test_tasks import screenshot
from tests.webapp.reviews.conftest import build_review_setup
from tests.webapp.reviews.test_dashboard import build_fixture, expected
from webapp.core.models import Role
from webapp.reviews import services
from webapp.reviews.models import HumanLabel, ReviewAssignment

# The labeling page once static/js/labeling.js has run (it focuses a criterion): keys pressed before that do
# nothing, and the element alone is there while the deferred script may still be loading on a busy machine.
LABELING_READY = "form[data-labeling] fieldset.criterion.focused"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def review_setup(make_member):
    return build_review_setup(make_member)


def test_label_five_items_with_the_keyboard_only_in_blind_mode(page, live_server, login, review_setup):
    s = review_setup
    queue = services.review_queue_create(project=s["project"], name="Keyboard", rubric_version=s["version"], size=5,
                                         seed=5, blind=True)
    login(s["ann1"].username, "pw")
    page.goto(f"{live_server.url}/p/{s['project'].pk}/review/{queue.pk}/next/")
    for n in range(5):
        page.wait_for_selector(LABELING_READY)
        assert page.locator("#label-form .judge-score").count() == 0  # blind until submitted
        assert page.locator("fieldset.criterion.focused").get_attribute("data-key") == "helpful"
        page.keyboard.press("?")
        assert page.locator("#keys-help").is_visible()
        page.keyboard.press("?")
        page.keyboard.press(str(1 + n % 3))  # helpful: no / partly / yes, then focus moves on
        assert page.locator("fieldset.criterion.focused").get_attribute("data-key") == "correct"
        page.keyboard.press("k")
        page.keyboard.press("j")
        page.keyboard.press("2")  # correct: Pass
        if n == 1:
            screenshot(page, "review-label")
        with page.expect_navigation():
            page.keyboard.press("n")
        # The item just labeled now shows the judge next to the annotator's answers.
        assert page.locator("#reveal .judge-score").count() == 2
        # Helpful reads the judge's choice; the programmatic check reads Pass / Fail, not "(1.00)".
        assert page.locator("#reveal .verdict").all_inner_texts()[1] in ("Pass", "Fail")
    assert "Nothing left for you" in page.locator("h1").inner_text()
    labels = HumanLabel.objects.filter(annotator=s["ann1"], queue=queue)
    assert labels.count() == 10
    assert sorted(labels.filter(criterion_key="helpful").values_list("value", flat=True)) == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert set(labels.filter(criterion_key="correct").values_list("choice", flat=True)) == {"Pass"}
    assert ReviewAssignment.objects.filter(annotator=s["ann1"], status="done").count() == 5


def test_dashboard_shows_the_fixture_figures(page, live_server, login, make_member):
    user, project = make_member(Role.VIEWER)
    version, judge, human, h1, h2 = build_fixture(project)
    want = expected(judge, human, h1, h2)
    login(user.username, "pw")
    page.goto(f"{live_server.url}/p/{project.pk}/review/agreement/?version={version.pk}")
    card = page.locator("section.agreement-card[data-criterion=helpful]")
    # Split labels leave the figures (issue 16): n counts the paired items, and one kappa per criterion kind is shown.
    assert card.locator(".pairs-n").inner_text() == f"n = {len(judge)}"
    assert card.locator("tr[data-stat=cohen_kappa]").count() == 0
    for name in ("weighted_kappa", "krippendorff_alpha", "spearman", "mae", "bias", "human_alpha"):
        assert card.locator(f"tr[data-stat={name}] .value").inner_text() == f"{want[name]:.3f}".replace("-0.000", "0.000"), name
    assert card.locator("svg.calibration circle").count() >= 2
    # "n = 12" is one token: at a narrow width it never breaks across lines (issue 19 item 10).
    page.set_viewport_size({"width": 480, "height": 900})
    counts = card.locator(".n-count, .pairs-n")
    assert counts.count() >= 3
    for height, line in counts.evaluate_all(
            "els => els.map(e => [e.getBoundingClientRect().height, parseFloat(getComputedStyle(e).fontSize) * 1.7])"):
        assert height <= line, (height, line)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_selector("#bias")  # the diagnostics load after the page
    screenshot(page, "review-agreement")
    assert "Length vs score" in page.locator("#bias").inner_text()


def test_comment_and_flag_autosave_while_typing_and_a_stale_tab_is_refused(page, live_server, login, review_setup):
    s = review_setup
    queue = services.review_queue_create(project=s["project"], name="Notes", rubric_version=s["version"], size=2,
                                         seed=3, blind=True)
    login(s["ann1"].username, "pw")
    page.goto(f"{live_server.url}/p/{s['project'].pk}/review/{queue.pk}/next/")
    page.wait_for_selector(LABELING_READY)
    # Typed before any answer: kept on the page, then saved with the first answer.
    page.locator("#id_comment").fill("copies the prompt")
    page.wait_for_selector('#note-status[data-state="pending"]')
    page.locator("#id_comment").press("Escape")
    page.keyboard.press("3")  # helpful: yes (autosaves the criterion, comment included)
    page.wait_for_selector("#criterion-helpful .saved")
    label = HumanLabel.objects.get(annotator=s["ann1"], queue=queue, criterion_key="helpful")
    assert (label.choice, label.comment) == ("yes", "copies the prompt")
    # The flag by keyboard and an edited comment autosave onto the saved label, without submitting.
    page.keyboard.press("h")
    page.wait_for_selector('#note-status[data-state="saved"]')
    page.locator("#id_comment").fill("copies the prompt verbatim")
    page.wait_for_function("() => document.querySelector('#note-status').textContent.includes('saved') && "
                           "document.querySelector('#row-version-helpful').value === '3'")
    label.refresh_from_db()
    assert (label.comment, label.reward_hacking, label.row_version) == ("copies the prompt verbatim", True, 3)
    # Another tab changes the label meanwhile: this page's next autosave is refused and overwrites nothing.
    item = ReviewAssignment.objects.get(annotator=s["ann1"], item__queue=queue).item
    item.queue = queue
    services.item_note_save(item=item, annotator=s["ann1"], comment="from the other tab", reward_hacking=False,
                            row_versions={"helpful": 3})
    page.locator("#id_comment").fill("late text")
    page.wait_for_selector('#note-status[data-state="conflict"]')
    assert "from the other tab" in page.locator("#note-status .current-comment").inner_text()
    label.refresh_from_db()
    assert (label.comment, label.reward_hacking, label.row_version) == ("from the other tab", False, 4)


def console_errors(page) -> list[str]:
    """Collect the page's console errors and uncaught exceptions (htmx logs a selector matching nothing here)."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_keys_follow_the_help_a_pick_moves_on_and_p_goes_back(page, live_server, login, review_setup):
    """Issue 19 item 7: the help states the model (a pick answers the focused criterion and focuses the next one);
    doing what it says answers every criterion, and `p` reopens the item labeled before."""
    s = review_setup
    queue = services.review_queue_create(project=s["project"], name="Keys", rubric_version=s["version"], size=3, seed=2)
    errors = console_errors(page)
    login(s["ann1"].username, "pw")
    page.goto(f"{live_server.url}/p/{s['project'].pk}/review/{queue.pk}/next/")
    page.wait_for_selector(LABELING_READY)
    first_url = page.url
    page.keyboard.press("?")
    help_text = page.locator("#keys-help").inner_text()
    assert "moves the focus to the next criterion by itself" in help_text
    assert "open the previous item you labeled" in help_text
    page.keyboard.press("?")
    assert not page.locator("#keys-help").is_visible()
    # As the help says: a digit per criterion, no `j` in between.
    page.keyboard.press("3")  # helpful: yes
    page.keyboard.press("2")  # correct: Pass
    page.wait_for_selector("#criterion-correct .saved")
    page.wait_for_selector("#criterion-helpful .saved")
    with page.expect_navigation():
        page.keyboard.press("n")
    page.wait_for_selector(LABELING_READY)
    assert page.url.split("?")[0] != first_url.split("?")[0]
    first = ReviewAssignment.objects.get(annotator=s["ann1"], status="done").item
    assert {label.criterion_key: label.choice for label in HumanLabel.objects.filter(annotator=s["ann1"])} == {
        "helpful": "yes", "correct": "Pass"}
    # `p`: back to the item just labeled, with its answers, to change them.
    with page.expect_navigation():
        page.keyboard.press("p")
    assert page.url.split("?")[0].endswith(f"/items/{first.pk}/")
    assert page.locator('#criterion-helpful input[value="yes"]').is_checked()
    assert page.locator('#criterion-correct input[value="Pass"]').is_checked()
    assert "Save" in page.locator("#label-form button.primary").inner_text()
    assert errors == []


def test_pairwise_skip_key_and_button_reference_answer_and_badge(page, live_server, login, review_setup):
    """Issue 19 item 11: `s` skips a pairwise item (and a Skip button is there), the reference answer is shown, and
    the blind badge does not promise judge scores that pairwise never shows."""
    s = review_setup
    for r in s["rollouts"]:
        r.example.answer = f"answer-{r.example.pk}"
        r.example.save(update_fields=["answer"])
    queue = services.review_queue_create(project=s["project"], name="Pairs", rubric_version=s["version"], size=4,
                                         seed=4, mode="pairwise", blind=True)
    errors = console_errors(page)
    login(s["ann1"].username, "pw")
    page.goto(f"{live_server.url}/p/{s['project'].pk}/review/{queue.pk}/next/")
    page.wait_for_selector("form[data-pairwise]")
    assignment = ReviewAssignment.objects.get(annotator=s["ann1"], item__queue=queue)
    assert page.locator(".reference-answer").inner_text() == f"Reference answer: answer-{assignment.item.rollout.example.pk}"
    assert page.locator(".blind-badge").inner_text() == "Blind: judge scores stay hidden while you compare"
    assert page.get_by_role("button", name="Skip s").is_visible()
    page.keyboard.press("?")
    assert "skip this item" in page.locator("#keys-help").inner_text()
    page.keyboard.press("?")
    with page.expect_navigation():
        page.keyboard.press("s")
    page.wait_for_selector("form[data-pairwise]")
    assignment.refresh_from_db()
    assert assignment.status == "skipped"
    assert not page.url.split("?")[0].endswith(f"/items/{assignment.item_id}/")
    assert errors == []
