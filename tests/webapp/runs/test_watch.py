"""Reward-hacking watch: review queues that follow a run (stratified by step and reward, up to a cap), the run
page's queues, labels, reward vs human-judged quality chart, flagged rollouts and the alert; blind review holds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import EndpointFactory, ExampleFactory, RolloutFactory, RubricVersionFactory, TaskFactory
from tests.webapp.runs.test_calibration import JUDGED
from webapp.core.models import Role
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.reviews import services as review_services
from webapp.reviews.models import AssignmentStatus, HumanLabel, ReviewAssignment, ReviewItem, ReviewQueue
from webapp.reviews.watch import StepPoint, hacking_alert, run_watch
from webapp.rollouts.models import RolloutSource
from webapp.runs import services

SPEC = {"criteria": [
    {"key": "correct", "title": "Correct", "kind": "match", "weight": 1.0, "extract": "answer_tag", "mode": "numeric"},
    {"key": "short", "title": "Short", "kind": "length", "weight": 0.0, "unit": "chars", "max": 12},
]}


@pytest.fixture
def world(make_member, client):
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    task = TaskFactory(project=project)
    example = ExampleFactory(task=task, prompt="What is 2 + 2?", answer="4")
    version = RubricVersionFactory(rubric__project=project, rubric__task=task, spec=SPEC)
    run = services.training_run_create(project=project, name="watched", task=task, rubric_version=version,
                                       preset="cpu-smoke", options={"max_steps": 4}, enqueue=False)
    return {"user": user, "project": project, "task": task, "example": example, "version": version, "run": run}


def add_step(world, step: int, rewards: list[float]) -> list:
    """A training step's rollouts with the rewards the run stored (as training_run_ingest does)."""
    rollouts = []
    for index, reward in enumerate(rewards):
        rollout = RolloutFactory(project=world["project"], task=world["task"], example=world["example"], job=None,
                                 run=world["run"], step=step, source=RolloutSource.TRAINING, group_key=f"s{step}",
                                 sample_index=index, completion=f"step {step} sample {index} reward {reward}")
        for key in ("correct", "short"):
            CriterionScore.objects.create(rollout=rollout, rubric_version=world["version"], criterion_key=key,
                                          judge_fingerprint="training-reward", score=reward)
        RolloutScore.objects.create(rollout=rollout, rubric_version=world["version"],
                                    judge_fingerprint="training-reward", total=reward)
        rollouts.append(rollout)
    return rollouts


def label(world, rollout, value: float, *, user=None, hacking=False, comment=""):
    for key in ("correct", "short"):
        HumanLabel.objects.create(rollout=rollout, rubric_version=world["version"], criterion_key=key,
                                  annotator=user or world["user"], value=value, reward_hacking=hacking,
                                  comment=comment)


@pytest.mark.django_db
def test_a_queue_made_from_a_run_follows_it_stratified_by_step_and_reward_up_to_its_cap(world):
    rewards = [0.0, 0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9]
    step1 = add_step(world, 1, rewards)
    queue = review_services.review_queue_for_run(run=world["run"], size=6, created_by=world["user"])
    assert queue.follow_run == world["run"] and queue.blind and queue.follow_cap == 6
    assert queue.follow_per_step == 2  # 6 items over 4 planned steps
    picked = list(queue.items.order_by("position").values_list("rollout_id", flat=True))
    assert len(picked) == 2 and set(picked) <= {r.pk for r in step1}
    by_pk = {r.pk: rewards[i] for i, r in enumerate(step1)}
    assert sorted(by_pk[p] < 0.5 for p in picked) == [False, True]  # one from each half of the step's rewards

    # The run goes on: each new step gets its share, in order, until the cap.
    assert review_services.review_queues_follow_run(run_id=world["run"].pk) == 0  # nothing new
    add_step(world, 2, rewards)
    assert review_services.review_queues_follow_run(run_id=world["run"].pk) == 2
    add_step(world, 3, rewards)
    add_step(world, 4, rewards)
    assert review_services.review_queues_follow_run(run_id=world["run"].pk) == 2  # cap: 6
    items = list(queue.items.order_by("position").select_related("rollout"))
    assert [i.position for i in items] == [1, 2, 3, 4, 5, 6]
    assert [i.rollout.step for i in items] == [1, 1, 2, 2, 3, 3]
    queue.refresh_from_db()
    assert queue.followed_step == 4

    # Seeded: a queue built again from the same steps picks the same rollouts.
    again = review_services.review_queue_for_run(run=world["run"], size=6)
    assert list(again.items.order_by("position").values_list("rollout_id", flat=True)) == [
        i.rollout_id for i in items]


@pytest.mark.django_db
def test_a_queue_following_a_run_may_start_before_the_run_has_rollouts_and_needs_criteria_mode(world):
    queue = review_services.review_queue_for_run(run=world["run"], size=10)
    assert queue.items.count() == 0 and queue.followed_step == 0
    with pytest.raises(Exception, match="pairwise"):
        review_services.review_queue_create(project=world["project"], name="x", rubric_version=world["version"],
                                            selection={"run": world["run"].pk}, strategy="follow_run",
                                            mode="pairwise")
    with pytest.raises(Exception, match="Pick the training run"):
        review_services.review_queue_create(project=world["project"], name="x", rubric_version=world["version"],
                                            strategy="follow_run")


def point(step, reward, quality):
    return StepPoint(step=step, reward=reward, rollouts=8, labelled=2, reward_labelled=reward, quality=quality)


def test_the_alert_fires_when_reward_rises_and_labelled_quality_does_not():
    rising_reward_falling_quality = [point(1, 0.2, 0.6), point(2, 0.4, 0.5), point(3, 0.7, 0.5)]
    alert = hacking_alert(rising_reward_falling_quality)
    assert alert is not None and alert.steps == [1, 2, 3]
    assert alert.reward_slope == pytest.approx(0.25) and alert.quality_slope == pytest.approx(-0.05)
    assert hacking_alert([point(1, 0.2, 0.3), point(2, 0.4, 0.5), point(3, 0.7, 0.8)]) is None  # both rise
    assert hacking_alert([point(1, 0.7, 0.6), point(2, 0.4, 0.5), point(3, 0.2, 0.5)]) is None  # reward falls
    assert hacking_alert(rising_reward_falling_quality[:2]) is None  # fewer than 3 labelled steps
    # Unlabelled steps do not count; only the last 5 labelled ones do.
    unlabelled = [StepPoint(step=9, reward=0.9, rollouts=8, labelled=0, reward_labelled=None, quality=None)]
    assert hacking_alert(rising_reward_falling_quality + unlabelled).steps == [1, 2, 3]
    early = [point(s, 0.9 - s * 0.1, 0.1) for s in range(1, 4)]
    assert hacking_alert(early + [point(s, 0.1 * s, 0.9 - 0.1 * s) for s in range(4, 9)]).steps == [4, 5, 6, 7, 8]


@pytest.mark.django_db
def test_the_run_page_shows_queues_labels_the_quality_chart_flagged_rollouts_and_the_alert(world, client):
    project, run = world["project"], world["run"]
    steps = {s: add_step(world, s, [0.1 * s, 0.1 * s + 0.05]) for s in (1, 2, 3)}  # reward rises
    queue = review_services.review_queue_for_run(run=run, size=20, name="watch queue")
    for s, quality in ((1, 1.0), (2, 1.0), (3, 0.0)):  # reviewers see it get worse
        label(world, steps[s][0], quality, hacking=s == 3, comment="answers in the tag, ignores the question"
              if s == 3 else "")
    watch = run_watch(run)
    assert [p.quality for p in watch.steps] == [1.0, 1.0, 0.0]  # "short" has weight 0: not in the quality
    assert watch.alert is not None and watch.labelled_rollouts == 3 and watch.labels == 6

    page = client.get(reverse("runs:detail", args=[project.pk, run.pk])).content.decode()
    assert "Reward-hacking watch" in page and 'id="hacking-alert"' in page
    assert "watch queue" in page
    assert reverse("reviews:detail", args=[project.pk, queue.pk]) in page
    assert "Reward vs human-judged quality" in page and "human-judged quality</li>" in page
    flagged = page.split('class="table watch-flagged"')[1].split("</table>")[0]
    assert f'data-rollout="{steps[3][0].pk}"' in flagged and "answers in the tag, ignores the question" in flagged
    assert "Correct: 0.30 / 0.00" in flagged  # the criterion's reward and the human label
    assert f'data-rollout="{steps[1][0].pk}"' not in flagged
    fragment = client.get(reverse("runs:watch", args=[project.pk, run.pk]), headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and 'id="hacking-alert"' in fragment.content.decode()

    # The rollout page shows the human labels, flag and comment.
    detail = client.get(reverse("rollouts:detail", args=[project.pk, steps[3][0].pk])).content.decode()
    assert "Human labels" in detail and "reward hacking" in detail and "ignores the question" in detail


@pytest.mark.django_db
def test_send_to_review_from_the_run_page_makes_a_following_queue_and_get_answers_405(world, client):
    project, run = world["project"], world["run"]
    add_step(world, 1, [0.2, 0.8])
    url = reverse("runs:review", args=[project.pk, run.pk])
    response = client.post(url, {"size": 8, "reviewers_per_item": 2, "blind": "on"})
    queue = ReviewQueue.objects.get(follow_run=run)
    assert response.status_code == 302 and response["Location"] == reverse("reviews:detail",
                                                                            args=[project.pk, queue.pk])
    assert queue.reviewers_per_item == 2 and queue.items.count() == 2 and queue.rubric_version == world["version"]
    page = client.get(reverse("reviews:detail", args=[project.pk, queue.pk])).content.decode()
    assert "Follows" in page and f"run #{run.pk}" in page
    response = client.get(url)
    assert response.status_code == 405 and "Not a page to open" in response.content.decode()
    response = client.post(url, {"size": 0})
    assert response.status_code == 302 and ReviewQueue.objects.count() == 1


@pytest.mark.django_db
def test_viewers_cannot_send_to_review_and_a_blind_annotator_is_refused_the_watch(world, client, make_member):
    project, run = world["project"], world["run"]
    rollouts = add_step(world, 1, [0.2, 0.8])
    viewer, _ = make_member(Role.VIEWER, project)
    client.force_login(viewer)
    assert client.post(reverse("runs:review", args=[project.pk, run.pk]), {"size": 4}).status_code == 403
    assert not ReviewQueue.objects.exists()

    queue = review_services.review_queue_for_run(run=run, size=4)
    annotator, _ = make_member(Role.ANNOTATOR, project)
    label(world, rollouts[0], 1.0, user=world["user"])
    item = ReviewItem.objects.filter(queue=queue).first()
    ReviewAssignment.objects.create(item=item, annotator=annotator, status=AssignmentStatus.RESERVED,
                                    reserved_until=timezone.now() + timedelta(hours=1))
    client.force_login(annotator)
    assert client.get(reverse("runs:detail", args=[project.pk, run.pk])).status_code == 403
    assert client.get(reverse("runs:watch", args=[project.pk, run.pk]),
                      headers={"HX-Request": "true"}).status_code == 403
    detail = client.get(reverse("rollouts:detail", args=[project.pk, item.rollout_id])).content.decode()
    assert "labels are hidden until you submit yours" in detail and world["user"].username not in detail


@pytest.mark.django_db
def test_local_judge_endpoints_are_accepted_for_training_and_run_in_the_training_process(world):
    project, task = world["project"], world["task"]
    version = RubricVersionFactory(rubric__project=project, spec=JUDGED)
    options = {"preset": "cpu-smoke", "calibration_override": True, "calibration_note": "pilot", "enqueue": False}
    local = EndpointFactory(project=project, kind="transformers", base_url="", model="bundled",
                            default_params={"max_tokens": 64})
    run = services.training_run_create(project=project, name="t", task=task, rubric_version=version,
                                       judge_endpoint=local, **options)
    assert run.config["judge"] is None
    assert run.config["local_judge"]["engine"] == "transformers" and run.config["local_judge"]["max_new_tokens"] == 64
    engine = EndpointFactory(project=project, kind="vllm", base_url="", model="bundled")
    run = services.training_run_create(project=project, name="v", task=task, rubric_version=version,
                                       judge_endpoint=engine, **options)
    assert run.config["local_judge"]["engine"] == "vllm"
    outside = EndpointFactory(project=project, kind="transformers", base_url="", model="/etc")
    with pytest.raises(Exception, match="judge|model|outside|allowed"):
        services.training_run_create(project=project, name="x", task=task, rubric_version=version,
                                     judge_endpoint=outside, **options)


@pytest.mark.django_db
def test_the_queue_form_offers_following_a_run_by_name(world, client):
    project, run = world["project"], world["run"]
    add_step(world, 1, [0.1, 0.9])
    url = reverse("reviews:create", args=[project.pk])
    data = {"name": "follow", "rubric_version": world["version"].pk, "strategy": "follow_run", "mode": "criteria",
            "size": 10, "seed": 0, "reviewers_per_item": 1, "reservation_minutes": 30, "blind": "on"}
    response = client.post(url, data)  # no run picked
    assert response.status_code == 400 and "Pick the training run the queue follows." in response.content.decode()
    response = client.post(url, {**data, "run": run.pk})
    queue = ReviewQueue.objects.get()
    assert response.status_code == 302 and queue.follow_run == run and queue.items.count() == 2
    assert queue.selection == {"run": run.pk, "source": "training"}
