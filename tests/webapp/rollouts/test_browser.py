"""The rollout browser: filters, keyset pages, group view, safe rendering of untrusted model output."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import (
    ExampleFactory,
    GenerationJobFactory,
    RolloutFactory,
    RubricVersionFactory,
    TaskFactory,
    UserFactory,
)
from webapp.core.models import Role
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.reviews.models import HumanLabel
from webapp.rollouts.rendering import render_markdown

EVIL = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


@pytest.fixture
def browsing(make_member, client):
    user, project = make_member(Role.VIEWER)
    client.force_login(user)
    return project


def ids_in(response) -> list[int]:
    return [int(x) for x in re.findall(r'rollouts/(\d+)/">', response.content.decode())]


@pytest.mark.django_db
def test_filters_narrow_the_list(client, browsing):
    project = browsing
    task_a, task_b = TaskFactory(project=project), TaskFactory(project=project)
    job = GenerationJobFactory(project=project, task=task_a)
    version = RubricVersionFactory(rubric__project=project)
    good = RolloutFactory(project=project, task=task_a, job=job, completion="the answer is 42", model_name="m1")
    bad = RolloutFactory(project=project, task=task_a, job=job, completion="no idea", error="timeout", model_name="m1")
    other = RolloutFactory(project=project, task=task_b, source="import", completion="forty-two", model_name="m2")
    RolloutScore.objects.create(rollout=good, rubric_version=version, judge_fingerprint="programmatic", total=0.9)
    RolloutScore.objects.create(rollout=bad, rubric_version=version, judge_fingerprint="programmatic", total=0.1)
    HumanLabel.objects.create(rollout=other, rubric_version=version, criterion_key="correct", annotator=UserFactory(), value=1)

    url = reverse("rollouts:list", args=[project.pk])
    assert ids_in(client.get(url)) == [other.pk, bad.pk, good.pk]
    assert ids_in(client.get(url, {"task": task_a.pk})) == [bad.pk, good.pk]
    assert ids_in(client.get(url, {"job": job.pk})) == [bad.pk, good.pk]
    assert ids_in(client.get(url, {"source": "import"})) == [other.pk]
    assert ids_in(client.get(url, {"model": "m2"})) == [other.pk]
    assert ids_in(client.get(url, {"q": "42"})) == [good.pk]
    assert ids_in(client.get(url, {"errors_only": "on"})) == [bad.pk]
    assert ids_in(client.get(url, {"labeled": "yes"})) == [other.pk]
    assert ids_in(client.get(url, {"labeled": "no"})) == [bad.pk, good.pk]
    response = client.get(url, {"rubric_version": version.pk, "score_min": "0.5"})
    assert ids_in(response) == [good.pk] and "0.900" in response.content.decode()
    assert ids_in(client.get(url, {"rubric_version": version.pk, "score_max": "0.5"})) == [bad.pk]
    # Nonsense in the query string is reported, not a 500.
    response = client.get(url, {"score_min": "lots", "task": "x"})
    assert response.status_code == 200 and ids_in(response) == [other.pk, bad.pk, good.pk]


@pytest.mark.django_db
def test_keyset_pages_cover_everything_once_with_constant_queries(client, browsing):
    project = browsing
    task = TaskFactory(project=project)
    version = RubricVersionFactory(rubric__project=project)
    rollouts = RolloutFactory.create_batch(130, project=project, task=task, example=ExampleFactory(task=task))
    RolloutScore.objects.bulk_create(
        RolloutScore(rollout=r, rubric_version=version, judge_fingerprint="programmatic", total=0.5) for r in rollouts
    )
    url = reverse("rollouts:list", args=[project.pk])
    seen, counts, cursor = [], [], {"rubric_version": version.pk}
    while True:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(url, cursor, HTTP_HX_REQUEST="true")
        counts.append(len(ctx.captured_queries))
        seen += ids_in(response)
        match = re.search(r"before=(\d+)", response.content.decode())
        if not match:
            break
        cursor = {"rubric_version": version.pk, "before": match.group(1)}
    assert sorted(seen, reverse=True) == seen and set(seen) == {r.pk for r in rollouts}
    assert len(set(counts)) == 1, counts


@pytest.mark.django_db
def test_group_view_shows_every_sample_with_scores(client, browsing):
    project = browsing
    task = TaskFactory(project=project)
    example = ExampleFactory(task=task, prompt="What is 6 * 7?")
    version = RubricVersionFactory(rubric__project=project)
    group = [RolloutFactory(project=project, task=task, example=example, group_key="grp-1", sample_index=i,
                            completion=f"<answer>{40 + i}</answer>") for i in range(4)]
    for r in group:
        CriterionScore.objects.create(rollout=r, rubric_version=version, criterion_key="correct",
                                      judge_fingerprint="programmatic", score=float(r.sample_index == 2))
    RolloutFactory(project=project, task=task, group_key="grp-2")
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse("rollouts:group", args=[project.pk, "grp-1"]))
    html = response.content.decode()
    assert response.status_code == 200 and "4 samples" in html and "What is 6 * 7?" in html
    assert all(f"&lt;answer&gt;{40 + i}&lt;/answer&gt;" in html for i in range(4))
    assert len(ctx.captured_queries) < 12
    assert client.get(reverse("rollouts:group", args=[project.pk, "nope"])).status_code == 404


@pytest.mark.django_db
def test_untrusted_output_is_inert_in_list_detail_group_and_markdown(client, browsing):
    project = browsing
    rollout = RolloutFactory(
        project=project, completion=EVIL,
        messages=[{"role": "user", "content": EVIL}, {"role": "assistant", "content": EVIL,
                   "tool_calls": [{"id": "c1", "type": "function", "function": {"name": EVIL, "arguments": EVIL}}]}],
    )
    for url in (reverse("rollouts:list", args=[project.pk]),
                reverse("rollouts:detail", args=[project.pk, rollout.pk]),
                reverse("rollouts:detail", args=[project.pk, rollout.pk]) + "?view=rendered",
                reverse("rollouts:group", args=[project.pk, rollout.group_key])):
        html = client.get(url).content.decode()
        # Only escaped text may remain: no live <script> or <img> element from the model's output.
        assert "<script>window.pwned" not in html and "<img src=x" not in html, url


def test_markdown_rendering_is_sanitized():
    html = render_markdown("**bold** [x](javascript:alert(1)) <b onclick=1>hi</b>\n\n```\ncode\n```")
    assert "<strong>bold</strong>" in html and "<pre><code>code" in html
    assert 'href="javascript' not in html and not re.search(r"<[^>]*onclick", html) and "<b " not in html
    assert render_markdown('<a href="javascript:alert(1)">x</a> [y](https://ok.example)').count("<a ") == 1


@pytest.mark.django_db
def test_blind_review_hides_judge_scores_from_annotators_on_rollout_pages(client, make_member):
    from webapp.reviews.models import ReviewItem, ReviewQueue

    annotator, project = make_member(Role.ANNOTATOR)
    owner, _ = make_member(Role.OWNER, project=project)
    version = RubricVersionFactory(rubric__project=project)
    rollout = RolloutFactory(project=project, group_key="blind-g")
    CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="correct",
                                  judge_fingerprint="j", score=0.75, rationale="judge says so")
    RolloutScore.objects.create(rollout=rollout, rubric_version=version, judge_fingerprint="j", total=0.75)
    queue = ReviewQueue.objects.create(project=project, name="blind", rubric_version=version, blind=True)
    ReviewItem.objects.create(queue=queue, position=0, rollout=rollout)
    urls = [reverse("rollouts:detail", args=[project.pk, rollout.pk]),
            reverse("rollouts:group", args=[project.pk, "blind-g"]),
            reverse("rollouts:list", args=[project.pk]) + f"?rubric_version={version.pk}"]
    client.force_login(annotator)
    for url in urls:
        html = client.get(url).content.decode()
        assert "0.75" not in html and "judge says so" not in html, url
    client.force_login(owner)
    assert all("0.75" in client.get(url).content.decode() for url in urls)


@pytest.mark.django_db
def test_empty_project_offers_generate_and_import_and_filters_say_they_matched_nothing(client, browsing):
    url = reverse("rollouts:list", args=[browsing.pk])
    empty = client.get(url).content.decode()
    assert "No rollouts yet" in empty
    assert reverse("rollouts:jobs", args=[browsing.pk]) in empty and reverse("exports:import", args=[browsing.pk]) in empty
    filtered = client.get(url, {"q": "nothing"}).content.decode()
    assert "No rollouts match these filters." in filtered and "No rollouts yet" not in filtered


@pytest.mark.django_db
def test_every_page_links_to_the_api_docs_and_the_token_page(client, browsing):
    page = client.get(reverse("core:dashboard", args=[browsing.pk])).content.decode()
    assert reverse("api-docs") in page and reverse("api-token") in page
