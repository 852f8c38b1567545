"""The new-queue form names tasks, generation jobs, runs and rubric versions (no ids to type), only the project's,
and the queue page shows its selection by name."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.factories import GenerationJobFactory, ProjectFactory, RubricVersionFactory, TaskFactory
from webapp.reviews.models import ReviewQueue
from webapp.rollouts.models import Rollout

pytestmark = pytest.mark.django_db


def options(html: str, name: str) -> dict[str, str]:
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert select, f"no select named {name}"
    return dict(re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select.group(1)))


def test_selection_is_picked_by_name_and_shown_by_name(client, review_setup):
    s = review_setup
    project, task = s["project"], s["rollouts"][0].task
    job = GenerationJobFactory(project=project, task=task, model_name="qwen2.5-7b")
    Rollout.objects.filter(pk__in=[r.pk for r in s["rollouts"][:6]]).update(job=job)
    foreign_task = TaskFactory(project=ProjectFactory(), name="not mine")
    v2 = RubricVersionFactory(rubric=s["version"].rubric, number=2, spec=s["version"].spec)
    url = reverse("reviews:create", args=[project.pk])
    client.force_login(s["editor"])
    html = client.get(url, {"job": job.pk}).content.decode()
    assert not re.search(r'<input[^>]*name="(task|job|run)"', html)
    assert options(html, "task")[str(task.pk)] == task.name and str(foreign_task.pk) not in options(html, "task")
    assert f"generation #{job.pk} · {task.name} · qwen2.5-7b" in options(html, "job")[str(job.pk)]
    assert re.search(rf'<option value="{job.pk}" selected', html)  # a link from the rollout browser preselects
    versions = options(html, "rubric_version")
    assert versions[str(v2.pk)] == f"{v2.rubric.name} v2" and list(versions)[1] == str(v2.pk)  # newest first
    assert "run" in re.findall(r'<select name="(\w+)"', html)

    form = {"name": "By job", "rubric_version": s["version"].pk, "strategy": "random", "mode": "criteria",
            "size": 20, "seed": 0, "reviewers_per_item": 1, "reservation_minutes": 5}
    refused = client.post(url, {**form, "task": foreign_task.pk})
    assert refused.status_code == 400 and "Select a valid choice" in refused.content.decode()
    assert client.post(url, {**form, "job": job.pk}).status_code == 302
    queue = ReviewQueue.objects.get(name="By job")
    assert queue.items.count() == 6 and queue.rubric_version == s["version"]
    page = client.get(reverse("reviews:detail", args=[project.pk, queue.pk])).content.decode()
    assert f"job: generation #{job.pk} · {task.name}" in page and "{&#x27;job&#x27;" not in page


@pytest.mark.parametrize("value", ["²", "-3", "1e999", "99999999999999999999999", "abc", "0"])
def test_a_hostile_preselected_value_is_a_plain_form_not_a_500(client, review_setup, value):
    s = review_setup
    client.force_login(s["editor"])
    response = client.get(reverse("reviews:create", args=[s["project"].pk]), {"task": value, "rubric_version": value})
    assert response.status_code in (200, 400)
