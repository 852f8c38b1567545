"""Queues, sampling, reservations and labels on a real Postgres."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from webapp.core.errors import ApplicationError, ConflictError
from webapp.reviews import selectors, services
from webapp.reviews.models import AssignmentStatus, HumanLabel, ReviewAssignment, ReviewItem, SamplingStrategy

pytestmark = pytest.mark.django_db


def make_queue(s, **kwargs):
    defaults = {"project": s["project"], "name": "q", "rubric_version": s["version"], "size": 12, "seed": 7,
                "created_by": s["editor"]}
    return services.review_queue_create(**{**defaults, **kwargs})


def positions(queue):
    return list(queue.items.order_by("position").values_list("rollout_id", flat=True))


def test_random_sampling_is_seeded_and_respects_the_selection(review_setup):
    s = review_setup
    a = make_queue(s, size=5, seed=1)
    b = make_queue(s, size=5, seed=1)
    c = make_queue(s, size=5, seed=2)
    assert positions(a) == positions(b) and positions(a) != positions(c)
    assert len(set(positions(a))) == 5
    other_task = make_queue(s, size=5, selection={"task": s["rollouts"][0].task_id, "q": "<answer>1"})
    assert {r for r in positions(other_task)} <= {r.pk for r in s["rollouts"] if "<answer>1" in r.completion}
    with pytest.raises(ApplicationError, match="No rollouts"):
        make_queue(s, selection={"q": "nothing like this"})


def test_strategies_pick_what_they_promise(review_setup):
    s = review_setup
    by_group = {r.pk: r.group_key for r in s["rollouts"]}
    zero = make_queue(s, strategy=SamplingStrategy.ZERO_VARIANCE, size=10)
    assert {by_group[r] for r in positions(zero)} == {"grp0"} and len(positions(zero)) == 3
    stratified = make_queue(s, strategy=SamplingStrategy.STRATIFIED, size=4)
    totals = [i.priority for i in stratified.items.order_by("position")]
    assert len(set(totals)) >= 3  # spread over the score range, not the top four
    disagreement = make_queue(s, strategy=SamplingStrategy.DISAGREEMENT, size=4)
    first = ReviewItem.objects.filter(queue=disagreement).order_by("position").first()
    helpful = first.rollout.criterion_scores.get(criterion_key="helpful").score
    assert helpful == 0.5  # a verdict in the middle of the scale comes first
    for r in s["rollouts"][:6]:
        r.source = "training"
        r.save()
    extremes = make_queue(s, strategy=SamplingStrategy.EXTREMES, size=2)
    assert extremes.selection["source"] == "training"
    pr = [i.priority for i in extremes.items.order_by("position")]
    assert pr[0] >= pr[1]


def test_next_item_reservations_expire_and_respect_reviewers_per_item(review_setup):
    s = review_setup
    queue = make_queue(s, size=2, reviewers_per_item=1)
    one = services.item_next(queue=queue, annotator=s["ann1"])
    two = services.item_next(queue=queue, annotator=s["ann2"])
    assert one.pk != two.pk
    assert services.item_next(queue=queue, annotator=s["ann1"]).pk == one.pk  # resumes its reservation
    assert services.item_next(queue=queue, annotator=s["editor"]) is None  # both seats taken
    ReviewAssignment.objects.filter(annotator=s["ann2"]).update(reserved_until=timezone.now() - timedelta(seconds=1))
    assert services.item_next(queue=queue, annotator=s["editor"]).pk == two.pk  # an expired reservation frees its seat
    services.item_skip(item=one, annotator=s["ann1"])
    assert services.item_next(queue=queue, annotator=s["ann1"]) is None  # skipped items don't come back to you

    double = make_queue(s, size=1, reviewers_per_item=2)
    a = services.item_next(queue=double, annotator=s["ann1"])
    b = services.item_next(queue=double, annotator=s["ann2"])
    assert a.pk == b.pk
    assert services.item_next(queue=double, annotator=s["editor"]) is None


def test_creating_a_queue_refreshes_the_planner_statistics_of_items(review_setup, django_capture_on_commit_callbacks):
    """`item_next` walks a queue in position order only if the planner knows how many open items there are; a new
    queue's items are unknown to it until autovacuum comes by (the bad plan reads and sorts the whole queue)."""
    from django.db import connection

    def estimated_items() -> float:
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [ReviewItem._meta.db_table])
            return cursor.fetchone()[0]

    s = review_setup
    before = estimated_items()
    with django_capture_on_commit_callbacks(execute=True):
        make_queue(s, size=12)
    assert before < 12 and estimated_items() == ReviewItem.objects.count() == 12


def test_assignees_only(review_setup):
    s = review_setup
    queue = make_queue(s, size=2, assignees=[s["ann1"]])
    assert services.item_next(queue=queue, annotator=s["ann1"]) is not None
    with pytest.raises(ApplicationError, match="named annotators"):
        services.item_next(queue=queue, annotator=s["ann2"])


def test_submit_maps_choices_like_the_judge_and_counts_progress(review_setup):
    s = review_setup
    queue = make_queue(s, size=3, reviewers_per_item=2)
    item = services.item_next(queue=queue, annotator=s["ann1"])
    with pytest.raises(ApplicationError, match="missing: Correct"):
        services.item_submit(item=item, annotator=s["ann1"], answers={"helpful": {"row_version": 0, "choice": "yes"}})
    labels = services.item_submit(
        item=item, annotator=s["ann1"], comment="fine", reward_hacking=True,
        answers={"helpful": {"row_version": 0, "choice": "partly"}, "correct": {"row_version": 0, "choice": "Pass"}},
    )
    assert {label.criterion_key: label.value for label in labels} == {"helpful": 0.5, "correct": 1.0}
    assert all(label.comment == "fine" and label.reward_hacking for label in labels)
    item.refresh_from_db()
    assert item.completed_count == 1
    progress = selectors.queue_progress(queue)
    assert (progress.items, progress.labels_done, progress.labels_needed) == (3, 1, 6)
    assert [(a.username, a.done) for a in progress.annotators] == [(s["ann1"].username, 1)]
    with pytest.raises(ApplicationError, match="not a choice"):
        services.item_label_save(item=item, annotator=s["ann1"], criterion_key="helpful", row_version=3, choice="great")


def test_stale_label_is_refused_with_the_current_value(review_setup):
    s = review_setup
    queue = make_queue(s, size=1)
    item = services.item_next(queue=queue, annotator=s["ann1"])
    first = services.item_label_save(item=item, annotator=s["ann1"], criterion_key="helpful", row_version=0, choice="no")
    assert first.row_version == 1
    second = services.item_label_save(item=item, annotator=s["ann1"], criterion_key="helpful", row_version=1, choice="yes")
    assert second.row_version == 2 and second.value == 1.0
    with pytest.raises(ConflictError) as stale:
        services.item_label_save(item=item, annotator=s["ann1"], criterion_key="helpful", row_version=1, choice="partly")
    assert stale.value.status == 409
    assert stale.value.extra["current"]["choice"] == "yes" and stale.value.extra["current"]["row_version"] == 2
    # Re-sending what is already saved loses nothing, so it is not a conflict.
    assert services.item_label_save(item=item, annotator=s["ann1"], criterion_key="helpful", row_version=1, choice="yes").row_version == 2
    with pytest.raises(ConflictError):
        services.item_label_save(item=item, annotator=s["ann1"], criterion_key="helpful", row_version=0, choice="no")
    assert HumanLabel.objects.get(pk=first.pk).choice == "yes"


def test_blind_mode_hides_scores_from_annotators_until_submitted(review_setup):
    s = review_setup
    queue = make_queue(s, size=2, blind=True)
    item = services.item_next(queue=queue, annotator=s["ann1"])
    rollout = item.rollout
    assert not selectors.judge_scores_visible(user=s["ann1"], role="annotator", rollout=rollout, queue=queue)
    assert not selectors.judge_scores_visible(user=s["ann1"], role="annotator", rollout=rollout)
    assert selectors.judge_scores_visible(user=s["editor"], role="editor", rollout=rollout)
    hidden = set(selectors.blind_rollout_ids(user=s["ann1"], role="annotator", project=s["project"]).values_list("pk", flat=True))
    assert hidden == set(queue.items.values_list("rollout_id", flat=True))
    services.item_submit(item=item, annotator=s["ann1"], answers={
        "helpful": {"row_version": 0, "choice": "no"}, "correct": {"row_version": 0, "choice": "Fail"}})
    assert selectors.judge_scores_visible(user=s["ann1"], role="annotator", rollout=rollout, queue=queue)
    assert selectors.judge_scores_visible(user=s["ann1"], role="annotator", rollout=rollout)
    # The item needed one label and has it: ann2 can no longer label it, so nothing is left to keep blind.
    assert selectors.judge_scores_visible(user=s["ann2"], role="annotator", rollout=rollout)
    assert not selectors.judge_scores_visible(user=s["ann2"], role="annotator",
                                              rollout=queue.items.exclude(pk=item.pk).get().rollout)
    assert ReviewAssignment.objects.get(item=item, annotator=s["ann1"]).status == AssignmentStatus.DONE
    open_queue = make_queue(s, size=1, blind=False, selection={"q": "<answer>3"})
    assert selectors.judge_scores_visible(user=s["ann2"], role="annotator", rollout=open_queue.items.get().rollout, queue=open_queue)


def test_pairwise_queue_pairs_samples_of_one_prompt_and_records_the_order(review_setup):
    s = review_setup
    queue = make_queue(s, size=12, mode="pairwise", seed=3)
    items = list(queue.items.select_related("rollout", "rollout_b"))
    assert items and all(i.rollout.group_key == i.rollout_b.group_key and i.rollout_id != i.rollout_b_id for i in items)
    assert {i.shown_a_first for i in items} == {True, False}  # randomized per item
    item = services.item_next(queue=queue, annotator=s["ann1"])
    label = services.pairwise_submit(item=item, annotator=s["ann1"], preferred="b")
    assert label.shown_a_first == item.shown_a_first and label.rollout_a_id == item.rollout_id
    with pytest.raises(ConflictError):
        services.pairwise_submit(item=item, annotator=s["ann1"], preferred="a")
