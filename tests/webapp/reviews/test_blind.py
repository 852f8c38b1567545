"""The blind-review rule itself (webapp/reviews/blind.py): who is blind to which rollout, and until when.
Every read path applying it is covered by test_blind_read_paths.py."""

from __future__ import annotations

from django.db.models import Q
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


def test_every_rollout_of_a_ranking_items_group_is_blind_until_the_ranking_is_submitted(review_setup):
    """A ranking item shows its whole group; each member, not only the item's own rollout, is held by it."""
    from webapp.reviews.blind import _blind_for
    from webapp.reviews.labeling import ranking_submit
    from webapp.reviews.models import ReviewMode

    s = review_setup
    group = [r.pk for r in s["rollouts"] if r.group_key == "grp1"]
    queue = make_queue(s, name="ranks", size=1, mode=ReviewMode.RANKING, selection={"ids": group[:1]})
    item = queue.items.get()
    assert sorted(item.group_rollout_ids) == sorted(group) and item.rollout_id == group[0]
    assert blind(s, s["ann1"]) == set(group)
    assert all(_blind_for(s["ann1"].pk, s["project"].pk, pk) for pk in group)
    assert not judge_scores_visible(user=s["ann1"], role=Role.ANNOTATOR, rollout=group[2])
    held = services.item_next(queue=queue, annotator=s["ann1"])
    ranking_submit(item=held, annotator=s["ann1"], ranking=list(reversed(held.group_rollout_ids)))
    assert blind(s, s["ann1"]) == set()  # one label per item: nobody is blind to the group any more
    assert judge_scores_visible(user=s["ann1"], role=Role.ANNOTATOR, rollout=group[2])


def test_other_annotators_labels_of_a_blind_rollout_are_hidden_from_the_api(client, review_setup):
    """Labels, rankings and gold responses of others would sway a blind label as much as the judge's scores."""
    from webapp.reviews.models import GoldResponse, HumanLabel

    s = review_setup
    queue = make_queue(s, size=1, reviewers_per_item=2)
    rollout = queue.items.get().rollout
    submit(queue, s["ann2"])
    GoldResponse.objects.create(rollout=rollout, annotator=s["ann2"], queue=queue, text="ann2's gold")
    assert HumanLabel.objects.filter(rollout=rollout, annotator=s["ann2"]).exists()
    base = f"/api/v1/projects/{s['project'].pk}"
    for user, sees in ((s["ann1"], False), (s["editor"], True)):
        client.force_login(user)
        labels = client.get(f"{base}/labels/", {"rollout": rollout.pk}).json()["results"]
        golds = client.get(f"{base}/gold-responses/", {"rollout": rollout.pk}).json()["results"]
        assert bool(labels) == bool(golds) == sees, user
    client.force_login(s["ann1"])
    label = HumanLabel.objects.filter(rollout=rollout, annotator=s["ann2"]).first()
    assert client.get(f"{base}/labels/{label.pk}/").status_code == 404
    submit(queue, s["ann1"])  # their own label given: the others' are theirs to compare with
    assert len(client.get(f"{base}/labels/", {"rollout": rollout.pk}).json()["results"]) == 4
    assert client.get(f"{base}/labels/{label.pk}/").status_code == 200


def test_the_labeled_filter_counts_only_the_callers_own_labels_of_a_blind_rollout(client, review_setup):
    """Other annotators' labels of a blind rollout are hidden, and so is whether there are any: `labeled` (the rollout
    browser's filter, the API's label_status) counts the caller's own labels there, everyone's elsewhere."""
    s = review_setup
    queue = make_queue(s, size=1, reviewers_per_item=2)
    rollout = queue.items.get().rollout
    submit(queue, s["ann2"])
    project = s["project"].pk
    detail = reverse("rollouts:detail", args=[project, rollout.pk])

    def listed(user) -> dict[str, tuple[bool, bool]]:
        client.force_login(user)
        page = {v: detail in client.get(reverse("rollouts:list", args=[project]), {"labeled": v}).content.decode()
                for v in ("yes", "no")}
        api = {v: rollout.pk in [r["id"] for r in client.get(f"/api/v1/projects/{project}/rollouts/",
                                                             {"label_status": v, "page_size": 100}).json()["results"]]
               for v in ("labeled", "unlabeled")}
        return {"page": (page["yes"], page["no"]), "api": (api["labeled"], api["unlabeled"])}

    assert rollout.pk in blind(s, s["ann1"])
    assert listed(s["ann1"]) == {"page": (False, True), "api": (False, True)}  # as if nobody had labeled it
    assert listed(s["editor"]) == {"page": (True, False), "api": (True, False)}
    submit(queue, s["ann1"])  # labeled by them: no longer blind, and labeled either way
    assert listed(s["ann1"]) == {"page": (True, False), "api": (True, False)}


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


def test_the_one_rollout_questions_written_in_sql_answer_as_the_orm_rule(review_setup):
    """judge_scores_visible asks `_blind_for` and `_submitted_in_queue` (raw SQL, for the labeling page's speed);
    they must agree with blind_rollout_ids and the ORM filter for every annotator, rollout and queue, through
    reservations, submits, skips, assignees, a pairwise queue, a non-blind one and a queue that needs no more labels."""
    from webapp.reviews.blind import _blind_for, _submitted_in_queue
    from webapp.reviews.labeling import ranking_submit
    from webapp.reviews.models import AssignmentStatus, ReviewAssignment, ReviewItem, ReviewMode

    s = review_setup
    ids = [r.pk for r in s["rollouts"]]

    def among(*indexes):  # each blind queue its own rollouts, so no other queue hides a change
        return {"ids": [ids[i] for i in indexes]}

    queues = [
        make_queue(s, name="open", size=4, seed=1, reviewers_per_item=2, selection=among(0, 1, 2, 3)),
        make_queue(s, name="named", size=1, seed=2, assignees=[s["ann1"]], selection=among(4)),
        make_queue(s, name="pairs", size=2, seed=3, mode=ReviewMode.PAIRWISE, selection=among(6, 7, 8, 9, 10, 11)),
        make_queue(s, name="visible", size=3, seed=4, blind=False, selection=among(0, 1, 2)),
        make_queue(s, name="one", size=1, seed=5, reviewers_per_item=1, selection=among(5)),
        make_queue(s, name="ranks", size=1, seed=6, mode=ReviewMode.RANKING, reviewers_per_item=2,
                   selection=among(3)),  # holds 3, 4 and 5, the group of rollout 3
    ]
    assert all(q.items.exists() for q in queues)
    annotators = [s["ann1"], s["ann2"]]

    def check():
        for user in annotators:
            hidden = blind(s, user)
            for rollout in s["rollouts"]:
                assert _blind_for(user.pk, s["project"].pk, rollout.pk) == (rollout.pk in hidden), (user, rollout)
                for queue in queues:
                    on_item = (ReviewAssignment.objects.filter(item__queue=queue, annotator=user,
                                                               status=AssignmentStatus.DONE)
                               .filter(Q(item__rollout_id=rollout.pk) | Q(item__rollout_b_id=rollout.pk)
                                       | Q(item__group_rollout_ids__contains=rollout.pk)).exists())
                    assert _submitted_in_queue(user, queue.pk, rollout.pk) == on_item, (user, rollout, queue)

    check()
    reserved = services.item_next(queue=queues[0], annotator=s["ann1"])  # a reservation
    submit(queues[4], s["ann2"])  # the item needs no more labels: open to nobody
    check()
    # Others filled the reserved item's seats (an expired reservation): open still to its holder only.
    ReviewItem.objects.filter(pk=reserved.pk).update(completed_count=2)
    check()
    submit(queues[0], s["ann1"])
    submit(queues[1], s["ann1"])
    skipped = services.item_next(queue=queues[0], annotator=s["ann2"])
    services.item_skip(item=skipped, annotator=s["ann2"])
    check()
    ranked = services.item_next(queue=queues[5], annotator=s["ann2"])  # the group, submitted by one of two
    ranking_submit(item=ranked, annotator=s["ann2"], ranking=ranked.group_rollout_ids)
    check()
