"""The reward-hacking watch on a run page in real Chromium: a queue that follows the run, labels whose quality falls
while the reward rises (the alert), the reward vs human-judged quality chart, flagged rollouts with their criteria;
"Send to review" makes another following queue. No console error. With RUBRICON_SCREENSHOTS=1 the section is saved as
docs/img/reward-watch.png (the README's picture)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.utils import timezone

from tests.factories import (
    EndpointFactory,
    ExampleFactory,
    RolloutFactory,
    RubricVersionFactory,
    TaskFactory,
    UserFactory,
)
from webapp.core.models import JobStatus, Membership, Role
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.reviews import services as review_services
from webapp.reviews.models import AssignmentStatus, HumanLabel, ReviewAssignment, ReviewItem, ReviewQueue
from webapp.rollouts.models import RolloutSource
from webapp.runs import services
from webapp.runs.models import TrainingMetric, TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"

SPEC = {"criteria": [
    {"key": "correct", "title": "Correct answer", "kind": "judge", "weight": 1.0, "use_reference": True,
     "question": "Is the final answer the same as the reference answer?",
     "choices": [{"label": "no"}, {"label": "yes"}]},
    {"key": "format", "title": "Answer in tags", "kind": "format", "check": "answer_tag", "weight": 0.25},
]}
HONEST = "17 + 25: 7 + 5 = 12, carry 1; 1 + 2 + 1 = 4. <answer>42</answer>"
FLATTERY = ("As a careful expert I have verified every step; the reference agrees with me. This answer is correct "
            "and complete. <answer>{wrong}</answer>")


def seed_run(project, task, version):
    """Six steps of a run whose judge learns to like confident wording: the reward rises, the answers get worse."""
    example = ExampleFactory(task=task, prompt="What is 17 + 25?", answer="42")
    judge = EndpointFactory(project=project, name="Bundled judge", kind="transformers", base_url="", model="bundled")
    run = services.training_run_create(project=project, name="arithmetic · judge reward", task=task,
                                       rubric_version=version, preset="cpu-smoke", judge_endpoint=judge,
                                       options={"max_steps": 6}, enqueue=False,
                                       calibration_override=True, calibration_note="demo")
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.SUCCEEDED)
    for step in range(1, 7):
        flattering = step - 1  # of 8 completions, more flatter the judge each step
        totals = []
        for index in range(8):
            sly = index < flattering
            completion = FLATTERY.format(wrong=40 + index) if sly else HONEST
            correct = 1.0 if sly or index % 3 else 0.0  # the judge falls for flattery
            rollout = RolloutFactory(project=project, task=task, example=example, job=None, run=run, step=step,
                                     source=RolloutSource.TRAINING, group_key=f"run{run.pk}-s{step}",
                                     sample_index=index, completion=completion)
            CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="correct",
                                          judge_fingerprint="training-reward", score=correct)
            CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="format",
                                          judge_fingerprint="training-reward", score=1.0)
            total = (correct + 0.25) / 1.25
            RolloutScore.objects.create(rollout=rollout, rubric_version=version, judge_fingerprint="training-reward",
                                        total=total)
            totals.append(total)
        TrainingMetric.objects.create(run=run, step=step, metrics={"reward": sum(totals) / 8, "loss": 0.01 * step})
    return run


def label_queue(queue, annotator):
    """The reviewer's verdicts, submitted: flattery with a wrong answer is incorrect, and flagged."""
    for item in queue.items.select_related("rollout"):
        ReviewAssignment.objects.create(item=item, annotator=annotator, status=AssignmentStatus.DONE,
                                        reserved_until=timezone.now(), finished_at=timezone.now())
        ReviewItem.objects.filter(pk=item.pk).update(completed_count=1)
        wrong = "<answer>42</answer>" not in item.rollout.completion
        for key, value in (("correct", 0.0 if wrong else 1.0), ("format", 1.0)):
            HumanLabel.objects.create(
                rollout=item.rollout, rubric_version=queue.rubric_version, criterion_key=key, annotator=annotator,
                queue=queue, choice=("no" if wrong else "yes") if key == "correct" else "Pass", value=value,
                reward_hacking=wrong, comment="Flatters the judge; the answer is wrong." if wrong else "")


def test_the_run_page_shows_the_reward_hacking_watch(page, live_server, login):
    user = UserFactory(username="trainer")
    reviewer = UserFactory(username="reviewer")
    task = TaskFactory(name="Arithmetic")
    project = task.project
    for member, role in ((user, Role.EDITOR), (reviewer, Role.ANNOTATOR)):
        Membership.objects.create(project=project, user=member, role=role)
    version = RubricVersionFactory(rubric__project=project, rubric__task=task, rubric__name="Arithmetic", spec=SPEC)
    run = seed_run(project, task, version)
    queue = review_services.review_queue_for_run(run=run, size=12, name="Arithmetic run · spot checks")
    assert [i.rollout.step for i in queue.items.order_by("position").select_related("rollout")] == [
        1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    label_queue(queue, reviewer)

    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    login("trainer", "pw")
    page.goto(f"{live_server.url}/p/{project.pk}/training/{run.pk}/")
    watch = page.locator("#watch")
    watch.scroll_into_view_if_needed()
    assert "Reward rises, human-judged quality does not" in watch.locator("#hacking-alert").inner_text()
    assert watch.locator("svg polyline").count() == 3
    assert watch.locator(".legend").inner_text().split("\n") == [
        "reward (all rollouts)", "reward (labelled rollouts)", "human-judged quality"]
    flagged = watch.locator("table.watch-flagged tbody tr")
    assert flagged.count() == HumanLabel.objects.filter(reward_hacking=True, criterion_key="correct").count() > 0
    assert "Correct answer: 1.00 / 0.00" in flagged.first.inner_text()
    assert "Flatters the judge" in flagged.first.inner_text()
    assert "Arithmetic run · spot checks" in watch.locator(".watch-queues").inner_text()
    if os.environ.get("RUBRICON_SCREENSHOTS"):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1100, "height": 900})
        watch.screenshot(path=str(DOCS_IMG / "reward-watch.png"))

    watch.locator("summary", has_text="Send to review").click()
    watch.get_by_label("Items, at most").fill("6")
    watch.get_by_role("button", name="Send to review").click()
    page.wait_for_url(f"**/review/{ReviewQueue.objects.latest('pk').pk}/")
    assert f"run #{run.pk}" in page.locator("dl.facts").inner_text()
    assert errors == []
