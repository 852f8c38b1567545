"""Live preview ("try it"): programmatic criteria in the request, judge criteria through the preview job against a
real local OpenAI-compatible server (tests.support.judge_server), errors from issue 5's "bad input" list."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import (
    EndpointFactory,
    ExampleFactory,
    RolloutFactory,
    RubricFactory,
    RubricVersionFactory,
    TaskFactory,
)
from tests.support.judge_server import Reply, StubChatServer
from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Role
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.rubric_tools import jobs, preview
from webapp.rubrics.models import RubricToolJob

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}

PROGRAMMATIC = {"criteria": [
    {"key": "correct", "title": "Correct", "kind": "match", "weight": 3.0, "extract": "answer_tag", "mode": "numeric"},
    {"key": "tagged", "title": "Uses answer tags", "kind": "format", "weight": 1.0, "check": "answer_tag"},
]}
WITH_JUDGE = {"criteria": [
    *PROGRAMMATIC["criteria"],
    {"key": "polite", "title": "Polite", "kind": "judge", "weight": 1.0, "question": "Is the answer polite?",
     "choices": [{"label": "no"}, {"label": "yes"}]},
]}


@pytest.fixture
def setup():
    task = TaskFactory()
    example = ExampleFactory(task=task, prompt="What is 2 + 2?", answer="4")
    right = RolloutFactory(project=task.project, task=task, example=example, completion="<answer>4</answer>")
    wrong = RolloutFactory(project=task.project, task=task, example=example, completion="It is 5")
    rubric = RubricFactory(project=task.project, task=task)
    return task.project, task, rubric, right, wrong


def test_programmatic_criteria_score_in_the_request_and_write_no_scores(setup):
    project, task, rubric, right, wrong = setup
    version = RubricVersionFactory(rubric=rubric, spec=PROGRAMMATIC)
    job = preview.rubric_preview_create(project=project, spec=version.spec, version=version,
                                        rollout_ids=[wrong.pk, right.pk], completion="<answer>4.0</answer>",
                                        enqueue=False)
    assert job.status == JobStatus.SUCCEEDED and job.task == task
    shown = preview.preview_rows(job)
    assert [c["label"] for c in shown["cards"]] == [f"Rollout #{right.pk}", f"Rollout #{wrong.pk}", "Pasted completion"]
    right_card, wrong_card, pasted = shown["cards"]
    assert right_card["total"] == 1.0 and wrong_card["total"] == 0.0
    assert [row["share"] for row in right_card["rows"]] == [0.75, 0.25]
    assert "extraction failed" in wrong_card["rows"][0]["result"]["reason"]
    # A pasted completion has no example: "numeric" against a missing reference cannot be scored.
    assert pasted["rows"][0]["result"]["score"] is None and pasted["total"] is None
    assert not CriterionScore.objects.exists() and not RolloutScore.objects.exists()


def test_pasted_completion_with_reference_and_unsaved_spec(setup):
    project, *_ = setup
    job = preview.rubric_preview_create(project=project, spec=PROGRAMMATIC, completion="<answer>12</answer>",
                                        reference="12", enqueue=False)
    card = preview.preview_rows(job)["cards"][0]
    assert job.rubric_version is None and card["total"] == 1.0 and card["reference"] == "12"


def test_bad_input_is_refused_with_a_message_at_its_field(setup):
    project, task, rubric, right, _ = setup
    other = RolloutFactory()
    cases = [
        ({"spec": PROGRAMMATIC}, "rollouts", "Choose at least one rollout or paste a completion"),
        ({"spec": PROGRAMMATIC, "completion": "   "}, "rollouts", "Choose at least one rollout"),
        ({"spec": PROGRAMMATIC, "rollout_ids": [other.pk]}, "rollouts", "do not exist in this project"),
        ({"spec": PROGRAMMATIC, "rollout_ids": list(range(1, 11))}, "rollouts", "at most 8"),
        ({"spec": WITH_JUDGE, "rollout_ids": [right.pk]}, "endpoint", "choose a judge endpoint"),
        ({"spec": {"criteria": [{**PROGRAMMATIC["criteria"][0], "weight": 0}]}, "completion": "x"},
         "criteria", "all weights are 0"),
        ({"spec": {"criteria": [{"key": "q", "title": "Q", "kind": "judge", "question": "{{ completion",
                                 "choices": [{"label": "no"}, {"label": "yes"}]}]}, "completion": "x"},
         "criteria.0.question", "template syntax error"),
        ({"spec": PROGRAMMATIC, "completion": "x", "endpoint": EndpointFactory()}, "endpoint", "another project"),
    ]
    for kwargs, field, message in cases:
        with pytest.raises(ApplicationError) as info:
            preview.rubric_preview_create(project=project, enqueue=False, **kwargs)
        assert info.value.field == field and message in info.value.message, (kwargs, info.value.message)
    assert not RubricToolJob.objects.exists()
    with pytest.raises(ApplicationError) as info:
        preview.spec_from_json('{"criteria": [')
    assert info.value.field == "spec_json" and "not valid JSON" in info.value.message


def test_judge_criteria_run_through_the_preview_job_with_rationales(setup):
    project, task, rubric, right, wrong = setup
    version = RubricVersionFactory(rubric=rubric, spec=WITH_JUDGE)
    with StubChatServer(latency_s=0.02) as server:
        endpoint = EndpointFactory(project=project, base_url=server.base_url)
        job = preview.rubric_preview_create(project=project, spec=version.spec, version=version,
                                            rollout_ids=[right.pk, wrong.pk], endpoint=endpoint, enqueue=False)
        waiting = preview.preview_rows(job)
        assert job.status == JobStatus.PENDING and waiting["waiting"]
        # Programmatic cells are already there; judge cells wait, totals too.
        assert [r["pending"] for r in waiting["cards"][0]["rows"]] == [False, False, True]
        assert waiting["cards"][0]["has_total"] is False
        preview.rubric_preview_execute(job_id=job.pk)
        preview.rubric_preview_execute(job_id=job.pk)  # a redelivered message does nothing
        assert server.stats["requests"] == 2
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    cards = preview.preview_rows(job)["cards"]
    polite = cards[0]["rows"][2]["result"]
    assert polite["score"] == 1.0 and polite["choice"] == "yes" and polite["rationale"] == "stub judge"
    assert cards[0]["total"] == 1.0 and cards[1]["total"] == pytest.approx(0.2)
    assert not CriterionScore.objects.exists()


def test_a_judge_that_is_down_shows_the_reason_per_criterion(setup):
    project, task, rubric, right, _ = setup
    with StubChatServer(lambda body, i: Reply(status=401, body={"error": {"message": "bad key"}})) as server:
        endpoint = EndpointFactory(project=project, base_url=server.base_url)
        job = preview.rubric_preview_create(project=project, spec=WITH_JUDGE, rollout_ids=[right.pk],
                                            endpoint=endpoint, enqueue=False)
        preview.rubric_preview_execute(job_id=job.pk)
    job.refresh_from_db()
    shown = preview.preview_rows(job)
    row = shown["cards"][0]["rows"][2]
    assert job.status == JobStatus.SUCCEEDED and shown["judge_errors"] == 1
    assert row["result"]["score"] is None and "bad key" in row["result"]["error"]
    assert shown["cards"][0]["total"] is None and "unscored: polite" in shown["cards"][0]["reason"]


# --- views ------------------------------------------------------------------------------------------------------


@pytest.fixture
def editor_client(client, make_member, setup):
    project = setup[0]
    user, _ = make_member(Role.EDITOR, project)
    client.force_login(user)
    return client


def test_preview_page_and_htmx_run(editor_client, setup):
    project, task, rubric, right, wrong = setup
    version = RubricVersionFactory(rubric=rubric, spec=PROGRAMMATIC)
    page = editor_client.get(reverse("rubrics:preview", args=[project.pk, version.pk])).content.decode()
    assert f'value="{right.pk}"' in page and "Judge endpoint" not in page
    run = reverse("rubrics:preview_run", args=[project.pk])
    html = editor_client.post(run, {"version": version.pk, "rollouts": [right.pk]}, **HTMX).content.decode()
    assert html.lstrip().startswith('<div id="preview-result"') and "<strong>1.000</strong>" in html
    assert "hx-trigger" not in html  # nothing to wait for
    empty = editor_client.post(run, {"version": version.pk}, **HTMX)
    assert empty.status_code == 400 and "Choose at least one rollout" in empty.content.decode()
    # without JavaScript: a redirect to the preview's own page
    response = editor_client.post(run, {"version": version.pk, "completion": "<answer>4</answer>", "reference": "4"})
    job = RubricToolJob.objects.latest("pk")
    assert response["Location"] == reverse("rubrics:preview_job", args=[project.pk, job.pk])
    assert "Pasted completion" in editor_client.get(response["Location"]).content.decode()


def test_unsaved_spec_from_the_editor(editor_client, setup):
    project, task, *_ = setup
    import json

    page = editor_client.post(reverse("rubrics:preview_spec", args=[project.pk]),
                              {"spec_json": json.dumps(PROGRAMMATIC), "task": task.pk}).content.decode()
    assert "unsaved rubric" in page and "&quot;correct&quot;" in page
    run = reverse("rubrics:preview_run", args=[project.pk])
    bad = editor_client.post(run, {"spec_json": "{oops", "completion": "x", "task": task.pk}, **HTMX)
    assert bad.status_code == 400 and "not valid JSON" in bad.content.decode()
    ok = editor_client.post(run, {"spec_json": json.dumps(PROGRAMMATIC), "completion": "<answer>3</answer>",
                                  "reference": "3", "task": task.pk}, **HTMX)
    assert ok.status_code == 200 and "<strong>1.000</strong>" in ok.content.decode()


def test_judge_preview_polls_until_done(editor_client, setup):
    project, task, rubric, right, _ = setup
    version = RubricVersionFactory(rubric=rubric, spec=WITH_JUDGE)
    endpoint = EndpointFactory(project=project)
    html = editor_client.post(reverse("rubrics:preview_run", args=[project.pk]),
                              {"version": version.pk, "rollouts": [right.pk], "endpoint": endpoint.pk},
                              **HTMX).content.decode()
    job = RubricToolJob.objects.get()
    poll = reverse("rubrics:preview_job", args=[project.pk, job.pk])
    assert f'hx-get="{poll}"' in html and "judging…" in html and "waiting for the judge" in html


def test_readers_cannot_run_previews(client, make_member, setup):
    project, task, rubric, right, _ = setup
    version = RubricVersionFactory(rubric=rubric, spec=PROGRAMMATIC)
    user, _ = make_member(Role.VIEWER, project)
    client.force_login(user)
    assert client.get(reverse("rubrics:preview", args=[project.pk, version.pk])).status_code == 403
    response = client.post(reverse("rubrics:preview_run", args=[project.pk]), {"version": version.pk,
                                                                               "rollouts": [right.pk]})
    assert response.status_code == 403 and not RubricToolJob.objects.exists()
    outsider = RubricVersionFactory()
    client.force_login(make_member(Role.EDITOR)[0])
    assert client.get(reverse("rubrics:preview", args=[project.pk, outsider.pk])).status_code == 404



def test_preview_page_query_count_does_not_grow_with_rollouts(editor_client, setup, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    project, task, rubric, right, _ = setup
    version = RubricVersionFactory(rubric=rubric, spec=PROGRAMMATIC)
    url = reverse("rubrics:preview", args=[project.pk, version.pk])
    with CaptureQueriesContext(connection) as few:
        editor_client.get(url)
    for _ in range(10):
        RolloutFactory(project=project, task=task, example=ExampleFactory(task=task))
    with django_assert_max_num_queries(len(few)):
        page = editor_client.get(url).content.decode()
    assert page.count('name="rollouts"') == 12


def test_try_this_spec_posts_the_editors_own_fields(editor_client, setup):
    """The editor's "Try this spec" button posts its form (field paths, no spec_json) to the preview."""
    project, task, *_ = setup
    fields = {"name": "draft", "task": task.pk, "criteria.0.kind": "format", "criteria.0.key": "tagged",
              "criteria.0.title": "Uses answer tags", "criteria.0.weight": "1", "criteria.0.check": "answer_tag"}
    page = editor_client.post(reverse("rubrics:preview_spec", args=[project.pk]), fields).content.decode()
    assert "unsaved rubric" in page and "&quot;tagged&quot;" in page and "&quot;answer_tag&quot;" in page


def test_a_job_whose_worker_died_fails_after_the_timeout_instead_of_polling_forever(editor_client, setup, settings):
    project, task, rubric, right, _ = setup
    version = RubricVersionFactory(rubric=rubric, spec=WITH_JUDGE)
    endpoint = EndpointFactory(project=project)
    job = preview.rubric_preview_create(project=project, spec=version.spec, version=version, rollout_ids=[right.pk],
                                        endpoint=endpoint, enqueue=False)
    jobs.tool_job_claim(job_id=job.pk, kind=RubricToolJob.Kind.PREVIEW)  # a worker took it, then was killed
    page = reverse("rubrics:preview_job", args=[project.pk, job.pk])
    assert "hx-trigger" in editor_client.get(page, **HTMX).content.decode()  # still polling
    settings.RUBRICON_TOOL_JOB_TIMEOUT_S = 0
    html = editor_client.get(page, **HTMX).content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "worker" in job.error
    assert "hx-trigger" not in html and "No result after" in html
