"""Dry run: calls, tokens and time for judging a whole task, estimated from a sample of groups scored for real
(judge calls timed against a real local server), and the share of groups whose rewards have zero variance."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import (
    EndpointFactory,
    ExampleFactory,
    GenerationJobFactory,
    RolloutFactory,
    RubricFactory,
    RubricVersionFactory,
    TaskFactory,
)
from tests.support.judge_server import StubChatServer
from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Role
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.rubric_tools import dryrun
from webapp.rubrics.models import RubricToolJob

pytestmark = pytest.mark.django_db

MATCH = {"key": "correct", "title": "Correct", "kind": "match", "weight": 1.0, "extract": "answer_tag",
         "mode": "numeric"}
JUDGE = {"key": "polite", "title": "Polite", "kind": "judge", "weight": 1.0, "question": "Is the answer polite?",
         "choices": [{"label": "no"}, {"label": "yes"}]}
CLEAR = {**JUDGE, "key": "clear", "title": "Clear", "question": "Is it clear?"}


@pytest.fixture
def task():
    """Three groups of 4 rollouts: all right (flat), mixed, all wrong (flat); plus a failed rollout, not counted."""
    task = TaskFactory()
    job = GenerationJobFactory(project=task.project, task=task)
    for g, answers in enumerate([["4"] * 4, ["4", "5", "4", "5"], ["9"] * 4]):
        example = ExampleFactory(task=task, external_id=f"ex-{g}", answer="4")
        for i, answer in enumerate(answers):
            RolloutFactory(project=task.project, task=task, example=example, job=job, group_key=f"group-{g}",
                           sample_index=i, completion=f"<answer>{answer}</answer>")
    RolloutFactory(project=task.project, task=task, job=None, group_key="group-x", error="context overflow")
    return task


def make_version(task, *criteria, **options):
    return RubricVersionFactory(rubric=RubricFactory(project=task.project, task=task),
                                spec={"criteria": list(criteria), **options})


def test_programmatic_rubric_needs_no_calls_and_finds_flat_groups(task):
    version = make_version(task, MATCH)
    job = dryrun.rubric_dry_run_create(project=task.project, version=version, task=task, enqueue=False)
    dryrun.rubric_dry_run_execute(job_id=job.pk)
    job.refresh_from_db()
    r = job.result
    assert job.status == JobStatus.SUCCEEDED
    assert (r["rollouts"], r["groups"], r["calls"], r["prompt_tokens"]) == (12, 3, 0, 0)
    assert (r["zero_variance_groups"], r["comparable_groups"]) == (2, 3)
    assert r["zero_variance_share"] == pytest.approx(2 / 3)
    rows = {g["group_key"]: g for g in r["group_rows"]}
    assert rows["group-1"]["totals"] == [1.0, 0.0, 1.0, 0.0] and not rows["group-1"]["zero_variance"]
    assert rows["group-2"]["zero_variance"] and rows["group-2"]["example"] == "ex-2"
    assert not CriterionScore.objects.exists() and not RolloutScore.objects.exists()


def test_judge_rubric_times_real_calls_and_counts_tokens(task):
    version = make_version(task, MATCH, JUDGE, CLEAR)
    with StubChatServer(latency_s=0.05) as server:
        endpoint = EndpointFactory(project=task.project, base_url=server.base_url, max_concurrency=4)
        job = dryrun.rubric_dry_run_create(project=task.project, version=version, task=task, endpoint=endpoint,
                                           groups=2, enqueue=False)
        dryrun.rubric_dry_run_execute(job_id=job.pk)
        requests = server.stats["requests"]
    job.refresh_from_db()
    r = job.result
    # 2 of 3 groups sampled, 8 rollouts, 2 judge calls each (one criterion per call); through the judge cache, so
    # identical completions of one example are one call: 3 distinct (example, completion) pairs x 2 criteria
    assert (r["sample_groups"], r["sample_rollouts"], r["scored_now"]) == (2, 8, 8) and requests == 6
    assert r["calls"] == 12 * 2 and r["calls_per_rollout"] == 2
    assert r["token_source"] == "characters / 4" and r["prompt_tokens_per_call"] > 50
    assert r["prompt_tokens"] == round(24 * r["prompt_tokens_per_call"])
    assert r["latency_ms_per_call"] >= 50 and r["latency_source"] == "measured on 6 judge calls now"
    assert r["seconds"] == pytest.approx(24 * r["latency_ms_per_call"] / 1000 / 4)
    # the stub judge answers "yes" to everything: only the match criterion separates rollouts
    assert r["comparable_groups"] == 2


def test_group_relative_rubric_counts_one_call_per_group_and_reuses_stored_totals(task):
    version = make_version(task, MATCH, JUDGE, judge={"group_relative": True, "max_criteria_per_call": 1})
    for rollout in task.rollouts.filter(group_key="group-0"):
        RolloutScore.objects.create(rollout=rollout, rubric_version=version, judge_fingerprint="x", total=0.5)
    with StubChatServer(latency_s=0.01) as server:
        endpoint = EndpointFactory(project=task.project, base_url=server.base_url)
        job = dryrun.rubric_dry_run_create(project=task.project, version=version, task=task, endpoint=endpoint,
                                           enqueue=False)
        dryrun.rubric_dry_run_execute(job_id=job.pk)
        requests = server.stats["requests"]
    job.refresh_from_db()
    r = job.result
    assert r["calls"] == 3 and r["group_relative"] and (r["stored_totals"], r["scored_now"]) == (4, 8)
    assert requests == 2  # one call per group not already scored
    assert {g["group_key"]: g["totals"] for g in r["group_rows"]}["group-0"] == [0.5] * 4


def test_stored_latencies_are_used_when_every_total_is_stored(task):
    version = make_version(task, JUDGE)
    endpoint = EndpointFactory(project=task.project)  # never called: nothing left to score
    for i, rollout in enumerate(task.rollouts.filter(error="")):
        RolloutScore.objects.create(rollout=rollout, rubric_version=version, judge_fingerprint="j", total=1.0)
        CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="polite",
                                      judge_fingerprint="j", score=1.0, latency_ms=100 + i * 10)
    job = dryrun.rubric_dry_run_create(project=task.project, version=version, task=task, endpoint=endpoint,
                                       enqueue=False)
    dryrun.rubric_dry_run_execute(job_id=job.pk)
    job.refresh_from_db()
    r = job.result
    assert r["scored_now"] == 0 and r["latency_source"] == "from 12 stored judge scores"
    assert r["latency_ms_per_call"] == pytest.approx(155) and r["zero_variance_share"] == 1.0


def test_bad_input(task):
    version = make_version(task, MATCH, JUDGE)
    empty_task = TaskFactory(project=task.project)
    cases = [
        ({}, "endpoint", "choose the judge endpoint"),
        ({"endpoint": EndpointFactory(project=task.project), "task": empty_task}, "task", "no rollouts yet"),
        ({"endpoint": EndpointFactory(project=task.project), "groups": 0}, "groups", "between 1 and 32"),
        ({"endpoint": EndpointFactory()}, "endpoint", "another project"),
        ({"task": TaskFactory()}, "task", "another project"),
    ]
    for changes, field, message in cases:
        kwargs = {"project": task.project, "version": version, "task": task, "enqueue": False, **changes}
        with pytest.raises(ApplicationError) as info:
            dryrun.rubric_dry_run_create(**kwargs)
        assert (info.value.field, message in info.value.message) == (field, True), info.value.message
    assert not RubricToolJob.objects.exists()


def test_dry_run_pages(client, make_member, task):
    user, _ = make_member(Role.EDITOR, task.project)
    client.force_login(user)
    version = make_version(task, MATCH)
    project = task.project
    page = client.get(reverse("rubrics:dryrun", args=[project.pk, version.pk])).content.decode()
    assert f'<option value="{task.pk}" selected>' in page
    response = client.post(reverse("rubrics:dryrun", args=[project.pk, version.pk]), {"task": task.pk, "groups": 8})
    job = RubricToolJob.objects.get()
    assert response["Location"] == reverse("rubrics:dryrun_job", args=[project.pk, job.pk])
    assert "hx-trigger" in client.get(response["Location"], HTTP_HX_REQUEST="true").content.decode()
    dryrun.rubric_dry_run_execute(job_id=job.pk)
    html = client.get(response["Location"]).content.decode()
    assert "67 %" in html and "2 of 3 sampled groups" in html and "zero variance" in html
    assert "none: every criterion is programmatic" in html and "hx-trigger" not in html
    bad = client.post(reverse("rubrics:dryrun", args=[project.pk, version.pk]),
                      {"task": TaskFactory(project=project).pk, "groups": 8})
    assert bad.status_code == 400 and "no rollouts yet" in bad.content.decode()


@pytest.mark.slow
def test_token_estimate_matches_a_real_judge_job_and_the_job_reuses_the_dry_runs_verdicts(task, bundled_model_dir):
    """The endpoint's real tokenizer: the dry run's estimate is within 10 % of the prompt tokens the real judge job
    then reports, and the job answers every call the dry run already made from the judge cache."""
    from webapp.endpoints.models import EndpointKind
    from webapp.judging import services as judging
    from webapp.judging.models import JudgeJob

    version = make_version(task, MATCH, JUDGE)
    endpoint = EndpointFactory(project=task.project, kind=EndpointKind.TRANSFORMERS, model="bundled", base_url="",
                               default_params={"max_tokens": 16})
    dry = dryrun.rubric_dry_run_create(project=task.project, version=version, task=task, endpoint=endpoint,
                                       groups=3, enqueue=False)
    dryrun.rubric_dry_run_execute(job_id=dry.pk)
    dry.refresh_from_db()
    estimate = dry.result
    assert dry.status == JobStatus.SUCCEEDED and estimate["token_source"] == "the endpoint's tokenizer"
    assert estimate["scored_now"] == 12 and estimate["calls"] == 12

    job = judging.judge_job_create(project=task.project, rubric_version=version, endpoint=endpoint,
                                   selection={"task": task.pk}, enqueue=False)
    for index in judging.judge_job_plan(job_id=job.pk):
        judging.judge_chunk_run(job_id=job.pk, index=index)
    job = JudgeJob.objects.get(pk=job.pk)
    assert job.status == JobStatus.SUCCEEDED and job.calls_made == 0 and job.cache_hits == 12
    reported = list(CriterionScore.objects.filter(job=job, criterion_key="polite").values_list("prompt_tokens", flat=True))
    assert len(reported) == 12 and all(reported)
    assert estimate["prompt_tokens"] == pytest.approx(sum(reported), rel=0.10)
