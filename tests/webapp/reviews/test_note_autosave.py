"""Autosave of the labeling page's comment and reward-hacking flag: optimistic locking, never a stale overwrite."""

from __future__ import annotations

import pytest
from django.urls import reverse

from webapp.core.errors import ConflictError
from webapp.reviews import services
from webapp.reviews.models import HumanLabel

pytestmark = pytest.mark.django_db


def _item(s):
    queue = services.review_queue_create(project=s["project"], name="Notes", rubric_version=s["version"], size=3,
                                         seed=2, created_by=s["editor"], blind=False)
    return queue, services.item_next(queue=queue, annotator=s["ann1"])


def _labels(item, user):
    return {label.criterion_key: label for label in HumanLabel.objects.filter(rollout=item.rollout, annotator=user)}


def test_note_before_any_answer_rides_along_with_the_first_answer(client, review_setup):
    s = review_setup
    queue, item = _item(s)
    client.force_login(s["ann1"])
    note = reverse("reviews:note", args=[s["project"].pk, queue.pk, item.pk])
    form = {"row_version-helpful": 0, "row_version-correct": 0, "comment": "  looks copied  ", "reward_hacking": "on"}
    pending = client.post(note, form, HTTP_HX_REQUEST="true")
    assert pending.status_code == 200 and 'data-state="pending"' in pending.content.decode()
    assert not HumanLabel.objects.exists()
    # The criterion autosave posts the whole form (htmx includes the enclosing form), note included.
    autosave = reverse("reviews:autosave", args=[s["project"].pk, queue.pk, item.pk, "helpful"])
    assert client.post(autosave, {**form, "choice-helpful": "no"}, HTTP_HX_REQUEST="true").status_code == 200
    label = _labels(item, s["ann1"])["helpful"]
    assert (label.choice, label.comment, label.reward_hacking, label.row_version) == ("no", "looks copied", True, 1)


def test_note_autosave_updates_every_label_and_hands_back_the_new_row_versions(client, review_setup):
    s = review_setup
    queue, item = _item(s)
    for key, choice in (("helpful", "yes"), ("correct", "Pass")):
        services.item_label_save(item=item, annotator=s["ann1"], criterion_key=key, row_version=0, choice=choice)
    client.force_login(s["ann1"])
    note = reverse("reviews:note", args=[s["project"].pk, queue.pk, item.pk])
    saved = client.post(note, {"row_version-helpful": 1, "row_version-correct": 1, "comment": "fine"},
                        HTTP_HX_REQUEST="true")
    html = saved.content.decode()
    assert saved.status_code == 200 and 'data-state="saved"' in html
    for key in ("helpful", "correct"):
        assert f'id="row-version-{key}" name="row_version-{key}" value="2" hx-swap-oob="true"' in html
    labels = _labels(item, s["ann1"])
    assert {k: (lb.comment, lb.reward_hacking, lb.row_version) for k, lb in labels.items()} == {
        "helpful": ("fine", False, 2), "correct": ("fine", False, 2)}
    # Unticking the flag is a change too (an unticked checkbox is absent from the form).
    client.post(note, {"row_version-helpful": 2, "row_version-correct": 2, "comment": "fine", "reward_hacking": "on"},
                HTTP_HX_REQUEST="true")
    client.post(note, {"row_version-helpful": 3, "row_version-correct": 3, "comment": "fine"}, HTTP_HX_REQUEST="true")
    assert {lb.reward_hacking for lb in _labels(item, s["ann1"]).values()} == {False}


def test_a_stale_note_autosave_is_refused_and_writes_nothing(client, review_setup):
    s = review_setup
    queue, item = _item(s)
    for key, choice in (("helpful", "yes"), ("correct", "Pass")):
        services.item_label_save(item=item, annotator=s["ann1"], criterion_key=key, row_version=0, choice=choice)
    # Another tab changes one label (choice and comment) after this page was loaded at versions 1 / 1.
    services.item_label_save(item=item, annotator=s["ann1"], criterion_key="correct", row_version=1, choice="Fail",
                             comment="newer", reward_hacking=True)
    client.force_login(s["ann1"])
    note = reverse("reviews:note", args=[s["project"].pk, queue.pk, item.pk])
    stale = client.post(note, {"row_version-helpful": 1, "row_version-correct": 1, "comment": "older"},
                        HTTP_HX_REQUEST="true")
    html = stale.content.decode()
    assert stale.status_code == 409 and 'class="current-comment">newer<' in html and "hx-swap-oob" not in html
    labels = _labels(item, s["ann1"])
    # All or nothing: the label that was still current was not touched either.
    assert (labels["helpful"].comment, labels["helpful"].row_version) == ("", 1)
    assert (labels["correct"].choice, labels["correct"].comment, labels["correct"].row_version) == ("Fail", "newer", 2)
    # Without htmx the page is shown again with the error, still nothing written.
    plain = client.post(note, {"row_version-helpful": 1, "row_version-correct": 1, "comment": "older"})
    assert plain.status_code == 409 and "your comment was not saved" in plain.content.decode()


def test_note_service_lets_a_repeat_of_the_same_note_through(review_setup):
    s = review_setup
    queue, item = _item(s)
    services.item_label_save(item=item, annotator=s["ann1"], criterion_key="helpful", row_version=0, choice="yes")
    services.item_note_save(item=item, annotator=s["ann1"], comment="x", reward_hacking=True,
                            row_versions={"helpful": 1})
    # A late duplicate of the same autosave carries the old version but would change nothing: not a conflict.
    again = services.item_note_save(item=item, annotator=s["ann1"], comment="x", reward_hacking=True,
                                    row_versions={"helpful": 1})
    assert [lb.row_version for lb in again] == [2]
    with pytest.raises(ConflictError) as stale:
        services.item_note_save(item=item, annotator=s["ann1"], comment="y", reward_hacking=True,
                                row_versions={"helpful": 1})
    assert stale.value.extra["current"]["comment"] == "x" and stale.value.extra["current"]["row_version"] == 2


def test_only_the_reserving_annotator_may_autosave_a_note(client, review_setup):
    s = review_setup
    queue, item = _item(s)
    client.force_login(s["ann2"])
    note = reverse("reviews:note", args=[s["project"].pk, queue.pk, item.pk])
    assert client.post(note, {"comment": "x"}, HTTP_HX_REQUEST="true").status_code == 403
