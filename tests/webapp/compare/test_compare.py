"""The side-by-side comparison page (issue 19, Build): pairing, sorting by the difference, filters, paging, one
statement per page whatever its size, the blind rule, escaping, and opening a pairwise label of a row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.factories import (
    ExampleFactory,
    GenerationJobFactory,
    RolloutFactory,
    RubricVersionFactory,
    TaskFactory,
)
from webapp.compare import selectors
from webapp.core.models import Role
from webapp.judging.models import JudgeJob, RolloutScore
from webapp.reviews.models import (
    AssignmentStatus,
    PairwiseLabel,
    ReviewAssignment,
    ReviewItem,
    ReviewMode,
    ReviewQueue,
)

SPEC = {"criteria": [{"key": "correct", "title": "Correct", "kind": "match", "weight": 1.0, "extract": "answer_tag",
                      "mode": "numeric", "tolerance": 0.0}]}


def build(make_member, n: int = 6):
    """Two models answering the same n examples; model A scores i/10, model B scores (n - i)/10 under v1, and v2
    scores model A's rollouts 1 - i/10."""
    editor, project = make_member(Role.EDITOR)
    task = TaskFactory(project=project)
    v1 = RubricVersionFactory(rubric__project=project, spec=SPEC)
    v2 = RubricVersionFactory(rubric=v1.rubric, number=2, spec=SPEC)
    job_a = GenerationJobFactory(project=project, task=task, model_name="model-alpha")
    job_b = GenerationJobFactory(project=project, task=task, model_name="model-beta")
    judge_v1 = JudgeJob.objects.create(project=project, rubric_version=v1, judge_fingerprint="fp-1")
    judge_v1b = JudgeJob.objects.create(project=project, rubric_version=v1, judge_fingerprint="fp-2")
    examples, rows_a, rows_b = [], [], []
    for i in range(n):
        example = ExampleFactory(task=task, prompt=f"question {i}", split="eval" if i % 2 else "train")
        examples.append(example)
        a = RolloutFactory(project=project, task=task, example=example, job=job_a, completion=f"alpha says {i} <b>x</b>",
                           group_key=f"a{i}")
        b = RolloutFactory(project=project, task=task, example=example, job=job_b, completion=f"beta says {i}",
                           group_key=f"b{i}")
        rows_a.append(a)
        rows_b.append(b)
        RolloutScore.objects.create(rollout=a, rubric_version=v1, judge_fingerprint="fp-1", total=i / 10)
        RolloutScore.objects.create(rollout=b, rubric_version=v1, judge_fingerprint="fp-1", total=(n - i) / 10)
        RolloutScore.objects.create(rollout=a, rubric_version=v2, judge_fingerprint="fp-1", total=1 - i / 10)
        if i < 3:  # a second judge scored half of model A's rollouts: "the judge that scored most" is fp-1
            RolloutScore.objects.create(rollout=a, rubric_version=v1, judge_fingerprint="fp-2", total=0.5)
    return {"editor": editor, "project": project, "task": task, "v1": v1, "v2": v2, "job_a": job_a, "job_b": job_b,
            "judge_v1": judge_v1, "judge_v1b": judge_v1b, "a": rows_a, "b": rows_b}


def url(w, **params):
    from urllib.parse import urlencode

    return reverse("compare:view", args=[w["project"].pk]) + "?" + urlencode(params)


def side(w, job, version=None, judge=None):
    return selectors.side_build(project=w["project"], job_id=job.pk, version_id=version and version.pk,
                                judge_id=judge and judge.pk, name="A")


@pytest.mark.django_db
def test_model_a_vs_b_pairs_examples_and_sorts_by_difference(make_member):
    w = build(make_member)
    a, b = side(w, w["job_a"], w["v1"]), side(w, w["job_b"], w["v1"])
    page = selectors.comparison_page(a=a, b=b, filters=selectors.Filters(sort="diff"))
    assert page.total == 6
    # B − A = (6 - i)/10 - i/10 = (6 - 2i)/10: largest at i = 0.
    assert [r.example.prompt for r in page.rows] == [f"question {i}" for i in range(6)]
    assert [round(r.diff, 3) for r in page.rows] == [0.6, 0.4, 0.2, 0.0, -0.2, -0.4]
    assert {r.b_id for r in page.rows} == {r.pk for r in w["b"]}
    rows = selectors.comparison_page(a=a, b=b, filters=selectors.Filters(sort="-diff")).rows
    assert rows[0].example.prompt == "question 5"
    rows = selectors.comparison_page(a=a, b=b, filters=selectors.Filters(sort="abs")).rows
    assert [round(abs(r.diff), 1) for r in rows] == [0.6, 0.4, 0.4, 0.2, 0.2, 0.0]


@pytest.mark.django_db
def test_rubric_v1_vs_v2_and_judge_a_vs_b_on_the_same_rollouts(make_member):
    w = build(make_member)
    a, b = side(w, w["job_a"], w["v1"]), side(w, w["job_a"], w["v2"])
    page = selectors.comparison_page(a=a, b=b, filters=selectors.Filters(sort="diff"))
    assert page.same_rollouts and page.total == 6
    assert all(r.b_id == r.pk for r in page.rows)
    assert round(page.rows[0].diff, 3) == 1.0  # i = 0: v1 0.0, v2 1.0
    # Two judges of one version: the judge job fixes the fingerprint.
    a, b = side(w, w["job_a"], judge=w["judge_v1"]), side(w, w["job_a"], judge=w["judge_v1b"])
    rows = selectors.comparison_page(a=a, b=b, filters=selectors.Filters(sort="diff")).rows
    assert [None if r.score_b is None else round(r.score_b, 2) for r in rows] == [0.5] * 3 + [None] * 3
    assert round(rows[0].diff, 3) == 0.5 and rows[-1].diff is None  # unscored rows sort last


@pytest.mark.django_db
def test_filters_split_text_score_and_difference(make_member):
    w = build(make_member)
    a, b = side(w, w["job_a"], w["v1"]), side(w, w["job_b"], w["v1"])

    def prompts(**kw):
        return sorted(r.example.prompt for r in selectors.comparison_page(a=a, b=b, filters=selectors.Filters(**kw)).rows)

    assert prompts(split="eval") == ["question 1", "question 3", "question 5"]
    assert prompts(q="beta says 4") == ["question 4"]  # B's completion matches
    assert prompts(q="question 2") == ["question 2"]
    assert prompts(q="QUESTION 2") == ["question 2"]  # case-insensitive
    assert prompts(q="%") == [] and prompts(q="_") == []  # LIKE wildcards are plain characters
    assert prompts(diff_min=0.35) == ["question 0", "question 1", "question 5"]
    # A or B within range: A = i/10, B = (6 - i)/10; ≥ 0.55 holds for A at none, B at i = 0.
    assert prompts(score_min=0.55) == ["question 0"]
    assert prompts(score_max=0.05) == ["question 0"]


@pytest.mark.django_db
def test_text_search_matches_what_the_rollout_browser_matches(make_member):
    """One meaning of "contains, ignoring case" on both pages: Postgres folds the term and the text alike. Python's
    str.upper() folds "ß" to "SS" and "ﬁ" to "FI", which Postgres does not: "straße" found nothing here."""
    from webapp.rollouts.models import Rollout
    from webapp.rollouts.selectors import rollout_browse

    w = build(make_member, n=2)
    texts = ["Die Straße ist lang", "STRASSE in caps", "ﬁle ligature", "FILE plain", "Kelvin 5\u212a", "ſmall long s"]
    for n, text in enumerate(texts, 1):
        RolloutFactory(project=w["project"], task=w["task"], example=w["a"][0].example, job=w["job_a"],
                       completion=text, group_key="t", sample_index=n)
    a = side(w, w["job_a"], w["v1"])
    # Terms no prompt ("question 0", "question 1") contains: the browser searches completions, compare prompts too.
    for term in ("straße", "STRASSE", "ß", "ﬁle", "file", "k", "\u212a", "ſmall", "SMALL"):
        browser = set(rollout_browse(w["project"], filters={"q": term, "job": w["job_a"].pk})
                      .values_list("pk", flat=True))
        compared = {r.pk for r in selectors.comparison_page(a=a, b=a, filters=selectors.Filters(q=term), size=100).rows}
        assert compared == browser, term
        if term == "straße":  # what Python's folding missed
            assert [r.completion for r in Rollout.objects.filter(pk__in=compared)] == ["Die Straße ist lang"]


@pytest.mark.django_db
def test_page_pages_and_reads_rows_in_one_statement(client, make_member):
    """The rows of a page are one SQL statement, whatever the number of rows (no query per row)."""
    counts = {}
    for n in (3, 30):
        w = build(make_member, n=n)
        client.force_login(w["editor"])
        target = url(w, a_job=w["job_a"].pk, b_job=w["job_b"].pk, a_version=w["v1"].pk, sort="diff")
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(target, headers={"HX-Request": "true"})
        assert response.status_code == 200
        counts[n] = len(ctx.captured_queries)
        rollout_reads = [q["sql"] for q in ctx.captured_queries if "FROM rollouts_rollout a" in q["sql"]
                         and "LIMIT" in q["sql"]]
        assert not [q["sql"] for q in ctx.captured_queries if 'FROM "tasks_example"' in q["sql"]], \
            "examples are read with the rows"
        assert len(rollout_reads) == 1, rollout_reads
    assert counts[3] == counts[30], counts
    text = client.get(url(w, a_job=w["job_a"].pk, b_job=w["job_b"].pk, a_version=w["v1"].pk, page=2)).content.decode()
    assert "page 2 of 2" in text and text.count('class="compare-row"') == 5


@pytest.mark.django_db
def test_page_escapes_model_output_and_names_the_sides(client, make_member):
    w = build(make_member)
    client.force_login(w["editor"])
    response = client.get(url(w, a_job=w["job_a"].pk, b_job=w["job_b"].pk, a_version=w["v1"].pk))
    text = response.content.decode()
    assert response.status_code == 200
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text
    assert "model-alpha" in text and "model-beta" in text and "Label pair" in text
    # base.html's note on htmx was a multi-line {# #}, which Django prints as text at the top of every page.
    assert "{#" not in text and "htmx 2 ignores" not in text
    # The pickers show names; a foreign or malformed id is an error message, not a 500.
    assert client.get(url(w, a_job=10**9)).status_code == 404
    assert client.get(url(w, a_job="²", sort="nonsense", score_min="NaN")).status_code == 200


@pytest.mark.django_db
def test_refused_to_an_annotator_with_blind_items(client, make_member):
    w = build(make_member)
    annotator, _ = make_member(Role.ANNOTATOR, w["project"])
    client.force_login(annotator)
    target = url(w, a_job=w["job_a"].pk, b_job=w["job_b"].pk, a_version=w["v1"].pk)
    assert client.get(target).status_code == 200
    queue = ReviewQueue.objects.create(project=w["project"], name="blind", rubric_version=w["v1"], blind=True)
    ReviewItem.objects.create(queue=queue, position=1, rollout=w["a"][0])
    response = client.get(target)
    assert response.status_code == 403 and "0.600" not in response.content.decode()


@pytest.mark.django_db
def test_label_pair_creates_then_reuses_a_pairwise_item(client, make_member):
    w = build(make_member)
    annotator, _ = make_member(Role.ANNOTATOR, w["project"])
    client.force_login(annotator)
    post = {"version": w["v1"].pk, "a": w["a"][2].pk, "b": w["b"][2].pk}
    response = client.post(reverse("compare:label", args=[w["project"].pk]), post)
    assert response.status_code == 302
    item = ReviewItem.objects.get()
    assert item.queue.mode == ReviewMode.PAIRWISE and not item.queue.blind
    assert response["Location"] == reverse("reviews:item", args=[w["project"].pk, item.queue_id, item.pk])
    page = client.get(response["Location"])
    assert page.status_code == 200 and "alpha says 2" in page.content.decode()
    # The same pair, in either order, opens the same item.
    client.post(reverse("compare:label", args=[w["project"].pk]), {**post, "a": post["b"], "b": post["a"]})
    assert ReviewItem.objects.count() == 1 and ReviewQueue.objects.count() == 1
    back = url(w, a_job=w["job_a"].pk, b_job=w["job_b"].pk, a_version=w["v1"].pk, sort="diff")
    opened = client.post(reverse("compare:label", args=[w["project"].pk]), {**post, "back": back})
    page = client.get(opened["Location"]).content.decode()
    assert 'name="back"' in page
    pairwise = reverse("reviews:pairwise", args=[w["project"].pk, item.queue_id, item.pk])
    # Only the comparison page of this project is a place to go back to.
    for hostile in ("https://evil.example/", "//evil.example/p/", "/p/1/compare/\\evil", "/admin/"):
        response = client.post(pairwise, {"preferred": "b", "back": hostile})
        assert response["Location"] == reverse("reviews:next", args=[w["project"].pk, item.queue_id]), hostile
    submitted = client.post(pairwise, {"preferred": "b", "back": back})
    assert submitted.status_code == 302 and submitted["Location"] == back
    label = PairwiseLabel.objects.get()
    assert (label.rollout_a_id, label.rollout_b_id, label.preferred) == (w["a"][2].pk, w["b"][2].pk, "b")
    assert ReviewAssignment.objects.get(item=item, annotator=annotator).status == AssignmentStatus.DONE
    # Another pair joins the same queue; a rollout of another project is refused.
    client.post(reverse("compare:label", args=[w["project"].pk]), {**post, "a": w["a"][3].pk, "b": w["b"][3].pk})
    assert ReviewItem.objects.filter(queue=item.queue).count() == 2
    other = RolloutFactory()
    refused = client.post(reverse("compare:label", args=[w["project"].pk]), {**post, "b": other.pk})
    assert refused.status_code == 404


@pytest.mark.django_db
def test_viewer_cannot_open_a_label(client, make_member):
    w = build(make_member)
    viewer, _ = make_member(Role.VIEWER, w["project"])
    client.force_login(viewer)
    response = client.post(reverse("compare:label", args=[w["project"].pk]),
                           {"version": w["v1"].pk, "a": w["a"][0].pk, "b": w["b"][0].pk})
    assert response.status_code == 403 and not ReviewItem.objects.exists()
    assert timezone.now() - timedelta(seconds=1) < timezone.now()


@pytest.mark.django_db
def test_reached_from_the_rollout_browser_the_rubric_diff_and_a_judge_job(client, make_member):
    """Links carry the sides' ids; the comparison page shows them preselected by name."""
    w = build(make_member)
    client.force_login(w["editor"])
    project = w["project"].pk
    browser = client.get(reverse("rollouts:list", args=[project]) + f"?job={w['job_a'].pk}&rubric_version={w['v1'].pk}")
    assert f"/compare/?a_job={w['job_a'].pk}&amp;a_version={w['v1'].pk}" in browser.content.decode()
    diff = client.get(reverse("rubrics:diff", args=[project, w["v1"].rubric_id])
                      + f"?a={w['v1'].number}&b={w['v2'].number}").content.decode()
    assert f"/compare/?a_version={w['v1'].pk}&amp;b_version={w['v2'].pk}" in diff
    judge = client.get(reverse("judging:detail", args=[project, w["judge_v1"].pk])).content.decode()
    assert f"/compare/?a_judge={w['judge_v1'].pk}" in judge
    page = client.get(url(w, a_version=w["v1"].pk, b_version=w["v2"].pk)).content.decode()
    assert f'<option value="{w["v2"].pk}" selected>' in page and "Choose the rollouts of side A" in page
