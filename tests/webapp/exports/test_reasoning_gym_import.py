"""reasoning-gym as a task source in the app: a task generated from a page, the API and `manage.py import`, scored
by a judge job (our rubric scoring) with the dataset's own score_answer, compared with reasoning-gym itself."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, ProjectFactory, RolloutFactory, UserFactory
from tests.support.requires import installed
from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Role
from webapp.exports.sources import reasoning_gym_import
from webapp.judging import services as judging
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.tasks.models import Task

pytestmark = installed("reasoning_gym")


def member(project, role):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=role)
    return user


@pytest.mark.django_db
@pytest.mark.parametrize("dataset", ["basic_arithmetic", "chain_sum"])
def test_generated_task_scores_like_reasoning_gym_through_a_judge_job(dataset):
    project = ProjectFactory()
    result = reasoning_gym_import(project=project, dataset=dataset, size=4, seed=7, eval_size=1)
    task = result.task
    import reasoning_gym

    own = reasoning_gym.create_dataset(dataset, size=4, seed=7)
    examples = list(task.examples.order_by("external_id"))
    assert [(e.prompt, e.answer) for e in examples] == [(own[i]["question"], own[i]["answer"]) for i in range(4)]
    assert [e.split for e in examples] == ["train", "train", "train", "eval"]
    assert "<answer>" in task.system_prompt
    version = result.rubric.versions.get()
    expected = {}
    for i, example in enumerate(examples):
        for answer in (own[i]["answer"], str(int(own[i]["answer"]) + 5)):
            rollout = RolloutFactory(project=project, task=task, example=example,
                                     completion=f"Let me think. <answer>{answer}</answer>")
            expected[rollout.pk] = own.score_answer(answer, own[i])
    assert sorted(set(expected.values())) == [0.0, 1.0]  # a correct and an incorrect answer per example
    job = judging.judge_job_create(project=project, rubric_version=version, enqueue=False)
    for index in judging.judge_job_plan(job_id=job.pk):
        judging.judge_chunk_run(job_id=job.pk, index=index)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    scores = dict(CriterionScore.objects.filter(rubric_version=version, criterion_key="rg_score")
                  .values_list("rollout_id", "score"))
    assert scores == expected
    assert dict(RolloutScore.objects.filter(rubric_version=version).values_list("rollout_id", "total")) == expected


@pytest.mark.django_db
def test_bad_input_creates_nothing():
    project = ProjectFactory()
    for kwargs, field in (({"dataset": "nope"}, "dataset"), ({"config": {"bogus": 1}}, "config"),
                          ({"eval_size": 9}, "eval_size")):
        with pytest.raises(ApplicationError) as refused:
            reasoning_gym_import(project=project, **{"dataset": "chain_sum", "size": 3, "seed": 1, **kwargs})
        assert refused.value.field == field
    assert not Task.objects.filter(project=project).exists()


@pytest.mark.django_db
def test_page_generates_a_task(client):
    project = ProjectFactory()
    url = reverse("exports:reasoning_gym", args=[project.pk])
    client.force_login(member(project, Role.VIEWER))
    assert client.post(url, {"dataset": "chain_sum", "size": 3, "seed": 1}).status_code == 403
    client.force_login(member(project, Role.EDITOR))
    page = client.get(reverse("exports:list", args=[project.pk]))
    form_url = reverse("exports:reasoning_gym_form", args=[project.pk])
    assert b"Tasks from reasoning-gym" in page.content and f'hx-get="{form_url}"'.encode() in page.content
    assert b'value="chain_sum"' in client.get(form_url).content
    bad = client.post(url, {"dataset": "chain_sum", "size": 3, "seed": 1, "config": '{"bogus": 2}'})
    assert bad.status_code == 400 and b"bogus" in bad.content
    response = client.post(url, {"dataset": "chain_sum", "size": 3, "seed": 1, "task_name": "sums",
                                 "with_rubric": "on", "config": '{"min_terms": 2, "max_terms": 2}'})
    task = Task.objects.get(project=project, name="sums")
    assert response.status_code == 302 and response.url == reverse("tasks:detail", args=[project.pk, task.pk])
    assert task.examples.count() == 3 and task.rubrics.count() == 1
    assert all(e.info["reasoning_gym"]["entry"]["metadata"]["num_terms"] == 2 for e in task.examples.all())


CHILD = """
import sys, django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
from django.contrib.auth import get_user_model
setup_test_environment()
client = Client()
client.force_login(get_user_model().objects.get(pk=int(sys.argv[1])))
status = client.get(sys.argv[2]).status_code
print(status, "reasoning_gym" in sys.modules)
"""


@pytest.mark.django_db(transaction=True)
def test_the_exports_page_does_not_wait_for_reasoning_gym():
    """Importing reasoning-gym (every dataset module) takes seconds on the first request of each web process: the
    page loads its form afterwards, in a fragment. Run in a fresh process, where nothing imported it yet."""
    import os
    import subprocess
    import sys

    from django.db import connection

    from tests.conftest import REPO_ROOT

    project = ProjectFactory()
    user = member(project, Role.EDITOR)
    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings.test",
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}

    def fresh_process_get(url: str) -> str:
        done = subprocess.run([sys.executable, "-c", CHILD, str(user.pk), url], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.split("\n")[-2]

    assert fresh_process_get(reverse("exports:list", args=[project.pk])) == "200 False"
    assert fresh_process_get(reverse("exports:reasoning_gym_form", args=[project.pk])) == "200 True"


@pytest.mark.django_db
def test_api_generates_a_task():
    project = ProjectFactory()
    api = APIClient()
    api.force_authenticate(member(project, Role.EDITOR))
    url = f"/api/v1/projects/{project.pk}/tasks/reasoning-gym/"
    created = api.post(url, {"dataset": "basic_arithmetic", "size": 5, "seed": 3, "with_rubric": False},
                       format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["examples"] == 5 and body["rubric"] is None
    assert Task.objects.get(pk=body["task"]).examples.count() == 5
    refused = api.post(url, {"dataset": "nope", "size": 5, "seed": 3}, format="json")
    assert refused.status_code == 400


@pytest.mark.django_db
def test_manage_py_import_generates_a_task():
    project = ProjectFactory()
    out = io.StringIO()
    call_command("import", "chain_sum", "--kind", "reasoning_gym", "--project", str(project.pk), "--size", "4",
                 "--seed", "11", "--task-name", "shell sums", stdout=out)
    assert "Generated 4 examples into task 'shell sums'" in out.getvalue()
    task = Task.objects.get(project=project, name="shell sums")
    import reasoning_gym

    own = reasoning_gym.create_dataset("chain_sum", size=4, seed=11)
    assert sorted(task.examples.values_list("answer", flat=True)) == sorted(own[i]["answer"] for i in range(4))
    with pytest.raises(CommandError, match="No reasoning-gym dataset"):
        call_command("import", "nope", "--kind", "reasoning_gym", "--project", str(project.pk))
