"""The review pages: queue creation, the labeling page (escaping, blind mode, autosave, 409), progress, align."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import EndpointFactory, RubricVersionFactory
from tests.webapp.reviews.conftest import JUDGE_FP, SPEC
from webapp.core.models import Role
from webapp.judging.models import CriterionScore, JudgeJob
from webapp.reviews import services
from webapp.reviews.models import HumanLabel, ReviewQueue

pytestmark = pytest.mark.django_db


def queue_for(s, **kwargs):
    return services.review_queue_create(project=s["project"], name="Spot check", rubric_version=s["version"],
                                        size=kwargs.pop("size", 4), seed=1, created_by=s["editor"], **kwargs)


def test_editor_creates_a_queue_and_annotators_cannot(client, review_setup):
    s = review_setup
    url = reverse("reviews:create", args=[s["project"].pk])
    client.force_login(s["ann1"])
    assert client.get(url).status_code == 403
    client.force_login(s["editor"])
    assert client.get(url).status_code == 200
    response = client.post(url, {"name": "Zero variance", "rubric_version": s["version"].pk, "strategy": "zero_variance",
                                 "mode": "criteria", "size": 10, "seed": 0, "reviewers_per_item": 2,
                                 "reservation_minutes": 15, "blind": "on", "assignees": [s["ann1"].pk]})
    queue = ReviewQueue.objects.get(name="Zero variance")
    assert response.status_code == 302 and queue.items.count() == 3 and queue.reviewers_per_item == 2
    assert list(queue.assignees.all()) == [s["ann1"]]
    bad = client.post(url, {"name": "x", "rubric_version": s["version"].pk, "strategy": "random", "mode": "criteria",
                            "size": 5, "seed": 0, "reviewers_per_item": 1, "reservation_minutes": 5, "q": "nope"})
    assert bad.status_code == 400 and "No rollouts" in bad.content.decode()


def test_a_queue_with_named_assignees_turns_other_annotators_away(client, review_setup):
    s = review_setup
    named, open_pool = queue_for(s, assignees=[s["ann1"]]), queue_for(s)
    client.force_login(s["ann2"])
    assert client.get(reverse("reviews:next", args=[s["project"].pk, named.pk])).status_code == 403
    assert client.get(reverse("reviews:next", args=[s["project"].pk, open_pool.pk])).status_code == 302
    client.force_login(s["ann1"])
    assert client.get(reverse("reviews:next", args=[s["project"].pk, named.pk])).status_code == 302


def test_list_and_detail_cost_a_fixed_number_of_queries(client, review_setup):
    s = review_setup
    client.force_login(s["ann1"])
    queue_for(s)
    list_url = reverse("reviews:list", args=[s["project"].pk])
    with CaptureQueriesContext(connection) as one:
        assert client.get(list_url).status_code == 200
    for _ in range(4):
        queue_for(s)
    with CaptureQueriesContext(connection) as five:
        client.get(list_url)
    assert len(one) == len(five)
    queue = ReviewQueue.objects.first()
    detail = reverse("reviews:detail", args=[s["project"].pk, queue.pk])
    with CaptureQueriesContext(connection) as before:
        client.get(detail)
    for user in (s["ann1"], s["ann2"], s["editor"]):
        services.item_next(queue=queue, annotator=user)
    with CaptureQueriesContext(connection) as after:
        response = client.get(detail)
    assert len(before) == len(after)
    assert s["ann2"].username in response.content.decode()
    fragment = client.get(detail, HTTP_HX_REQUEST="true").content.decode()
    assert fragment.lstrip().startswith('<section id="progress"')


def test_labeling_flow_escapes_output_hides_scores_and_reveals_after_submit(client, review_setup):
    s = review_setup
    queue = queue_for(s, blind=True)
    client.force_login(s["ann1"])
    response = client.get(reverse("reviews:next", args=[s["project"].pk, queue.pk]))
    assert response.status_code == 302
    page = client.get(response.url)
    html = page.content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'class="judge-score' not in html and "Blind" in html
    assert 'name="choice-helpful" value="partly"' in html and "<kbd>3</kbd>" in html
    item = page.context["item"]
    submit = reverse("reviews:submit", args=[s["project"].pk, queue.pk, item.pk])
    done = client.post(submit, {"row_version-helpful": 0, "choice-helpful": "yes", "row_version-correct": 0,
                                "choice-correct": "Pass", "comment": "<b>ok</b>", "reward_hacking": "on"})
    assert done.status_code == 302 and f"after={item.pk}" in done.url
    nxt = client.get(done.url, follow=True)
    html = nxt.content.decode()
    judge = CriterionScore.objects.get(rollout=item.rollout, criterion_key="helpful", judge_fingerprint=JUDGE_FP)
    assert 'id="reveal"' in html and f"{judge.raw_choice} ({judge.score:.2f})" in html
    assert nxt.context["item"].pk != item.pk
    labels = HumanLabel.objects.filter(rollout=item.rollout, annotator=s["ann1"])
    assert {label.criterion_key: label.value for label in labels} == {"helpful": 1.0, "correct": 1.0}
    assert all(label.reward_hacking and label.comment == "<b>ok</b>" for label in labels)
    # Someone else's reserved item is not yours to open.
    client.force_login(s["ann2"])
    assert client.get(reverse("reviews:item", args=[s["project"].pk, queue.pk, nxt.context["item"].pk])).status_code == 403


def test_autosave_then_stale_edit_gets_409_with_the_current_value(client, review_setup):
    s = review_setup
    queue = queue_for(s, blind=False)
    item = services.item_next(queue=queue, annotator=s["ann1"])
    client.force_login(s["ann1"])
    url = reverse("reviews:autosave", args=[s["project"].pk, queue.pk, item.pk, "helpful"])
    ok = client.post(url, {"row_version-helpful": 0, "choice-helpful": "no"}, HTTP_HX_REQUEST="true")
    assert ok.status_code == 200 and 'name="row_version-helpful" value="1"' in ok.content.decode()
    assert ok.content.decode().lstrip().startswith("<fieldset")
    assert 'class="judge-score' in ok.content.decode()  # not blind
    # Another tab saves meanwhile...
    services.item_label_save(item=item, annotator=s["ann1"], criterion_key="helpful", row_version=1, choice="partly")
    stale = client.post(url, {"row_version-helpful": 1, "choice-helpful": "yes"}, HTTP_HX_REQUEST="true")
    html = stale.content.decode()
    assert stale.status_code == 409
    assert 'class="current-choice">partly<' in html and 'name="row_version-helpful" value="2"' in html
    assert HumanLabel.objects.get(rollout=item.rollout, criterion_key="helpful").choice == "partly"
    # The full form: a stale submit is refused too and changes nothing.
    submit = reverse("reviews:submit", args=[s["project"].pk, queue.pk, item.pk])
    refused = client.post(submit, {"row_version-helpful": 1, "choice-helpful": "yes", "row_version-correct": 0,
                                   "choice-correct": "Fail"})
    assert refused.status_code == 409 and "current-choice" in refused.content.decode()
    assert not HumanLabel.objects.filter(rollout=item.rollout, criterion_key="correct").exists()
    # Submitting again with the version now shown is a deliberate overwrite.
    assert client.post(submit, {"row_version-helpful": 2, "choice-helpful": "yes", "row_version-correct": 0,
                                "choice-correct": "Fail"}).status_code == 302


def test_pairwise_page_and_submit(client, review_setup):
    s = review_setup
    queue = queue_for(s, mode="pairwise", size=6)
    client.force_login(s["ann1"])
    page = client.get(reverse("reviews:next", args=[s["project"].pk, queue.pk]), follow=True)
    item = page.context["item"]
    html = page.content.decode()
    assert "Left is better" in html and 'data-side="a"' in html and 'data-side="b"' in html
    left = page.context["sides"][0][0]
    assert left == ("a" if item.shown_a_first else "b")
    response = client.post(reverse("reviews:pairwise", args=[s["project"].pk, queue.pk, item.pk]), {"preferred": left})
    assert response.status_code == 302
    from webapp.reviews.models import PairwiseLabel
    label = PairwiseLabel.objects.get(annotator=s["ann1"])
    assert label.preferred == left and label.shown_a_first == item.shown_a_first


def test_pairwise_page_offers_skip_the_reference_answer_and_a_truthful_blind_badge(client, review_setup):
    s = review_setup
    example = s["rollouts"][0].example
    for r in s["rollouts"]:
        r.example.answer = f"Paris-{r.example.pk}"
        r.example.save(update_fields=["answer"])
    queue = queue_for(s, mode="pairwise", size=6, blind=True)
    client.force_login(s["ann1"])
    page = client.get(reverse("reviews:next", args=[s["project"].pk, queue.pk]), follow=True)
    item = page.context["item"]
    html = page.content.decode()
    assert f"Reference answer: <code>Paris-{item.rollout.example.pk}</code>" in html
    skip = reverse("reviews:skip", args=[s["project"].pk, queue.pk, item.pk])
    assert f'action="{skip}" id="skip-form"' in html and "Skip <kbd>s</kbd>" in html
    # Pairwise never shows judge scores, so the badge must not promise them after submit.
    assert "Blind: judge scores stay hidden while you compare" in html
    assert "appear after you submit" not in html
    assert example is not None
    response = client.post(skip)
    assert response.status_code == 302
    assert item.assignments.get(annotator=s["ann1"]).status == "skipped"


def test_labeling_page_links_the_previous_item_labeled(client, review_setup):
    """The `p` key follows the page's "Previous item" link: the item this annotator labeled before, done or not."""
    s = review_setup
    queue = queue_for(s, size=4)
    client.force_login(s["ann1"])
    page = client.get(reverse("reviews:next", args=[s["project"].pk, queue.pk]), follow=True)
    first = page.context["item"]
    assert page.context["previous_item_id"] is None and 'id="previous-item"' not in page.content.decode()
    data = {"row_version-helpful": "0", "choice-helpful": "yes", "row_version-correct": "0", "choice-correct": "Pass"}
    response = client.post(reverse("reviews:submit", args=[s["project"].pk, queue.pk, first.pk]), data, follow=True)
    second = response.context["item"]
    assert second.pk != first.pk and response.context["previous_item_id"] == first.pk
    first_url = reverse("reviews:item", args=[s["project"].pk, queue.pk, first.pk])
    assert f'id="previous-item" href="{first_url}"' in response.content.decode()
    client.post(reverse("reviews:submit", args=[s["project"].pk, queue.pk, second.pk]), data)
    # Reopening the second (done) item goes back to the first; the first has nothing before it.
    again = client.get(reverse("reviews:item", args=[s["project"].pk, queue.pk, second.pk]))
    assert again.context["done"] and again.context["previous_item_id"] == first.pk
    assert client.get(first_url).context["previous_item_id"] is None


def test_agreement_with_only_pairwise_labels_names_them_and_links_the_bias_page(client, review_setup):
    from webapp.reviews.models import PairwiseLabel

    s = review_setup
    project, version = s["project"], s["version"]
    a, b = s["rollouts"][0], s["rollouts"][1]
    for annotator, first in ((s["ann1"], True), (s["ann2"], False)):
        PairwiseLabel.objects.create(rollout_a=a, rollout_b=b, rubric_version=version, annotator=annotator,
                                     preferred="a", shown_a_first=first)
    client.force_login(s["editor"])
    html = client.get(reverse("reviews:agreement", args=[project.pk])).content.decode()
    assert "No human labels yet" not in html
    assert f"2 pairwise labels under {version}" in html
    bias_url = reverse("reviews:bias", args=[project.pk])
    assert f'href="{bias_url}?version={version.pk}"' in html
    # The bias page without ?version= shows the newest version with labels, not a 404.
    bias = client.get(bias_url)
    assert bias.status_code == 200 and bias.context["version"] == version
    assert "Judge-bias diagnostics" in bias.content.decode()
    # The overview counts both kinds of label, each named.
    overview = client.get(reverse("core:dashboard", args=[project.pk])).content.decode()
    assert '<span class="n">0</span> criterion labels' in overview
    assert '<span class="n">2</span> pairwise labels' in overview


def test_bias_page_without_labels_says_so(client, review_setup):
    s = review_setup
    client.force_login(s["editor"])
    response = client.get(reverse("reviews:bias", args=[s["project"].pk]))
    assert response.status_code == 200 and "No labels yet" in response.content.decode()


def test_align_loop_compares_two_judges_and_rejudges_the_labeled_set(client, review_setup):
    s = review_setup
    project, version = s["project"], s["version"]
    for i, r in enumerate(s["rollouts"]):
        human = [0.0, 0.5, 1.0][i % 3]
        HumanLabel.objects.create(rollout=r, rubric_version=version, criterion_key="helpful", annotator=s["ann1"], value=human)
        CriterionScore.objects.create(rollout=r, rubric_version=version, criterion_key="helpful",
                                      judge_fingerprint="judge-b", score=[1.0, 0.5, 0.0][i % 3])
    client.force_login(s["editor"])
    url = reverse("reviews:align", args=[project.pk])
    response = client.get(url, {"labels": version.pk, "a_version": version.pk, "a_fp": JUDGE_FP,
                                "b_version": version.pk, "b_fp": "judge-b"})
    row = next(r for r in response.context["rows"] if r.criterion.key == "helpful")
    assert row.n == 12 and row.a.value == pytest.approx(1.0) and row.b.value == pytest.approx(-1.0)
    assert row.verdict == "moved down" and "n = 12" in response.content.decode()

    v2 = RubricVersionFactory(rubric=version.rubric, spec=SPEC)
    endpoint = EndpointFactory(project=project)
    # "programmatic criteria only" for a version with a judge criterion: the align page again, the reason at the
    # re-judge form and the choices kept (it was a bare 400 page).
    refused = client.post(reverse("reviews:rejudge", args=[project.pk]), {"labels": version.pk, "version": v2.pk, "endpoint": ""})
    html = refused.content.decode()
    assert refused.status_code == 400 and "reviews/align.html" in [t.name for t in refused.templates]
    assert 'id="rejudge-error"' in html and "choose a judge endpoint" in html
    assert f'<option value="{v2.pk}" selected>' in html and "Re-judge the labeled set" in html
    assert not JudgeJob.objects.filter(rubric_version=v2).exists()
    done = client.post(reverse("reviews:rejudge", args=[project.pk]),
                       {"labels": version.pk, "version": v2.pk, "endpoint": endpoint.pk})
    job = JudgeJob.objects.get(rubric_version=v2)
    assert done.status_code == 302
    assert sorted(job.selection["ids"]) == sorted(r.pk for r in s["rollouts"]) and job.selection["labeled"] == "yes"
    client.force_login(s["ann1"])
    assert client.post(reverse("reviews:rejudge", args=[project.pk]), {"labels": version.pk, "version": v2.pk}).status_code == 403


def test_labeling_page_and_submit_cost_a_fixed_number_of_queries(client, review_setup, django_assert_num_queries):
    """The hot path of 50 annotators at once: pinned so a new per-request query shows up here. GET: session, user,
    membership, queue, the item with its assignment, blind check, the just-submitted item's assignment, whether another
    open blind queue still holds it, labels of both items, scores of the revealed one, the previous item labeled (the
    `p` key; the header's totals come from the cache). Submit: session, user,
    membership, queue (which says whether it names assignees), item with assignment; a transaction for the labels
    and the turn; one for the next item (my live reservation, the first open item, its reservation)."""
    from django.core.cache import cache

    s = review_setup
    queue = queue_for(s, size=4, blind=True)
    client.force_login(s["ann1"])
    client.get(reverse("reviews:next", args=[s["project"].pk, queue.pk]))
    first = queue.items.get(assignments__annotator=s["ann1"])
    data = {"row_version-helpful": "0", "choice-helpful": "yes", "row_version-correct": "0", "choice-correct": "Pass"}
    submit = reverse("reviews:submit", args=[s["project"].pk, queue.pk, first.pk])
    with django_assert_num_queries(17):
        response = client.post(submit, data)
    assert response.status_code == 302
    cache.set(f"reviews:queue-totals:{queue.pk}", None)  # a cold header, as after the cache's few seconds
    client.get(response["Location"])  # fills the header's cache
    with django_assert_num_queries(11):
        page = client.get(response["Location"])
    html = page.content.decode()
    assert page.status_code == 200 and "judge vs you" in html
    # The revealed item shows the judge's scores; the current (blind) one does not yet.
    labels = page.context["reveal"]["rows"]
    assert [r["label"].choice for r in labels] == ["yes", "Pass"] and all(r["scores"] for r in labels)
    assert not page.context["scores_visible"] and all(not row["scores"] for row in page.context["rows"])
    assert page.context["progress"].labels_done == 1


def test_the_page_after_a_submit_counts_that_label(client, review_setup, django_capture_on_commit_callbacks):
    """Issue 19 item 5: the header's totals are cached for a few seconds; a submit drops them, so the next page
    says "1 / 4", not "0 / 4" (the counter was one submit behind in the README loop's browser test)."""
    s = review_setup
    queue = queue_for(s, size=4, blind=True)
    client.force_login(s["ann1"])
    page = client.get(reverse("reviews:next", args=[s["project"].pk, queue.pk]), follow=True)
    assert page.context["progress"].labels_done == 0  # the header's cache is warm now
    first = queue.items.get(assignments__annotator=s["ann1"])
    data = {"row_version-helpful": "0", "choice-helpful": "yes", "row_version-correct": "0", "choice-correct": "Pass"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("reviews:submit", args=[s["project"].pk, queue.pk, first.pk]), data)
    assert response.status_code == 302
    assert client.get(response["Location"]).context["progress"].labels_done == 1


def test_agreement_subpages_need_a_rubric_version_of_the_project(client, review_setup, make_member):
    s = review_setup
    client.force_login(s["editor"])
    _, elsewhere = make_member(Role.EDITOR)
    foreign = RubricVersionFactory(rubric__project=elsewhere, spec=SPEC)
    for name, method in (("reviews:disagreements", client.get), ("reviews:bias", client.get),
                         ("reviews:position_check", client.post)):
        url = reverse(name, args=[s["project"].pk])
        for params in ({}, {"version": "x"}, {"version": foreign.pk}):
            if name == "reviews:bias" and not params:
                continue  # the bias page defaults to the newest labeled version (test_bias_page_without_labels_says_so)
            response = method(url, params)
            assert response.status_code == 404 and "Choose a rubric version" in response.content.decode(), (name, params)


def test_the_header_counts_my_submit_at_once(client, review_setup, django_capture_on_commit_callbacks):
    """The labeling page's totals are cached for a few seconds; the page after a submit still counts that label
    (it used to show the count from before it, one submit behind)."""
    from django.core.cache import cache

    s = review_setup
    queue = queue_for(s, size=4)
    cache.delete(f"reviews:queue-totals:{queue.pk}")
    client.force_login(s["ann1"])
    page = client.get(reverse("reviews:next", args=[s["project"].pk, queue.pk]), follow=True)
    assert page.context["progress"].labels_done == 0  # the header's totals are now cached
    data = {"row_version-helpful": "0", "choice-helpful": "yes", "row_version-correct": "0", "choice-correct": "Pass"}
    for done in (1, 2):
        item = queue.items.get(assignments__annotator=s["ann1"], assignments__status="reserved")
        with django_capture_on_commit_callbacks(execute=True):  # the test's transaction never commits
            response = client.post(reverse("reviews:submit", args=[s["project"].pk, queue.pk, item.pk]), data)
        progress = client.get(response["Location"]).context["progress"]
        assert (progress.labels_done, progress.complete) == (done, done)
    assert HumanLabel.objects.filter(annotator=s["ann1"]).values("rollout_id").distinct().count() == 2
