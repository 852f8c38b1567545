from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import RolloutFactory, RubricFactory, TaskFactory, UserFactory
from webapp.core.errors import ApplicationError, ConflictError
from webapp.core.models import Role
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.reviews.models import HumanLabel
from webapp.rubrics import selectors
from webapp.rubrics.models import Rubric, RubricVersion
from webapp.rubrics.services import (
    rubric_create,
    rubric_editor_errors,
    rubric_update,
    rubric_version_create,
    rubric_version_restore,
)

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


# --- editor saves, stale edits, restore, immutability -----------------------------------------------------------

V2 = {"criteria": [{**JUDGED["criteria"][0], "weight": 2.0},
                   {"key": "short", "title": "Short", "kind": "length", "max": 300}]}


def edit(rubric, spec, *, base, note="", name=None, author=None):
    return rubric_update(rubric=rubric, name=name or rubric.name, description=rubric.description, task=rubric.task,
                         spec=spec, author=author, note=note, base_number=base)


@pytest.mark.django_db
def test_create_reports_name_and_spec_problems_together_and_writes_nothing():
    taken = RubricFactory(name="Taken")
    bad = {"criteria": [{"key": "x", "title": "X", "kind": "match", "mode": "regex", "pattern": "(a+"}]}
    with pytest.raises(ApplicationError) as error:
        rubric_create(project=taken.project, name="Taken", spec=bad)
    paths = [e["path"] for e in error.value.extra["errors"]]
    assert paths == ["name", "criteria.0.pattern"] and error.value.field == "name"
    other_task = TaskFactory()
    with pytest.raises(ApplicationError) as error:
        rubric_create(project=taken.project, name="New", spec=JUDGED, task=other_task)
    assert error.value.field == "task"
    assert Rubric.objects.filter(project=taken.project).count() == 1 and RubricVersion.objects.count() == 0


@pytest.mark.django_db
def test_update_makes_a_new_version_only_when_the_spec_changes_and_defaults_the_note():
    author = UserFactory()
    rubric = rubric_create(project=TaskFactory().project, name="R", spec=JUDGED, author=author)
    assert rubric.versions.get().note == "Initial version"
    v2 = edit(rubric, V2, base=1, author=author)
    assert v2.number == 2 and v2.author == author
    assert v2.note == "Edited: changed helpful (weight); removed format; added short"
    assert edit(rubric, V2, base=2, name="Renamed") is None  # details only: no new version
    rubric.refresh_from_db()
    assert rubric.name == "Renamed" and rubric.versions.count() == 2
    assert edit(rubric, JUDGED, base=2, note="  back  ").note == "back"


@pytest.mark.django_db
def test_a_stale_edit_is_refused_with_409_and_nothing_is_written():
    rubric = rubric_create(project=TaskFactory().project, name="R", spec=JUDGED)
    edit(rubric, V2, base=1)  # somebody else saves v2
    with pytest.raises(ConflictError) as error:
        edit(rubric, {"criteria": [JUDGED["criteria"][1]]}, base=1, name="Mine")
    assert error.value.status == 409 and error.value.extra["current"] == {"number": 2, "base": 1}
    assert "v2 was saved by someone after you opened v1" in error.value.message
    rubric.refresh_from_db()
    assert rubric.name == "R" and rubric.versions.count() == 2
    with pytest.raises(ConflictError):  # the API path refuses the same way when given a base
        rubric_version_create(rubric=rubric, spec=JUDGED, base_number=1)


@pytest.mark.django_db
def test_an_invalid_edit_writes_nothing_not_even_the_details():
    rubric = rubric_create(project=TaskFactory().project, name="R", spec=JUDGED)
    with pytest.raises(ApplicationError) as error:
        edit(rubric, {"criteria": [{**JUDGED["criteria"][1], "weight": 0}]}, base=1, name="Other")
    assert error.value.extra["errors"] == [
        {"path": "criteria", "message": "all weights are 0; give at least one criterion a weight > 0"}]
    rubric.refresh_from_db()
    assert rubric.name == "R" and rubric.versions.count() == 1


@pytest.mark.django_db
def test_editor_errors_name_the_field_of_each_bad_input():
    rubric = RubricFactory()
    spec = {"criteria": [
        {"key": "q", "title": "Q", "kind": "judge", "question": "Is {{ completion.upper( }} ok?",
         "choices": [{"label": "no"}, {"label": "yes"}]},
        {"key": "j", "title": "J", "kind": "json", "schema": {"type": "objekt"}},
        {"key": "m", "title": "M", "kind": "match", "mode": "regex", "pattern": "(?<=x)y"},
    ]}
    errors = {e["path"]: e["message"] for e in rubric_editor_errors(
        project=rubric.project, rubric=None, name=rubric.name, task=None, spec=spec)}
    assert errors["name"].startswith("A rubric named")
    assert errors["criteria.0.question"].startswith("template syntax error on line 1")
    assert errors["criteria.1.schema"].startswith("invalid JSON Schema at type")
    assert "RE2 syntax" in errors["criteria.2.pattern"]
    # editing the rubric itself keeps its own name
    assert "name" not in {e["path"] for e in rubric_editor_errors(
        project=rubric.project, rubric=rubric, name=rubric.name, task=None, spec=JUDGED)}


@pytest.mark.django_db
def test_edits_and_restores_never_touch_old_versions_or_their_scores_and_labels():
    rubric = rubric_create(project=TaskFactory().project, name="R", spec=JUDGED)
    v1 = rubric.versions.get()
    rollout = RolloutFactory(project=rubric.project)
    annotator = UserFactory()
    score = CriterionScore.objects.create(rollout=rollout, rubric_version=v1, criterion_key="helpful",
                                          judge_fingerprint="judge-a", raw_choice="yes", score=1.0)
    total = RolloutScore.objects.create(rollout=rollout, rubric_version=v1, judge_fingerprint="judge-a", total=1.0)
    label = HumanLabel.objects.create(rollout=rollout, rubric_version=v1, criterion_key="helpful",
                                      annotator=annotator, choice="no", value=0.0)
    before = RubricVersion.objects.values().get(pk=v1.pk)
    with CaptureQueriesContext(connection) as queries:
        edit(rubric, V2, base=1)
        v3 = rubric_version_restore(version=v1)
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("UPDATE", "DELETE"))]
    assert not any("rubrics_rubricversion" in sql for sql in writes)
    assert v3.number == 3 and v3.spec == v1.spec and v3.note == "Restored from v1"
    assert RubricVersion.objects.values().get(pk=v1.pk) == before
    assert CriterionScore.objects.get(pk=score.pk).rubric_version_id == v1.pk
    assert RolloutScore.objects.get(pk=total.pk).rubric_version_id == v1.pk
    label_now = HumanLabel.objects.get(pk=label.pk)
    assert (label_now.rubric_version_id, label_now.choice, label_now.row_version) == (v1.pk, "no", 1)
    with pytest.raises(ApplicationError, match="v3 is already the latest version"):
        rubric_version_restore(version=v3)


@pytest.mark.django_db
def test_version_diff_selector_uses_one_query(django_assert_num_queries):
    rubric = rubric_create(project=TaskFactory().project, name="R", spec=JUDGED)
    edit(rubric, V2, base=1)
    with django_assert_num_queries(1):
        comparison = selectors.rubric_version_diff(rubric, 1, 2)
    assert (comparison.old.number, comparison.new.number) == (1, 2)
    assert [(c.key, c.status) for c in comparison.diff.criteria] == [
        ("helpful", "changed"), ("format", "removed"), ("short", "added")]


@pytest.mark.django_db
def test_rubric_list_selector_query_count_does_not_grow(django_assert_num_queries):
    project = TaskFactory().project
    for i in range(5):
        rubric_create(project=project, name=f"R{i}", spec=JUDGED, task=TaskFactory(project=project))
    with django_assert_num_queries(1):
        rows = [(r.name, r.task.name, r.version_count, r.latest_number) for r in selectors.rubric_list(project)]
    assert len(rows) == 5 and rows[0][2:] == (1, 1)
