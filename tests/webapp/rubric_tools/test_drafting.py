"""AI-drafted rubrics: an LM behind a real local OpenAI-compatible server proposes criteria and checklists; the draft
is saved only on accept, all or nothing. Bad input: no task context, a model that is down, an unparseable answer."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from tests.factories import EndpointFactory, ExampleFactory, TaskFactory
from tests.support.judge_server import Reply, StubChatServer
from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Role
from webapp.rubric_tools import drafting
from webapp.rubrics.models import Rubric, RubricToolJob
from webapp.tasks.models import Example

pytestmark = pytest.mark.django_db

GOOD = json.dumps({
    "criteria": [
        {"title": "Correct final answer", "question": "Does the response give the reference answer?", "weight": 3},
        {"title": "Uses answer tags", "question": "Is the final answer inside <answer></answer> tags?", "weight": 1},
        {"title": "No extra text", "question": "Is there nothing but the answer?", "weight": 0.5},
    ],
    "checklists": {"ex-a": ["Answer is 19"], "ex-b": ["Answer is 12", "No extra text"]},
})


@pytest.fixture
def task():
    task = TaskFactory(instructions="Solve the arithmetic problem; answer inside <answer></answer> tags.")
    ExampleFactory(task=task, external_id="ex-a", prompt="What is 12 + 7?", answer="19")
    ExampleFactory(task=task, external_id="ex-b", prompt="What is 3 * 4?", answer="12")
    ExampleFactory(task=task, external_id="ex-eval", prompt="What is 1 + 1?", answer="2", split="eval")
    return task


def run_draft(task, responder, **kwargs):
    with StubChatServer(responder) as server:
        endpoint = EndpointFactory(project=task.project, base_url=server.base_url, name="Stub drafter")
        job = drafting.rubric_draft_create(project=task.project, task=task, endpoint=endpoint, enqueue=False, **kwargs)
        drafting.rubric_draft_execute(job_id=job.pk)
        drafting.rubric_draft_execute(job_id=job.pk)  # a redelivered message does nothing
        bodies = list(server.bodies)
    job.refresh_from_db()
    return job, bodies


def test_a_draft_proposes_criteria_and_checklists_and_saves_nothing(task):
    job, bodies = run_draft(task, lambda body, i: GOOD, examples=3)
    assert len(bodies) == 1
    prompt = bodies[0]["messages"][1]["content"]
    # train examples are shown first
    assert prompt.index("Example id ex-a") < prompt.index("Example id ex-b") < prompt.index("Example id ex-eval")
    assert "Reference answer: 19" in prompt and task.instructions in prompt
    assert job.status == JobStatus.SUCCEEDED and job.result["source"] == "json"
    assert [c["key"] for c in job.result["spec"]["criteria"]] == ["correct_final_answer", "uses_answer_tags",
                                                                  "no_extra_text"]
    assert job.result["spec"]["criteria"][0]["use_reference"] is True
    assert job.result["checklists"]["ex-b"] == ["Answer is 12", "No extra text"]
    assert not Rubric.objects.exists() and not Example.objects.exclude(checklist=[]).exists()


def test_accept_creates_the_rubric_and_stores_checklists_once(task):
    job, _ = run_draft(task, lambda body, i: GOOD, examples=2)
    ex_a, ex_b = Example.objects.get(external_id="ex-a"), Example.objects.get(external_id="ex-b")
    spec = job.result["spec"]
    spec["criteria"][1]["weight"] = 0.5  # the user edited the draft
    rubric = drafting.rubric_draft_accept(job=job, name="Arithmetic (drafted)", spec_json=json.dumps(spec),
                                          checklists={ex_a.pk: "- Answer is 19\n\n* Shows the sum\n",
                                                      ex_b.pk: "Answer is 12"})
    version = rubric.versions.get()
    assert rubric.task == task and version.number == 1 and version.note == "Drafted by Stub drafter"
    assert version.spec["criteria"][1]["weight"] == 0.5
    ex_a.refresh_from_db()
    assert ex_a.checklist == ["Answer is 19", "Shows the sum"] and ex_a.row_version == 2
    with pytest.raises(ApplicationError) as info:
        drafting.rubric_draft_accept(job=job, name="Again", spec_json=json.dumps(spec), checklists={})
    assert info.value.status == 409 and Rubric.objects.count() == 1


def test_accept_with_bad_input_writes_nothing(task):
    job, _ = run_draft(task, lambda body, i: GOOD, examples=2)
    ex_a = Example.objects.get(external_id="ex-a")
    bad_weights = {"criteria": [{**c, "weight": 0} for c in job.result["spec"]["criteria"]]}
    cases = [
        ("Name", "{not json", "spec_json", "not valid JSON"),
        ("Name", json.dumps(bad_weights), "criteria", "all weights are 0"),
        ("  ", json.dumps(job.result["spec"]), "name", "needs a name"),
    ]
    for name, spec_json, field, message in cases:
        with pytest.raises(ApplicationError) as info:
            drafting.rubric_draft_accept(job=job, name=name, spec_json=spec_json, checklists={ex_a.pk: "x"})
        assert info.value.field == field and message in info.value.message
    with pytest.raises(ApplicationError, match="at most 20 items"):
        drafting.rubric_draft_accept(job=job, name="N", spec_json=json.dumps(job.result["spec"]),
                                     checklists={ex_a.pk: "\n".join(f"item {i}" for i in range(21))})
    ex_a.refresh_from_db()
    assert not Rubric.objects.exists() and ex_a.checklist == [] and "rubric_id" not in job.result


def test_an_unparseable_answer_gives_an_editable_skeleton(task):
    job, _ = run_draft(task, lambda body, i: "Sure! A good answer is a good answer.")
    assert job.status == JobStatus.SUCCEEDED and job.result["source"] == "skeleton"
    assert any("starting skeleton" in note for note in job.result["notes"])
    assert job.result["raw"] == "Sure! A good answer is a good answer."
    assert len(job.result["spec"]["criteria"]) == 4


def test_a_model_that_is_down_fails_the_job_with_the_reason(task):
    job, _ = run_draft(task, lambda body, i: Reply(status=401, body={"error": {"message": "Incorrect API key"}}))
    assert job.status == JobStatus.FAILED
    assert "Incorrect API key" in job.error and "Test connection" in job.error


def test_create_refuses_bad_input(task):
    endpoint = EndpointFactory(project=task.project)
    empty = TaskFactory(project=task.project, instructions="")
    cases = [
        ({"task": empty}, "task", "nothing to go on"),
        ({"endpoint": EndpointFactory()}, "endpoint", "another project"),
        ({"task": TaskFactory()}, "task", "another project"),
        ({"examples": 9}, "examples", "between 0 and 8"),
        ({"max_tokens": 5}, "max_tokens", "between 32 and 4096"),
    ]
    for changes, field, message in cases:
        kwargs = {"project": task.project, "task": task, "endpoint": endpoint, "enqueue": False, **changes}
        with pytest.raises(ApplicationError) as info:
            drafting.rubric_draft_create(**kwargs)
        assert (info.value.field, message in info.value.message) == (field, True), info.value.message
    assert not RubricToolJob.objects.exists()


def test_draft_pages(client, make_member, task):
    user, _ = make_member(Role.EDITOR, task.project)
    client.force_login(user)
    project = task.project
    with StubChatServer(lambda body, i: GOOD) as server:
        endpoint = EndpointFactory(project=project, base_url=server.base_url)
        page = client.get(reverse("rubrics:draft", args=[project.pk]) + f"?task={task.pk}").content.decode()
        assert f'<option value="{task.pk}" selected>' in page
        response = client.post(reverse("rubrics:draft", args=[project.pk]),
                               {"task": task.pk, "endpoint": endpoint.pk, "examples": 2, "max_tokens": 200})
        job = RubricToolJob.objects.get()
        assert response["Location"] == reverse("rubrics:draft_job", args=[project.pk, job.pk])
        waiting = client.get(response["Location"], HTTP_HX_REQUEST="true").content.decode()
        assert "hx-trigger" in waiting and "writing the draft" in waiting
        drafting.rubric_draft_execute(job_id=job.pk)
    job.refresh_from_db()
    html = client.get(response["Location"]).content.decode()
    assert "Accept and create rubric" in html and "correct_final_answer" in html and "hx-trigger" not in html
    ex_b = Example.objects.get(external_id="ex-b")
    assert f'name="checklist_{ex_b.pk}"' in html and "No extra text" in html
    spec_json = json.dumps(job.result["spec"])
    bad = client.post(reverse("rubrics:draft_accept", args=[project.pk, job.pk]),
                      {"name": "", "spec_json": spec_json, f"checklist_{ex_b.pk}": "edited"})
    assert bad.status_code == 400 and "needs a name" in bad.content.decode() and "edited" in bad.content.decode()
    done = client.post(reverse("rubrics:draft_accept", args=[project.pk, job.pk]),
                       {"name": "Drafted", "spec_json": spec_json, f"checklist_{ex_b.pk}": "edited"})
    rubric = Rubric.objects.get(name="Drafted")
    assert done["Location"] == reverse("rubrics:edit", args=[project.pk, rubric.pk])
    assert Example.objects.get(pk=ex_b.pk).checklist == ["edited"]
    viewer, _ = make_member(Role.VIEWER, project)
    client.force_login(viewer)
    assert client.post(reverse("rubrics:draft", args=[project.pk]), {"task": task.pk}).status_code == 403
    assert client.post(reverse("rubrics:draft_accept", args=[project.pk, job.pk])).status_code == 403
