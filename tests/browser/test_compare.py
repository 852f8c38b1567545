"""Side-by-side comparison and the labeling additions in real Chromium (issue 19, Build): reach the comparison
from the rollout browser, pick the sides by name, sort by the difference (htmx), open a row as a pairwise label and
answer it; rank a group; write a gold response. Any console error fails the test."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from tests.browser.test_review import console_errors
from tests.browser.test_tasks import screenshot
from tests.factories import (
    ExampleFactory,
    GenerationJobFactory,
    RolloutFactory,
    RubricVersionFactory,
    TaskFactory,
)
from tests.webapp.reviews.conftest import build_review_setup
from webapp.core.models import Role
from webapp.judging.models import RolloutScore
from webapp.judging.services import judge_chunk_run, judge_job_create, judge_job_plan
from webapp.reviews import services
from webapp.reviews.models import GoldResponse, PairwiseLabel, RankingLabel, ReviewMode

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SPEC = {"criteria": [
    {"key": "correct", "title": "Correct", "kind": "match", "weight": 2.0, "extract": "answer_tag", "mode": "numeric",
     "tolerance": 0.0},
    {"key": "format", "title": "Answer tag", "kind": "format", "weight": 1.0, "check": "answer_tag"},
]}
BASE, TUNED = "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct GRPO step 40"


def arithmetic_world(make_member):
    """A base model and a GRPO checkpoint answering the same twelve sums, each scored by a real (programmatic) judge
    job of the rubric: the checkpoint learned the answer tag, and regressed on one sum."""
    editor, project = make_member(Role.EDITOR)
    project.name = "Arithmetic GRPO"
    project.save(update_fields=["name"])
    task = TaskFactory(project=project, name="Arithmetic")
    version = RubricVersionFactory(rubric__project=project, rubric__name="Arithmetic", number=1, spec=SPEC)
    base = GenerationJobFactory(project=project, task=task, model_name=BASE)
    tuned = GenerationJobFactory(project=project, task=task, model_name=TUNED)
    for i in range(12):
        a, b = 17 + 7 * i, 25 + 3 * i
        right, wrong = a + b, a + b + 1 + i % 3
        example = ExampleFactory(task=task, prompt=f"What is {a} + {b}? Answer inside <answer></answer>.",
                                 answer=str(right), external_id=f"sum-{i + 1:02d}", split="eval" if i % 3 else "train")
        base_text = {0: f"{a} + {b} = {right}, so <answer>{right}</answer>",
                     1: f"Adding the tens and the ones: <answer>{wrong}</answer>",
                     2: f"{a} + {b} = {right}, so <answer>{right}</answer>",
                     3: f"Let me add {a} and {b}. The answer is {right}."}[i % 4]
        tuned_text = f"{a} + {b - b % 10} = {a + b - b % 10}, plus {b % 10} is {right}. <answer>{right}</answer>"
        if i == 4:  # the checkpoint regressed here
            tuned_text = f"<answer>{wrong}</answer>"
        for job, text in ((base, base_text), (tuned, tuned_text)):
            RolloutFactory(project=project, task=task, example=example, job=job, completion=text,
                           model_name=job.model_name, group_key=f"{job.pk}-{i}")

    def judge_both() -> None:  # in a thread of its own: Playwright's event loop owns this one
        try:
            for job in (base, tuned):
                judge = judge_job_create(project=project, rubric_version=version, selection={"job": job.pk},
                                         enqueue=False)
                for index in judge_job_plan(job_id=judge.pk):
                    judge_chunk_run(job_id=judge.pk, index=index)
        finally:
            connection.close()

    worker = threading.Thread(target=judge_both)
    worker.start()
    worker.join()
    assert RolloutScore.objects.filter(rubric_version=version, total__isnull=False).count() == 24
    return {"editor": editor, "project": project, "version": version, "base": base, "tuned": tuned}


def pick(page, name: str, text: str) -> None:
    """Choose the option of a picker by the name it shows (never by id)."""
    option = page.locator(f"select[name={name}] option", has_text=text).first
    page.select_option(f"select[name={name}]", value=option.get_attribute("value"))


def test_compare_base_and_checkpoint_sort_by_difference_and_label_a_pair(page, live_server, login, make_member):
    w = arithmetic_world(make_member)
    errors = console_errors(page)
    login(w["editor"].username, "pw")
    page.goto(f"{live_server.url}/p/{w['project'].pk}/rollouts/")
    page.click("a.compare-link")
    pick(page, "a_src", f"{BASE} · Arithmetic")
    pick(page, "b_src", f"{TUNED} · Arithmetic")
    page.select_option("select[name=a_version]", label="Arithmetic v1")
    with page.expect_navigation():
        page.click("form.compare-sides button[type=submit]")
    assert page.locator("tr.compare-row").count() == 12
    # Sort by B − A, largest first: htmx swaps the rows without a reload.
    with page.expect_response(lambda r: "sort=diff" in r.url):
        page.select_option("select[name=sort]", "diff")
    page.wait_for_function("document.querySelector('tr.compare-row td.diff').textContent.trim() === '1.000'")
    assert page.locator("tr.compare-row td.diff").last.inner_text().startswith("-")
    diffs = [float(t) for t in page.locator("tr.compare-row td.diff").all_inner_texts() if t.strip() != "—"]
    assert diffs == sorted(diffs, reverse=True) and diffs[-1] < 0
    assert "sort=diff" in page.url
    screenshot(page, "compare")
    # The worst regression (last row) opens as a pairwise label.
    with page.expect_navigation():
        page.locator("tr.compare-row").last.locator("button", has_text="Label pair").click()
    page.wait_for_selector("#pairwise-form")
    with page.expect_navigation():
        page.click("#pairwise-form button[value=tie]")
    # Back on the comparison, as it was sorted.
    page.wait_for_selector("tr.compare-row")
    assert "sort=diff" in page.url and "/compare/" in page.url
    label = PairwiseLabel.objects.get()
    assert label.annotator == w["editor"] and label.preferred == "tie"
    assert not errors, errors


def test_rank_a_group_and_write_a_gold_response(page, live_server, login, make_member):
    s = build_review_setup(make_member)
    ranking = services.review_queue_create(project=s["project"], name="Rank", rubric_version=s["version"], size=2,
                                           mode=ReviewMode.RANKING, blind=False)
    criteria = services.review_queue_create(project=s["project"], name="Gold", rubric_version=s["version"], size=2,
                                            seed=3)
    errors = console_errors(page)
    login(s["ann1"].username, "pw")
    page.goto(f"{live_server.url}/p/{s['project'].pk}/review/{ranking.pk}/next/")
    page.wait_for_selector("#ranking-form")
    selects = page.locator("#ranking-form select")
    assert selects.count() == 3
    for n, rank in enumerate(("2", "3", "1")):
        selects.nth(n).select_option(rank)
    with page.expect_navigation():
        page.click("#ranking-form button[type=submit]")
    label = RankingLabel.objects.get()
    shown = label.item.group_rollout_ids
    assert label.ranking == [shown[2], shown[0], shown[1]]

    page.goto(f"{live_server.url}/p/{s['project'].pk}/review/{criteria.pk}/next/")
    page.wait_for_selector("#gold-panel")
    page.click("#gold-panel summary")
    page.wait_for_selector("#id_gold")  # the panel loads when opened
    page.fill("#id_gold", "<answer>42</answer>")
    with page.expect_response(lambda r: "/gold/" in r.url):
        page.click("#gold-save")
    page.wait_for_selector("#gold-panel .gold-status")
    assert "Saved · v1" in page.locator("#gold-panel .gold-status").inner_text()
    gold = GoldResponse.objects.get()
    assert gold.text == "<answer>42</answer>" and gold.annotator == s["ann1"]
    # The keys of the labeling page do not fire while typing in the gold box.
    page.fill("#id_gold", "n")
    assert "/items/" in page.url
    assert not errors, errors
