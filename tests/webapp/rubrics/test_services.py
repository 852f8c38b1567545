from __future__ import annotations

import json

import pytest
from django.urls import reverse

from tests.factories import RubricFactory
from webapp.core.errors import ApplicationError
from webapp.core.models import Role
from webapp.rubrics.services import rubric_version_create

JUDGED = {
    "criteria": [
        {"key": "helpful", "title": "Helpful", "kind": "judge", "weight": 1.0, "question": "Is the answer helpful?",
         "choices": [{"label": "no", "description": "not at all"}, {"label": "yes", "description": "fully"}]},
        {"key": "format", "title": "Tags", "kind": "format", "weight": 0.5, "check": "answer_tag"},
    ]
}


@pytest.mark.django_db
def test_versions_are_numbered_and_invalid_specs_report_the_field_path():
    rubric = RubricFactory()
    assert rubric_version_create(rubric=rubric, spec=JUDGED).number == 1
    assert rubric_version_create(rubric=rubric, spec=JUDGED, note="again").number == 2
    bad = {"criteria": [{"key": "x", "title": "X", "kind": "match", "mode": "regex", "pattern": "(a+"}]}
    with pytest.raises(ApplicationError) as error:
        rubric_version_create(rubric=rubric, spec=bad)
    assert error.value.field == "criteria.0.pattern"
    assert error.value.extra["errors"][0]["path"] == "criteria.0.pattern"
    zero = {"criteria": [{**JUDGED["criteria"][1], "weight": 0}]}
    with pytest.raises(ApplicationError, match="weight"):
        rubric_version_create(rubric=rubric, spec=zero)
    assert rubric.versions.count() == 2  # nothing half-written


@pytest.mark.django_db
def test_verifiers_criteria_file_download(client, make_member):
    user, project = make_member(Role.VIEWER)
    rubric = RubricFactory(project=project)
    version = rubric_version_create(rubric=rubric, spec=JUDGED)
    client.force_login(user)
    response = client.get(reverse("rubrics:verifiers", args=[project.pk, version.pk]))
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    criteria = json.loads(response.content)["criteria"]
    assert [c["name"] for c in criteria] == ["helpful"] and criteria[0]["choices"] == ["no", "yes"]
    outsider, _ = make_member(Role.OWNER)
    client.force_login(outsider)
    assert client.get(reverse("rubrics:verifiers", args=[project.pk, version.pk])).status_code == 404
