"""Judge-side position-swap check: a scripted judge on a real local HTTP server compares rollouts in both orders."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.urls import reverse

from tests.factories import EndpointFactory
from tests.support.judge_server import StubChatServer
from webapp.core.errors import ApplicationError
from webapp.core.models import Role
from webapp.judging.models import RolloutScore
from webapp.reviews import dashboard, services
from webapp.reviews.models import PairwiseJudgment, PositionCheckJob
from workers.judging import position_check as position_check_task

pytestmark = pytest.mark.django_db


def _answers(body: dict[str, Any]) -> dict[str, int]:
    text = body["messages"][-1]["content"]
    blocks = dict(re.findall(r'<completion id="([AB])">\n(.*?)\n</completion>', text, flags=re.DOTALL))
    return {side: int(re.search(r"<answer>(\d+)</answer>", block).group(1)) for side, block in blocks.items()}


def fair(body: dict[str, Any], index: int) -> str:
    # Content, not position: the smaller answer wins, whichever side it is shown on.
    answers = _answers(body)
    return json.dumps({"rationale": "smaller", "verdict": "A" if answers["A"] < answers["B"] else "B"})


def first_shown(body: dict[str, Any], index: int) -> str:
    return json.dumps({"rationale": "the first one", "verdict": "A"})


def test_a_position_biased_judge_and_a_consistent_one_on_the_bias_page(client, review_setup):
    s = review_setup
    version = s["version"]
    with StubChatServer(fair, model="fair-judge") as fair_server, \
            StubChatServer(first_shown, model="biased-judge") as biased_server:
        fair_endpoint = EndpointFactory(project=s["project"], base_url=fair_server.base_url, model="fair-judge",
                                        supports_structured_output=False)
        biased_endpoint = EndpointFactory(project=s["project"], base_url=biased_server.base_url, model="biased-judge",
                                          supports_structured_output=False)
        fair_rows = services.position_check_run(rubric_version=version, endpoint=fair_endpoint, pairs=4)
        biased_rows = services.position_check_run(rubric_version=version, endpoint=biased_endpoint, pairs=4)
        assert fair_server.stats["requests"] == biased_server.stats["requests"] == 8  # 4 pairs × 2 orders
    # Pairs are two rollouts of one prompt (group).
    assert all(r.rollout_x.group_key == r.rollout_y.group_key and r.rollout_x_id != r.rollout_y_id for r in fair_rows)
    assert {(r.verdict_first, r.verdict_swapped) for r in fair_rows} <= {("A", "B"), ("B", "A")}
    assert {(r.verdict_first, r.verdict_swapped) for r in biased_rows} == {("A", "A")}

    rows = {row.judge_model: row for row in dashboard.bias_diagnostics(version).judge_position}
    assert rows["fair-judge"].report.consistency.value == 1.0 and rows["fair-judge"].report.n == 4
    assert rows["biased-judge"].report.consistency.value == 0.0
    assert rows["biased-judge"].report.first_position_rate.value == 1.0
    assert rows["biased-judge"].report.first_position_rate.n == 8

    viewer, _ = _member(s, Role.VIEWER)
    client.force_login(viewer)
    html = client.get(reverse("reviews:bias", args=[s["project"].pk]), {"version": version.pk}).content.decode()
    assert 'id="judge-position"' in html and "biased-judge" in html and "fair-judge" in html
    assert "1.000" in html and "0.000" in html and "(n = 4)" in html
    assert 'id="position-check-form"' not in html  # viewers cannot start one


def test_the_check_writes_nothing_twice_and_explains_when_nothing_is_left(review_setup):
    s = review_setup
    with StubChatServer(first_shown, model="biased-judge") as server:
        endpoint = EndpointFactory(project=s["project"], base_url=server.base_url, model="biased-judge",
                                   supports_structured_output=False)
        first = services.position_check_run(rubric_version=s["version"], endpoint=endpoint, pairs=200)
        asked = {(r.rollout_x_id, r.rollout_y_id) for r in first}
        while True:  # each run compares pairs this judge has not compared yet, until none are left
            try:
                more = services.position_check_run(rubric_version=s["version"], endpoint=endpoint, pairs=200)
            except ApplicationError as error:
                assert "No two scored rollouts" in error.message
                break
            new = {(r.rollout_x_id, r.rollout_y_id) for r in more}
            assert not new & asked and not {(y, x) for x, y in new} & asked
            asked |= new
    assert PairwiseJudgment.objects.count() == len(asked) >= 4


def test_failed_calls_are_stored_with_their_reason(review_setup, settings):
    s = review_setup
    settings.RUBRICON_ENDPOINT_RETRY_BACKOFF_S = 0.01  # the same 5 retries, not ~12 s of backoff
    endpoint = EndpointFactory(project=s["project"], base_url="http://127.0.0.1:9/v1", model="down",
                               supports_structured_output=False, default_params={"max_tokens": 8})
    from webapp.endpoints.models import ModelEndpoint

    ModelEndpoint.objects.filter(pk=endpoint.pk).update(max_concurrency=2)
    rows = services.position_check_run(rubric_version=s["version"], endpoint=endpoint, pairs=1)
    assert len(rows) == 1 and rows[0].verdict_first == "" and rows[0].error
    row = dashboard.bias_diagnostics(s["version"]).judge_position[0]
    assert row.failed == 1 and row.report.consistency.value is None


def test_only_editors_start_a_check_and_it_runs_after_commit(client, review_setup, django_capture_on_commit_callbacks):
    s = review_setup
    endpoint = EndpointFactory(project=s["project"], model="judge")
    url = reverse("reviews:position_check", args=[s["project"].pk])
    data = {"version": s["version"].pk, "endpoint": endpoint.pk, "pairs": 5}
    client.force_login(s["ann1"])
    assert client.post(url, data).status_code == 403
    client.force_login(s["editor"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(url, data)
    assert response.status_code == 302 and len(callbacks) == 1
    job = PositionCheckJob.objects.get()
    assert (job.status, job.pairs, job.endpoint_id, job.rubric_version_id) == ("pending", 5, endpoint.pk, s["version"].pk)
    with django_capture_on_commit_callbacks(execute=False) as none:
        bad = client.post(url, {**data, "pairs": 0})
    assert bad.status_code == 400 and not none and PositionCheckJob.objects.count() == 1
    other = EndpointFactory(model="elsewhere")
    assert client.post(url, {**data, "endpoint": other.pk}).status_code == 400


def _member(s, role):
    from tests.factories import MembershipFactory, UserFactory

    user = UserFactory()
    MembershipFactory(project=s["project"], user=user, role=role)
    return user, s["project"]


def _start(client, s, endpoint, pairs, django_capture_on_commit_callbacks) -> PositionCheckJob:
    """The editor starts a check on the bias page; the worker task runs it by job id (as a worker would)."""
    client.force_login(s["editor"])
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("reviews:position_check", args=[s["project"].pk]),
                               {"version": s["version"].pk, "endpoint": endpoint.pk, "pairs": pairs})
    assert response.status_code == 302
    job = PositionCheckJob.objects.order_by("-id").first()
    bias = client.get(reverse("reviews:bias", args=[s["project"].pk]), {"version": s["version"].pk}).content.decode()
    assert 'id="position-check-job"' in bias and 'data-job-status="pending"' in bias and "hx-get=" in bias
    assert "Waiting for a worker" in bias
    position_check_task(job_id=job.pk)
    job.refresh_from_db()
    return job


def test_a_check_that_cannot_run_fails_with_its_reason_on_the_bias_page(client, review_setup,
                                                                        django_capture_on_commit_callbacks):
    s = review_setup
    RolloutScore.objects.filter(rubric_version=s["version"]).delete()  # nothing scored: no pair to compare
    endpoint = EndpointFactory(project=s["project"], base_url="http://127.0.0.1:9/v1", model="judge")
    job = _start(client, s, endpoint, 3, django_capture_on_commit_callbacks)
    assert job.status == "failed" and "No two scored rollouts" in job.error and job.calls_made == 0
    html = client.get(reverse("reviews:bias", args=[s["project"].pk]), {"version": s["version"].pk}).content.decode()
    block = html[html.index('id="position-check-job"'):]
    assert 'data-job-status="failed"' in block and "No two scored rollouts" in block
    assert "hx-get=" not in html[html.index('<div id="position-check-job"'):][:300]  # finished: the poll stops


def test_a_check_counts_pairs_and_calls_and_the_page_stops_polling_when_it_ends(client, review_setup,
                                                                               django_capture_on_commit_callbacks):
    s = review_setup
    with StubChatServer(fair, model="fair-judge") as server:
        endpoint = EndpointFactory(project=s["project"], base_url=server.base_url, model="fair-judge",
                                   supports_structured_output=False)
        url = reverse("reviews:bias", args=[s["project"].pk])
        pending = PositionCheckJob.objects.create(rubric_version=s["version"], endpoint=endpoint, pairs=1)
        client.force_login(s["editor"])
        # The poll of a job that has not moved returns its progress block only.
        seen = "pending:False"
        poll = client.get(url, {"version": s["version"].pk, "state": seen}, HTTP_HX_REQUEST="true")
        assert poll.content.decode().lstrip().startswith('<div id="position-check-job"')
        PositionCheckJob.objects.filter(pk=pending.pk).delete()

        job = _start(client, s, endpoint, 4, django_capture_on_commit_callbacks)
        assert server.stats["requests"] == 8  # 4 pairs × 2 orders
    assert (job.status, job.total, job.done, job.failed_count) == ("succeeded", 4, 4, 0)
    assert job.calls_made == 8 and job.cache_hits == 0 and job.prompt_tokens > 0 and job.completion_tokens > 0
    assert job.started_at and job.finished_at and not job.error
    assert PairwiseJudgment.objects.filter(rubric_version=s["version"]).count() == 4
    # The page still polling with the state it last saw gets the whole section (the new verdicts with it).
    moved = client.get(url, {"version": s["version"].pk, "state": "running:False"}, HTTP_HX_REQUEST="true")
    assert moved.headers["HX-Retarget"] == "#bias"
    html = moved.content.decode()
    assert 'id="judge-position"' in html and "fair-judge" in html
    block = html[html.index('<div id="position-check-job"'):]
    assert "hx-get=" not in block[:300] and 'data-job-status="succeeded"' in block
    assert "4 / 4" in block and "8 model calls" in block


def test_a_check_whose_every_call_fails_ends_failed_with_the_reason(client, review_setup, settings,
                                                                   django_capture_on_commit_callbacks):
    s = review_setup
    settings.RUBRICON_ENDPOINT_RETRY_BACKOFF_S = 0.01  # the same 5 retries, not ~12 s of backoff
    endpoint = EndpointFactory(project=s["project"], base_url="http://127.0.0.1:9/v1", model="down",
                               supports_structured_output=False, default_params={"max_tokens": 8})
    job = _start(client, s, endpoint, 2, django_capture_on_commit_callbacks)
    assert (job.status, job.done, job.failed_count) == ("failed", 2, 2)
    assert "2 of 2 pairs without both verdicts" in job.error and job.calls_made == 4


def test_a_check_whose_worker_died_expires_and_the_page_stops_polling(client, review_setup, settings):
    from datetime import timedelta

    from django.utils import timezone

    s = review_setup
    settings.RUBRICON_TOOL_JOB_TIMEOUT_S = 60
    job = PositionCheckJob.objects.create(rubric_version=s["version"], endpoint=EndpointFactory(project=s["project"]),
                                          pairs=3)
    PositionCheckJob.objects.filter(pk=job.pk).update(status="running", created_at=timezone.now() - timedelta(minutes=2))
    client.force_login(s["editor"])
    html = client.get(reverse("reviews:bias", args=[s["project"].pk]), {"version": s["version"].pk}).content.decode()
    job.refresh_from_db()
    assert job.status == "failed" and "No result after 1 minutes" in job.error
    block = html[html.index('<div id="position-check-job"'):]
    assert "hx-get=" not in block[:300] and "No result after" in block
