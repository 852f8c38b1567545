"""Judge jobs: programmatic and LM-judge criteria, idempotent chunked writes, failures stored, cancel, resume."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse

from tests.factories import (
    EndpointFactory,
    ExampleFactory,
    ProjectFactory,
    RolloutFactory,
    RubricFactory,
    RubricVersionFactory,
    TaskFactory,
)
from tests.support.judge_server import Reply, StubChatServer
from webapp.core.errors import ApplicationError
from webapp.core.models import JobChunk, JobStatus, Role
from webapp.judging import services
from webapp.judging.models import CriterionScore, JudgeCache, JudgeJob, RolloutScore

ARITHMETIC = {
    "criteria": [
        {"key": "correct", "title": "Correct", "kind": "match", "weight": 1.0, "extract": "answer_tag", "mode": "numeric"},
        {"key": "format", "title": "Tags", "kind": "format", "weight": 0.25, "check": "answer_tag"},
    ],
    "gates": [{"criterion": "format", "below": 0.5}],
}
WITH_JUDGE = {
    "criteria": [
        *ARITHMETIC["criteria"],
        {"key": "clear", "title": "Clear", "kind": "judge", "weight": 0.5,
         "question": "Is the answer stated clearly?",
         "choices": [{"label": "no", "description": "unclear"}, {"label": "yes", "description": "clear"}]},
    ]
}


def run_inline(job: JudgeJob) -> JudgeJob:
    for index in services.judge_job_plan(job_id=job.pk):
        services.judge_chunk_run(job_id=job.pk, index=index)
    job.refresh_from_db()
    return job


@pytest.fixture
def arithmetic(db):
    task = TaskFactory()
    project = task.project
    example = ExampleFactory(task=task, prompt="What is 40 + 2?", answer="42")
    rollouts = [
        RolloutFactory(project=project, task=task, example=example, group_key="g", sample_index=i, completion=text)
        for i, text in enumerate(["<answer>42</answer>", "<answer>41</answer>", "It is 42", ""])
    ]
    rollouts[3].error = "generation timed out"
    rollouts[3].save()
    version = RubricVersionFactory(rubric=RubricFactory(project=project, task=task), spec=ARITHMETIC)
    return project, version, rollouts


@pytest.mark.django_db
def test_programmatic_job_scores_every_rollout_once_and_stores_failures(arithmetic):
    project, version, rollouts = arithmetic
    job = services.judge_job_create(project=project, rubric_version=version, enqueue=False)
    job = run_inline(job)
    assert job.status == JobStatus.SUCCEEDED and (job.done, job.total, job.failed_count) == (4, 4, 1)
    totals = {s.rollout_id: s for s in RolloutScore.objects.filter(rubric_version=version)}
    assert totals[rollouts[0].pk].total == pytest.approx(1.0)
    assert totals[rollouts[1].pk].total == pytest.approx(0.25 / 1.25)
    assert totals[rollouts[2].pk].total == 0 and totals[rollouts[2].pk].gated_by == "format"
    assert totals[rollouts[3].pk].total is None and "generation timed out" in totals[rollouts[3].pk].error
    missing_tag = CriterionScore.objects.get(rollout=rollouts[2], criterion_key="correct")
    assert missing_tag.score == 0 and missing_tag.raw_response  # the reason is kept

    # Running the same chunks again (a redelivery) writes nothing twice and counts nothing twice.
    for chunk in JobChunk.objects.filter(kind="judge", job_id=job.pk):
        assert services.judge_chunk_run(job_id=job.pk, index=chunk.index) == 0
    job.refresh_from_db()
    assert job.done == 4 and CriterionScore.objects.filter(rubric_version=version).count() == 6
    # A second job over the same rollouts updates the rows in place (unique per rollout × version × criterion × judge).
    run_inline(services.judge_job_create(project=project, rubric_version=version, enqueue=False))
    assert RolloutScore.objects.filter(rubric_version=version).count() == 4


@pytest.mark.django_db
def test_judge_criteria_need_an_endpoint_and_bad_selections_are_refused(arithmetic):
    project, version, _ = arithmetic
    judged = RubricVersionFactory(rubric=version.rubric, spec=WITH_JUDGE)
    with pytest.raises(ApplicationError, match="choose a judge endpoint"):
        services.judge_job_create(project=project, rubric_version=judged, enqueue=False)
    with pytest.raises(ApplicationError, match="No rollouts match"):
        services.judge_job_create(project=project, rubric_version=version, selection={"task": 999999}, enqueue=False)
    other = EndpointFactory()
    with pytest.raises(ApplicationError, match="another project"):
        services.judge_job_create(project=project, rubric_version=judged, endpoint=other, enqueue=False)


@pytest.mark.django_db
def test_lm_judge_through_a_real_http_server_with_cache_and_faults(arithmetic, settings):
    project, version, rollouts = arithmetic
    settings.RUBRICON_ENDPOINT_RETRY_BACKOFF_S = 0.01  # the same 5 retries, not ~12 s of backoff
    judged = RubricVersionFactory(rubric=version.rubric, spec=WITH_JUDGE)

    def responder(body, index):
        text = " ".join(str(m.get("content")) for m in body["messages"])
        if "It is 42" in text:
            return Reply(body="{not json")  # malformed body: this item must end failed with a reason
        return '{"verdicts": [{"key": "clear", "rationale": "states 42 plainly", "verdict": "yes"}]}'

    with StubChatServer(responder) as server:
        endpoint = EndpointFactory(project=project, base_url=server.base_url, supports_structured_output=False,
                                   default_params={"max_tokens": 64})
        job = run_inline(services.judge_job_create(project=project, rubric_version=judged, endpoint=endpoint, enqueue=False))
        first_calls = server.stats["requests"]
        assert job.status == JobStatus.SUCCEEDED and job.done == 4 and job.calls_made >= 3
        clear = {s.rollout_id: s for s in CriterionScore.objects.filter(rubric_version=judged, criterion_key="clear")}
        assert clear[rollouts[0].pk].score == 1.0 and clear[rollouts[0].pk].rationale == "states 42 plainly"
        assert clear[rollouts[0].pk].judge_fingerprint == job.judge_fingerprint != "programmatic"
        assert clear[rollouts[2].pk].score is None and clear[rollouts[2].pk].error
        assert CriterionScore.objects.get(rollout=rollouts[0], rubric_version=judged, criterion_key="correct").judge_fingerprint == "programmatic"
        assert JudgeCache.objects.count() >= 2

        # Re-judging identical inputs is answered from the cache: zero new calls for the parsed ones.
        again = run_inline(services.judge_job_create(project=project, rubric_version=judged, endpoint=endpoint, enqueue=False))
        # Only the item whose answer was malformed is asked again (with its retries); the rest come from the cache.
        assert again.cache_hits >= 2 and again.calls_made == 1
        assert server.stats["requests"] - first_calls >= 1


def separate_groups(rollouts) -> None:
    """Chunks never split a group: give each rollout its own, so small chunk sizes cut the job into several."""
    for i, rollout in enumerate(rollouts):
        rollout.group_key = f"alone-{i}"
        rollout.save(update_fields=["group_key"])


@pytest.mark.django_db
def test_cancel_stops_remaining_chunks_and_keeps_written_scores(arithmetic, settings):
    project, version, rollouts = arithmetic
    separate_groups(rollouts)
    settings.RUBRICON_JUDGE_CHUNK_SIZE = 2
    job = services.judge_job_create(project=project, rubric_version=version, enqueue=False)
    first, second = services.judge_job_plan(job_id=job.pk)
    services.judge_chunk_run(job_id=job.pk, index=first)
    assert services.judge_job_cancel(job=job)
    assert services.judge_chunk_run(job_id=job.pk, index=second) == 0
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.done == 2
    assert RolloutScore.objects.filter(job=job).count() == 2


@pytest.mark.django_db
def test_management_command_runs_the_same_job(arithmetic, capsys):
    project, version, _ = arithmetic
    call_command("judge", "--rubric-version", str(version.pk), "--inline")
    out = capsys.readouterr().out
    assert "succeeded" in out and "4/4 scored, 1 failed" in out


@pytest.mark.django_db
def test_judge_pages_and_permissions(client, arithmetic, make_member):
    project, version, _ = arithmetic
    viewer, _ = make_member(Role.VIEWER, project=project)
    editor, _ = make_member(Role.EDITOR, project=project)
    client.force_login(viewer)
    url = reverse("judging:create", args=[project.pk])
    assert client.post(url, {"rubric_version": version.pk}).status_code == 403
    client.force_login(editor)
    response = client.post(url, {"rubric_version": version.pk})
    job = JudgeJob.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/judging/{job.pk}/")
    page = client.get(response["Location"])
    assert page.status_code == 200 and b"every 1s" in page.content  # pending: the progress polls
    fragment = client.get(response["Location"], HTTP_HX_REQUEST="true")
    assert b'id="progress"' in fragment.content and b"<html" not in fragment.content
    assert client.post(reverse("judging:cancel", args=[project.pk, job.pk])).status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert client.get(reverse("judging:list", args=[project.pk])).status_code == 200


@pytest.mark.django_db
def test_score_with_this_rubric_preselects_the_version_and_task(client, arithmetic, make_member):
    project, version, _ = arithmetic
    older = RubricVersionFactory(rubric=version.rubric, number=version.number + 1, spec=ARITHMETIC)
    editor, _ = make_member(Role.EDITOR, project=project)
    client.force_login(editor)
    detail = client.get(reverse("rubrics:detail", args=[project.pk, version.rubric_id])).content.decode()
    link = f"?rubric_version={older.pk}&amp;task={version.rubric.task_id}"
    assert link in detail
    page = client.get(reverse("judging:list", args=[project.pk]),
                      {"rubric_version": older.pk, "task": version.rubric.task_id}).content.decode()
    assert f'<option value="{older.pk}" selected>' in page
    assert f'<option value="{version.rubric.task_id}" selected>' in page
    # A value that is not an id of this project selects nothing and breaks nothing.
    junk = client.get(reverse("judging:list", args=[project.pk]), {"rubric_version": "²", "task": "x"})
    body = junk.content.decode()
    assert junk.status_code == 200 and '<option value="" selected>' in body
    assert f'"{older.pk}" selected' not in body and f'"{version.pk}" selected' not in body


@pytest.mark.django_db
def test_resume_sends_only_chunks_no_live_worker_holds(arithmetic, settings, eager_celery):
    from django.db import transaction
    from django.utils import timezone

    from webapp.core.jobs import job_chunk_claim, job_chunk_claim_done

    project, version, rollouts = arithmetic
    separate_groups(rollouts)
    settings.RUBRICON_JUDGE_CHUNK_SIZE = 1
    job = services.judge_job_create(project=project, rubric_version=version, enqueue=False)
    assert services.judge_job_plan(job_id=job.pk) == [0, 1, 2, 3]
    job.refresh_from_db()
    chunks = JobChunk.objects.filter(kind="judge", job_id=job.pk)
    live = job_chunk_claim(kind="judge", job_id=job.pk, index=0)  # a worker that is running chunk 0
    dead = job_chunk_claim(kind="judge", job_id=job.pk, index=1)  # a worker that was killed in chunk 1 ...
    chunks.filter(index=1).update(lease_expires_at=timezone.now() - timezone.timedelta(seconds=1))  # ... lapsed

    # The periodic check: only the lapsed chunk runs again (here in-process: Celery is eager).
    assert services.judge_job_resume(job=job, lapsed_only=True) == 1
    assert set(chunks.filter(done=True).values_list("index", flat=True)) == {1}
    assert services.judge_job_resume(job=job, lapsed_only=True) == 0
    # A worker start also sends chunks never claimed (their messages may be lost), never the live one.
    assert services.judge_job_resume(job=job) == 2
    assert set(chunks.filter(done=True).values_list("index", flat=True)) == {1, 2, 3}
    # A second delivery of the live worker's chunk does nothing; the dead worker's late results are refused.
    assert services.judge_chunk_run(job_id=job.pk, index=0) == 0
    with transaction.atomic():
        assert not job_chunk_claim_done(lease=dead)
        assert job_chunk_claim_done(lease=live)
    assert RolloutScore.objects.filter(job=job).count() == 3


@pytest.mark.django_db
def test_the_cache_keeps_only_parsed_verdicts_and_never_serves_one_servers_answers_for_another(arithmetic):
    """Issue 17: a faulty server's unparseable replies were cached and served to a later job against a healthy
    server with the same model name; the re-run reported tokens for calls it never made."""
    project, version, rollouts = arithmetic
    judged = RubricVersionFactory(rubric=version.rubric, spec=WITH_JUDGE)
    good = '{"verdicts": [{"key": "clear", "rationale": "fine", "verdict": "yes"}]}'
    scorable = len([r for r in rollouts if not r.error])

    with StubChatServer(lambda body, index: "I'd rather not say.", model="same") as faulty, \
            StubChatServer(lambda body, index: good, model="same") as healthy:
        endpoints = {
            name: EndpointFactory(project=project, base_url=server.base_url, model="same", default_params={"max_tokens": 64},
                                  supports_structured_output=False)
            for name, server in (("faulty", faulty), ("healthy", healthy))
        }

        def judge(name: str) -> JudgeJob:
            return run_inline(services.judge_job_create(
                project=project, rubric_version=judged, endpoint=endpoints[name], enqueue=False))

        bad = judge("faulty")
        assert bad.calls_made == scorable == faulty.stats["requests"] and JudgeCache.objects.count() == 0
        assert bad.prompt_tokens == 10 * scorable  # the stub bills 10 prompt tokens a call
        # The healthy server is asked: nothing of the faulty one's is served, though model and prompt are the same.
        fine = judge("healthy")
        assert fine.calls_made == scorable == healthy.stats["requests"] and fine.cache_hits == 0
        assert fine.judge_fingerprint == bad.judge_fingerprint  # same judge for agreement statistics
        assert set(CriterionScore.objects.filter(job=fine, criterion_key="clear").values_list("score", flat=True)) == {1.0}
        # Asked again: all from the cache, and the job spends (and reports) no call and no token.
        again = judge("healthy")
        assert (again.calls_made, again.cache_hits, again.prompt_tokens, again.completion_tokens) == (0, scorable, 0, 0)
        assert healthy.stats["requests"] == scorable
        # The faulty server's garbage was never kept: asking it again makes the calls again.
        assert judge("faulty").calls_made == scorable == faulty.stats["requests"] - scorable


def test_a_cached_answer_that_does_not_parse_is_asked_again_and_replaced():
    """Caches filled before only verdicts were kept may hold garbage: the judge asks again instead of serving it."""
    import asyncio

    from training.judges.base import CachedJudge, InMemoryJudgeCache, JudgeCompletion, cache_key

    class Backend:
        fingerprint = "m|{}"
        supports_structured_output = False
        calls = 0

        async def complete(self, messages, *, json_schema=None):
            Backend.calls += 1
            return JudgeCompletion(text="yes")

    cache = InMemoryJudgeCache()
    judge = CachedJudge(Backend(), cache)
    messages = [{"role": "user", "content": "ok?"}]
    cache.put(cache_key(judge.cache_identity, messages, None), JudgeCompletion(text="garbage").to_cache())
    accept = lambda c: c.text == "yes"  # noqa: E731
    assert asyncio.run(judge.complete(messages, accept=accept)).text == "yes" and Backend.calls == 1
    assert asyncio.run(judge.complete(messages, accept=accept)).cached and Backend.calls == 1


@pytest.mark.django_db
def test_group_relative_judging_always_sees_whole_groups_across_chunks(settings):
    """Issue 17: with n = 7 and chunks of 64 a group was split, and one rollout judged alone."""
    import re

    task = TaskFactory()
    rollouts = []
    for group in range(10):
        example = ExampleFactory(task=task, prompt=f"What is {group} + 1?", answer=str(group + 1))
        rollouts += [RolloutFactory(project=task.project, task=task, example=example, group_key=f"g{group}",
                                    sample_index=i, completion=f"<answer>{group + 1}</answer> ({i})") for i in range(7)]
    spec = {**WITH_JUDGE, "judge": {"group_relative": True}}
    version = RubricVersionFactory(rubric=RubricFactory(project=task.project, task=task), spec=spec)
    settings.RUBRICON_JUDGE_CHUNK_SIZE = 64
    with StubChatServer() as server:
        endpoint = EndpointFactory(project=task.project, base_url=server.base_url)
        job = run_inline(services.judge_job_create(project=task.project, rubric_version=version, endpoint=endpoint,
                                                   enqueue=False))
    assert job.status == JobStatus.SUCCEEDED and job.done == 70 and job.failed_count == 0
    group_of = {r.pk: r.group_key for r in rollouts}
    for chunk in JobChunk.objects.filter(kind="judge", job_id=job.pk):
        groups = {group_of[pk] for pk in chunk.item_ids}
        assert sum(1 for r in rollouts if r.group_key in groups) == len(chunk.item_ids)
    asked = [re.search(r"rollouts 1 to (\d+)", str(body["messages"])) for body in server.bodies]
    assert [int(m.group(1)) if m else 1 for m in asked] == [7] * 10  # one call per group, each on all 7


@pytest.mark.django_db
def test_a_job_ends_succeeded_succeeded_with_failures_or_failed_and_the_pages_say_which(client, arithmetic, make_member):
    """Issue 17: a group-relative judge job whose items all failed ("no verdict") showed "succeeded"."""
    project, version, rollouts = arithmetic
    viewer, _ = make_member(Role.VIEWER, project=project)
    client.force_login(viewer)

    partly = run_inline(services.judge_job_create(project=project, rubric_version=version, enqueue=False))
    assert partly.status == JobStatus.SUCCEEDED and partly.failed_count == 1  # one rollout had failed to generate
    for url in (reverse("judging:detail", args=[project.pk, partly.pk]), reverse("judging:list", args=[project.pk])):
        assert "succeeded with 1 failed" in client.get(url).content.decode()

    group_judged = RubricVersionFactory(rubric=version.rubric, spec={**WITH_JUDGE, "judge": {"group_relative": True}})
    with StubChatServer(lambda body, index: "no verdict") as server:
        endpoint = EndpointFactory(project=project, base_url=server.base_url, supports_structured_output=False)
        failed = run_inline(services.judge_job_create(project=project, rubric_version=group_judged, endpoint=endpoint,
                                                      enqueue=False))
    assert failed.status == JobStatus.FAILED and failed.failed_count == failed.done == 4
    assert "All 4 items failed" in failed.error
    page = client.get(reverse("judging:detail", args=[project.pk, failed.pk])).content.decode()
    assert 'status-failed">failed<' in page and "succeeded" not in page


@pytest.mark.django_db
def test_answers_are_in_the_cache_when_a_caller_outside_a_job_ends_its_loop():
    """The DB judge cache buffers its writes; a caller that is not a judge chunk (dry run, preview, position check)
    never flushed it, so the last answers it paid for were lost when its event loop ended and the real job paid
    for them again. The judge itself stores them when its last call in flight ends."""
    from asgiref.sync import async_to_sync

    from webapp.judging.judges import judge_for_endpoint

    project = ProjectFactory()
    with StubChatServer(lambda body, index: "yes") as server:
        endpoint = EndpointFactory(project=project, base_url=server.base_url, supports_structured_output=False)
        judge = judge_for_endpoint(endpoint)

        async def ask() -> None:
            for question in ("one?", "two?", "three?"):
                await judge.complete([{"role": "user", "content": question}])

        async_to_sync(ask)()
        assert server.stats["requests"] == 3
        assert JudgeCache.objects.count() == 3
        again = judge_for_endpoint(endpoint)

        async def ask_again() -> None:
            await again.complete([{"role": "user", "content": "three?"}])

        async_to_sync(ask_again)()
        assert server.stats["requests"] == 3 and again.hits == 1


@pytest.mark.django_db
def test_the_postgresql_score_write_stores_what_the_orm_write_stores(arithmetic):
    """A chunk's scores go to PostgreSQL as arrays (INSERT … SELECT FROM unnest, on the Django connection's psycopg
    connection) and through bulk_create elsewhere (SQLite): the same rows either way, upserted in place on a re-run."""
    from django.db import connection

    project, version, rollouts = arithmetic
    assert connection.vendor == "postgresql"
    job = services.judge_job_create(project=project, rubric_version=version, enqueue=False)

    def rows(fp: str, round_: int) -> tuple[list[tuple], list[tuple]]:
        criteria = [
            (rollouts[0].pk, version.pk, "correct", fp, job.pk, "yes", 1.0, "right ✓", '{"verdicts": []}', 12, 7, 51,
             False, ""),
            (rollouts[1].pk, version.pk, "correct", fp, job.pk, "", None, "", "", None, None, None, True,
             f"judge call failed: HTTP 500 (round {round_})"),
            (rollouts[1].pk, version.pk, "format", fp, None, "", 0.25 * round_, "", "reason", None, None, 3, False, ""),
        ]
        totals = [(rollouts[0].pk, version.pk, fp, job.pk, 1.0, "", ""),
                  (rollouts[1].pk, version.pk, fp, job.pk, None, "", "unscored: correct"),
                  (rollouts[2].pk, version.pk, fp, None, 0.0, "format", "")]
        return criteria, totals

    def stored(fp: str) -> tuple[list[tuple], list[tuple]]:
        skip = {"id", "judge_fingerprint", "created_at"}
        score_fields = [f.attname for f in CriterionScore._meta.concrete_fields if f.attname not in skip]
        total_fields = [f.attname for f in RolloutScore._meta.concrete_fields if f.attname not in skip]
        return (sorted(CriterionScore.objects.filter(judge_fingerprint=fp).values_list(*score_fields)),
                sorted(RolloutScore.objects.filter(judge_fingerprint=fp).values_list(*total_fields)))

    def created(fp: str) -> list:
        return sorted(CriterionScore.objects.filter(judge_fingerprint=fp).values_list("pk", "created_at"))

    for round_ in (1, 2):  # the second round overwrites the first in place
        services._scores_write(*rows("fast", round_))
        services._scores_write_orm(*rows("orm", round_))
        fast, orm = stored("fast"), stored("orm")
        assert (len(fast[0]), len(fast[1])) == (3, 3)
        assert fast == orm
        assert any(f"round {round_}" in str(row) for row in fast[0])
        if round_ == 1:
            first = created("fast")
        else:
            assert created("fast") == first  # updated, not inserted again
