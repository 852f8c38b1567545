"""One rollout filter: the browser's form, an export's filters and the API's query string select the same rollouts
for the same filter values (all three go through webapp.rollouts.selectors.rollout_filter)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import (
    GenerationJobFactory,
    RolloutFactory,
    RubricVersionFactory,
    TaskFactory,
    UserFactory,
)
from webapp.core.models import Role
from webapp.exports.selectors import export_filters_clean, rollout_selection
from webapp.judging.models import RolloutScore
from webapp.reviews.models import HumanLabel

LABEL_STATUS = {"yes": "labeled", "no": "unlabeled"}


def browser_ids(client, project, filters: dict) -> set[int]:
    page = client.get(reverse("rollouts:list", args=[project.pk]), filters).content.decode()
    return {int(x) for x in re.findall(r'rollouts/(\d+)/">', page)}


def export_ids(project, filters: dict) -> set[int]:
    raw = dict(filters)
    if "labeled" in raw:
        raw["label_status"] = LABEL_STATUS[raw.pop("labeled")]
    return set(rollout_selection(project, export_filters_clean(raw)).values_list("pk", flat=True))


def api_ids(api, project, filters: dict) -> set[int]:
    params = dict(filters)
    if "labeled" in params:
        params["label_status"] = LABEL_STATUS[params.pop("labeled")]
    body = api.get(f"/api/v1/projects/{project.pk}/rollouts/", {**params, "page_size": 100}).json()
    assert body.get("next") is None
    return {r["id"] for r in body["results"]}


@pytest.mark.django_db
def test_browser_exports_and_api_select_the_same_rollouts(client, make_member):
    user, project = make_member(Role.VIEWER)
    client.force_login(user)
    api = APIClient()
    api.force_authenticate(user)
    task_a, task_b = TaskFactory(project=project), TaskFactory(project=project)
    job = GenerationJobFactory(project=project, task=task_a)
    version = RubricVersionFactory(rubric__project=project)
    other_version = RubricVersionFactory(rubric__project=project)
    rows = [  # task, job, model, source, completion, total under `version`, labeled under `version`
        (task_a, job, "m1", "generation", "the answer is 42", 0.9, True),
        (task_a, job, "m1", "generation", "I think 42", 0.5, False),
        (task_a, job, "m2", "generation", "no idea", 0.2, True),
        (task_b, None, "m2", "import", "forty-two", 0.6, False),
        (task_b, None, "m1", "training", "42, surely", 0.35, True),
        (task_b, None, "m2", "import", "pass", 0.75, False),
    ]
    rollouts = []
    annotator = UserFactory()
    for task, gen_job, model, source, completion, total, labeled in rows:
        rollout = RolloutFactory(project=project, task=task, job=gen_job, model_name=model, source=source,
                                 completion=completion)
        RolloutScore.objects.create(rollout=rollout, rubric_version=version, judge_fingerprint="programmatic",
                                    total=total)
        # Another version's totals must not move the bounds of `version`.
        RolloutScore.objects.create(rollout=rollout, rubric_version=other_version, judge_fingerprint="programmatic",
                                    total=1 - total)
        if labeled:
            HumanLabel.objects.create(rollout=rollout, rubric_version=version, criterion_key="correct",
                                      annotator=annotator, value=1)
        rollouts.append(rollout.pk)
    r = rollouts
    cases = [
        ({"task": task_a.pk}, {r[0], r[1], r[2]}),
        ({"job": job.pk}, {r[0], r[1], r[2]}),
        ({"model": "m2"}, {r[2], r[3], r[5]}),
        ({"source": "import"}, {r[3], r[5]}),
        ({"rubric_version": version.pk, "score_min": 0.3, "score_max": 0.8}, {r[1], r[3], r[4], r[5]}),
        ({"rubric_version": version.pk, "labeled": "yes"}, {r[0], r[2], r[4]}),
        ({"rubric_version": version.pk, "labeled": "no"}, {r[1], r[3], r[5]}),
        ({"q": "42"}, {r[0], r[1], r[4]}),
        ({"task": task_b.pk, "model": "m2", "rubric_version": version.pk, "score_min": 0.5, "labeled": "no",
          "q": "a"}, {r[5]}),
        ({"task": task_a.pk, "source": "generation", "rubric_version": version.pk, "score_max": 0.6, "q": "42"},
         {r[1]}),
    ]
    for filters, expected in cases:
        assert browser_ids(client, project, filters) == expected, filters
        assert export_ids(project, filters) == expected, filters
        assert api_ids(api, project, filters) == expected, filters
