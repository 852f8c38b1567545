"""The blind-review rule itself (webapp/reviews/blind.py): who is blind to which rollout, and until when.
Every read path applying it is covered by test_blind_read_paths.py."""

from __future__ import annotations

from django.urls import reverse

from webapp.core.models import Role
from webapp.reviews import services
from webapp.reviews.blind import blind_rollout_ids, judge_scores_visible, redact_metadata

ANSWERS = {"helpful": {"row_version": 0, "choice": "no"}, "correct": {"row_version": 0, "choice": "Fail"}}


def make_queue(s, **kwargs):
    defaults = {"project": s["project"], "name": "q", "rubric_version": s["version"], "size": 2, "seed": 7,
                "created_by": s["editor"], "blind": True}
    return services.review_queue_create(**{**defaults, **kwargs})


def blind(s, user, role=Role.ANNOTATOR) -> set[int]:
    return set(blind_rollout_ids(user=user, role=role, project=s["project"]).values_list("pk", flat=True))


def submit(queue, user):
    item = services.item_next(queue=queue, annotator=user)
    services.item_submit(item=item, annotator=user, answers=ANSWERS)
    return item


def test_an_item_stays_blind_for_an_annotator_until_they_label_it_or_it_needs_no_more_labels(review_setup):
    s = review_setup
    queue = make_queue(s, size=1, reviewers_per_item=2)
    rollout = queue.items.get().rollout_id
    assert blind(s, s["ann1"]) == blind(s, s["ann2"]) == {rollout}
    submit(queue, s["ann1"])
    assert blind(s, s["ann1"]) == set() and blind(s, s["ann2"]) == {rollout}
    submit(queue, s["ann2"])
    assert blind(s, s["ann2"]) == set()


def test_only_queues_the_annotator_may_work_on_make_them_blind(review_setup):
    s = review_setup
    queue = make_queue(s, size=2, assignees=[s["ann1"]])
    assert blind(s, s["ann1"]) == set(queue.items.values_list("rollout_id", flat=True))
    assert blind(s, s["ann2"]) == set()
    make_queue(s, size=2, blind=False)
    assert blind(s, s["ann2"]) == set()


def test_a_rollout_in_two_open_blind_queues_stays_blind_until_both_are_labeled(review_setup):
    s = review_setup
    first = make_queue(s, size=1, seed=3)
    rollout = first.items.get().rollout
    second = make_queue(s, size=1, selection={"ids": [rollout.pk]})
    assert second.items.get().rollout_id == rollout.pk
    submit(first, s["ann1"])
    # The labeling page of the first queue would reveal it; the second queue still waits for this annotator's label.
    assert not judge_scores_visible(user=s["ann1"], role=Role.ANNOTATOR, rollout=rollout, queue=first)
    assert not judge_scores_visible(user=s["ann1"], role=Role.ANNOTATOR, rollout=rollout)
    submit(second, s["ann1"])
    assert judge_scores_visible(user=s["ann1"], role=Role.ANNOTATOR, rollout=rollout, queue=first)
    assert judge_scores_visible(user=s["ann1"], role=Role.ANNOTATOR, rollout=rollout)


def test_editors_and_viewers_are_never_blind_outside_the_labeling_page(review_setup):
    s = review_setup
    queue = make_queue(s, size=1)
    rollout = queue.items.get().rollout
    for role in (Role.EDITOR, Role.OWNER, Role.VIEWER):
        assert blind(s, s["editor"], role) == set()
        assert judge_scores_visible(user=s["editor"], role=role, rollout=rollout)
    # Labeling in a blind queue, an editor waits like everybody else.
    services.item_next(queue=queue, annotator=s["editor"])
    assert not judge_scores_visible(user=s["editor"], role=Role.EDITOR, rollout=rollout, queue=queue)


def test_pages_of_many_scores_are_refused_while_blind_and_open_again_after(client, review_setup):
    s = review_setup
    queue = make_queue(s, size=1)
    client.force_login(s["ann1"])
    agreement = reverse("reviews:agreement", args=[s["project"].pk])
    refused = client.get(agreement)
    assert refused.status_code == 403 and "blind review queue" in refused.content.decode()
    api = client.get(f"/api/v1/projects/{s['project'].pk}/training-metrics/")
    assert api.status_code == 403 and "blind review queue" in api.content.decode()
    submit(queue, s["ann1"])
    assert client.get(agreement).status_code == 200
    assert client.get(f"/api/v1/projects/{s['project'].pk}/training-metrics/").status_code == 200


def test_rewards_are_removed_from_a_blind_rollouts_metadata_at_any_depth():
    metadata = {"turns": 2, "reward_total": 0.5, "env": {"judge_score": 1, "won": True},
                "steps": [{"Reward": 1, "action": "guess"}], "rationale": "because"}
    assert redact_metadata(metadata) == {"turns": 2, "env": {"won": True}, "steps": [{"action": "guess"}]}
