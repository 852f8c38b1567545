"""Two people at once, on two real database connections (threads): no lost update, the loser gets a 409."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from webapp.core.errors import ConflictError
from webapp.reviews import services
from webapp.reviews.models import HumanLabel, ReviewAssignment, ReviewItem

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(*calls):
    """Start every call at the same instant, each on its own connection; return results or exceptions."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def work(index, call):
        try:
            barrier.wait()
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 — the test inspects what each side got
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_two_sessions_editing_one_label_one_wins_the_other_gets_409(review_setup):
    s = review_setup
    queue = services.review_queue_create(project=s["project"], name="q", rubric_version=s["version"], size=1)
    item = services.item_next(queue=queue, annotator=s["ann1"])
    label = services.item_label_save(item=item, annotator=s["ann1"], criterion_key="helpful", row_version=0, choice="no")

    def save(seen: int, choice: str):
        return lambda: services.item_label_save(
            item=item, annotator=s["ann1"], criterion_key="helpful", row_version=seen, choice=choice
        )

    for round_ in range(10):
        seen = HumanLabel.objects.get(pk=label.pk).row_version
        results = run_together(save(seen, "partly"), save(seen, "yes"))
        winners = [r for r in results if isinstance(r, HumanLabel)]
        losers = [r for r in results if isinstance(r, ConflictError)]
        assert len(winners) == 1 and len(losers) == 1, (round_, results)
        assert losers[0].status == 409 and losers[0].extra["current"]["choice"] == winners[0].choice
        fresh = HumanLabel.objects.get(pk=label.pk)
        assert fresh.choice == winners[0].choice and fresh.row_version == seen + 1


def test_two_annotators_on_one_item_both_count(review_setup):
    s = review_setup
    queue = services.review_queue_create(project=s["project"], name="q", rubric_version=s["version"], size=1,
                                         reviewers_per_item=2)
    item = services.item_next(queue=queue, annotator=s["ann1"])
    assert services.item_next(queue=queue, annotator=s["ann2"]).pk == item.pk
    answers = {"helpful": {"row_version": 0, "choice": "yes"}, "correct": {"row_version": 0, "choice": "Pass"}}
    results = run_together(
        lambda: services.item_submit(item=item, annotator=s["ann1"], answers=answers),
        lambda: services.item_submit(item=item, annotator=s["ann2"], answers=answers),
    )
    assert all(isinstance(r, list) for r in results), results
    assert HumanLabel.objects.filter(rollout=item.rollout).count() == 4
    assert ReviewItem.objects.get(pk=item.pk).completed_count == 2


def test_concurrent_next_hands_out_distinct_items(review_setup):
    s = review_setup
    queue = services.review_queue_create(project=s["project"], name="q", rubric_version=s["version"], size=3)
    results = run_together(*(lambda u=u: services.item_next(queue=queue, annotator=u) for u in (s["ann1"], s["ann2"], s["editor"])))
    assert all(isinstance(r, ReviewItem) for r in results), results
    assert len({r.pk for r in results}) == 3
    assert ReviewAssignment.objects.filter(item__queue=queue).count() == 3


def test_many_annotators_racing_for_few_seats_never_overfill_an_item(review_setup, make_member):
    s = review_setup
    queue = services.review_queue_create(project=s["project"], name="q", rubric_version=s["version"], size=2,
                                         reviewers_per_item=2)
    users = [s["ann1"], s["ann2"], s["editor"]] + [make_member("annotator", s["project"])[0] for _ in range(5)]
    results = run_together(*(lambda u=u: services.item_next(queue=queue, annotator=u) for u in users))
    assert not any(isinstance(r, Exception) for r in results), results
    got = [r.pk for r in results if r is not None]
    assert len(got) == 4 and all(got.count(pk) == 2 for pk in set(got))
