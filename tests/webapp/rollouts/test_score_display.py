"""Scores you can read on the rollout detail page: each row names the judge that gave it (endpoint and model from
its judge job, or the model its fingerprint records), the rationale is text on the page, the raw judge response
opens in a <details>, and programmatic checks read Pass / Fail instead of "(1.00)"."""

from __future__ import annotations

import html as html_lib
import re

import pytest
from django.urls import reverse

from tests.factories import EndpointFactory, RolloutFactory, RubricVersionFactory
from tests.webapp.reviews.conftest import SPEC
from webapp.core.models import Role
from webapp.judging.models import CriterionScore, JudgeJob

pytestmark = pytest.mark.django_db

FP_A = 'judge-model|{"max_tokens":512,"temperature":0.0}'
FP_B = 'other-model|{"max_tokens":64,"temperature":0.7}'


def rows(page: str) -> list[str]:
    return re.findall(r'<tr class="score-row"[^>]*>(.*?)</tr>', page, re.S)


def test_two_judges_on_one_criterion_are_named_and_explained(client, make_member):
    user, project = make_member(Role.VIEWER)
    version = RubricVersionFactory(rubric__project=project, spec=SPEC)
    rollout = RolloutFactory(project=project)
    endpoint = EndpointFactory(project=project, name="Local vLLM", model="judge-model")
    job = JudgeJob.objects.create(project=project, rubric_version=version, endpoint=endpoint, judge_fingerprint=FP_A)
    CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="helpful", job=job,
                                  judge_fingerprint=FP_A, raw_choice="yes", score=1.0,
                                  rationale="Answers the <b>question</b> directly.",
                                  raw_response='{"verdict": "yes", "rationale": "Answers the question directly."}')
    # Scored by a second judge without a job row (an import or a training reward): named from its fingerprint.
    CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="helpful",
                                  judge_fingerprint=FP_B, raw_choice="partly", score=0.5, rationale="Half of it.")
    CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="correct", job=job,
                                  judge_fingerprint="programmatic", score=1.0)
    client.force_login(user)
    page = client.get(reverse("rollouts:detail", args=[project.pk, rollout.pk])).content.decode()

    shown = rows(page)
    assert len(shown) == 3
    helpful = [r for r in shown if "<code>helpful</code>" in r]
    assert any("Local vLLM (judge-model)" in r and f"job #{job.pk}" in r and "temperature 0" in r for r in helpful)
    assert any("other-model" in r and "temperature 0.7" in r and "max_tokens 64" in r for r in helpful)
    correct = next(r for r in shown if "<code>correct</code>" in r)
    assert "programmatic check" in correct and re.search(r'class="num verdict">Pass<', correct)
    assert "(1.00)" not in correct and "1.000" not in page
    assert any(re.search(r'class="num verdict">yes \(1\.00\)<', r) for r in helpful)
    # The rationale is text on the page (escaped), not only a tooltip; the raw response opens in <details>.
    assert '<p class="rationale small">Answers the &lt;b&gt;question&lt;/b&gt; directly.</p>' in page
    assert 'title="Answers' not in page
    details = re.search(r'<details class="raw-response">(.*?)</details>', page, re.S)
    assert details and "Raw judge response" in details.group(1)
    assert '{"verdict": "yes"' in html_lib.unescape(details.group(1))


def test_a_failed_programmatic_check_reads_fail(client, make_member):
    user, project = make_member(Role.VIEWER)
    version = RubricVersionFactory(rubric__project=project, spec=SPEC)
    rollout = RolloutFactory(project=project)
    CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="correct",
                                  judge_fingerprint="programmatic", score=0.0)
    client.force_login(user)
    page = client.get(reverse("rollouts:detail", args=[project.pk, rollout.pk])).content.decode()
    assert re.search(r'class="num verdict">Fail<', page) and "(0.00)" not in page


def test_the_group_page_names_judges_and_says_pass_or_fail(client, make_member, django_assert_max_num_queries):
    user, project = make_member(Role.VIEWER)
    version = RubricVersionFactory(rubric__project=project, spec=SPEC)
    endpoint = EndpointFactory(project=project, name="Local vLLM", model="judge-model")
    job = JudgeJob.objects.create(project=project, rubric_version=version, endpoint=endpoint, judge_fingerprint=FP_A)
    for i in range(4):
        rollout = RolloutFactory(project=project, group_key="g", sample_index=i)
        CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="correct", job=job,
                                      judge_fingerprint="programmatic", score=float(i % 2))
        CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="helpful", job=job,
                                      judge_fingerprint=FP_A, raw_choice="yes", score=1.0)
    client.force_login(user)
    url = reverse("rollouts:group", args=[project.pk, "g"])
    client.get(url)
    with django_assert_max_num_queries(12):  # the judges' names come with the scores, not one query each
        page = client.get(url).content.decode()
    verdicts = re.findall(r'<td class="num verdict">([^<]*)</td>', page)
    assert sorted(verdicts) == ["Fail", "Fail", "Pass", "Pass", "yes (1.00)", "yes (1.00)", "yes (1.00)", "yes (1.00)"]
    assert page.count("Local vLLM (judge-model)") == 4 and page.count("programmatic check") == 4
