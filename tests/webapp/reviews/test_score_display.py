"""Judge scores on the review pages read like the rollout detail page: the labeling page and its reveal name the
judge when several scored a criterion, show the rationale, and say Pass / Fail for programmatic checks; the
disagreements list shows what was answered (escaped, cut), not only rollout ids. Blind rules are unchanged."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.factories import EndpointFactory
from tests.webapp.reviews.conftest import JUDGE_FP
from webapp.judging.models import CriterionScore, JudgeJob
from webapp.reviews import services
from webapp.reviews.models import HumanLabel

pytestmark = pytest.mark.django_db


def queue_for(s, **kwargs):
    return services.review_queue_create(project=s["project"], name="Spot check", rubric_version=s["version"],
                                        size=4, seed=1, created_by=s["editor"], **kwargs)


def test_reveal_and_label_page_name_judges_and_say_pass_or_fail(client, review_setup):
    s = review_setup
    queue = queue_for(s, blind=True)
    client.force_login(s["ann1"])
    first = client.get(reverse("reviews:next", args=[s["project"].pk, queue.pk]))
    page = client.get(first.url)
    html = page.content.decode()
    assert 'class="judge-score' not in html and 'class="verdict' not in html  # blind until submitted
    item = page.context["item"]
    endpoint = EndpointFactory(project=s["project"], name="Second judge", model="big-model")
    job = JudgeJob.objects.create(project=s["project"], rubric_version=s["version"], endpoint=endpoint,
                                  judge_fingerprint='big-model|{"temperature":0.0}')
    CriterionScore.objects.create(rollout=item.rollout, rubric_version=s["version"], criterion_key="helpful", job=job,
                                  judge_fingerprint=job.judge_fingerprint, raw_choice="no", score=0.0,
                                  rationale="Misses the <i>point</i>.")
    submit = reverse("reviews:submit", args=[s["project"].pk, queue.pk, item.pk])
    done = client.post(submit, {"row_version-helpful": 0, "choice-helpful": "yes", "row_version-correct": 0,
                                "choice-correct": "Pass"})
    html = client.get(done.url, follow=True).content.decode()
    reveal = re.search(r'<section class="card reveal" id="reveal".*?</section>', html, re.S).group(0)
    correct = CriterionScore.objects.get(rollout=item.rollout, criterion_key="correct")
    want = "Pass" if correct.score == 1.0 else "Fail"
    assert re.search(rf'<td>Correct</td>.*?<span class="verdict">{want}</span>', reveal, re.S)
    assert "(0.00)</span>" not in reveal.split("<td>Correct</td>")[1] and "(1.00)" not in reveal.split("<td>Correct</td>")[1]
    # Two judges on "helpful": each is named; the rationale is shown, escaped.
    assert "Second judge (big-model)" in reveal and JUDGE_FP in reveal
    assert "Misses the &lt;i&gt;point&lt;/i&gt;." in reveal

    # An unblind queue: the labeling page's judge lines carry the same names and verdicts.
    open_queue = queue_for(s, blind=False)
    client.force_login(s["ann2"])
    html = client.get(client.get(reverse("reviews:next", args=[s["project"].pk, open_queue.pk])).url).content.decode()
    lines = re.findall(r'<p class="judge-score small">(.*?)</p>', html, re.S)
    assert lines and all("judge-a|" not in line for line in lines)
    assert any(re.search(r'<span class="verdict">(Pass|Fail)</span>', line) for line in lines)


def test_disagreements_show_the_completion_text(client, review_setup):
    s = review_setup
    rollouts = s["rollouts"]
    rollouts[0].completion = "<b>bold</b> " + "long answer " * 60
    rollouts[0].save(update_fields=["completion"])
    for r in rollouts[:4]:
        HumanLabel.objects.create(rollout=r, rubric_version=s["version"], criterion_key="correct",
                                  annotator=s["ann1"], value=1.0, choice="Pass")
    client.force_login(s["editor"])
    html = client.get(reverse("reviews:disagreements", args=[s["project"].pk]),
                      {"version": s["version"].pk, "fingerprint": "programmatic", "key": "correct"}).content.decode()
    rows = re.findall(r"<tr><td><a href=[^>]*>#(\d+)</a></td>(.*?)</tr>", html, re.S)
    assert rows
    shown = dict(rows)
    assert str(rollouts[0].pk) in shown
    text = re.search(r'<td class="completion"><pre class="text small">(.*?)</pre>', shown[str(rollouts[0].pk)], re.S)
    assert text.group(1).startswith("&lt;b&gt;bold&lt;/b&gt; long answer") and text.group(1).endswith("…")
    assert len(text.group(1)) < 400
    assert "<b>bold</b>" not in html
    assert all(re.search(r'<td class="verdict">Fail</td>', row) for _, row in rows)  # judge said 0, humans Pass
