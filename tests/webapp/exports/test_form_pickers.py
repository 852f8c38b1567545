"""The export and import forms name tasks, jobs, runs and rubric versions ("Rubric name vN") instead of asking for
database ids, keep only the filters the chosen kind reads, and the export list shows its filters by name."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.factories import (
    GenerationJobFactory,
    MembershipFactory,
    ProjectFactory,
    RubricFactory,
    RubricVersionFactory,
    TaskFactory,
    UserFactory,
)
from webapp.core.models import Role
from webapp.exports.models import Export
from webapp.exports.services import export_create
from webapp.runs.models import TrainingRun


def editor_of(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=Role.EDITOR)
    return user


def options(html: str, name: str) -> dict[str, str]:
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert select, f"no select named {name}"
    return dict(re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select.group(1)))


@pytest.mark.django_db
def test_rubric_versions_are_picked_by_name_and_number_not_by_row_id(client, scored):
    project = scored["project"]
    rubric = scored["version"].rubric
    # Rows of other rubrics and other projects make "v2" of this rubric a different row id than 2.
    other = RubricFactory(project=ProjectFactory(), name="elsewhere")
    RubricVersionFactory(rubric=other, number=1)
    v2 = RubricVersionFactory(rubric=rubric, number=2, spec=scored["version"].spec)
    client.force_login(editor_of(project))
    html = client.get(reverse("exports:list", args=[project.pk])).content.decode()
    versions = options(html, "rubric_version")
    assert versions[str(v2.pk)] == f"{rubric.name} v2"
    assert versions[str(scored["version"].pk)] == f"{rubric.name} v1"
    assert "elsewhere v1" not in versions.values()  # choices are limited to the project
    assert list(versions)[1] == str(v2.pk)  # newest first
    tasks = options(html, "task")
    assert tasks[str(scored["task"].pk)] == scored["task"].name
    # The import form names them too.
    assert options(html, "rubric_version") and 'name="task" type="number"' not in html
    assert not re.search(r'<input[^>]*name="(task|job|run|rubric_version)"', html)

    response = client.post(reverse("exports:create", args=[project.pk]),
                           {"kind": "sft", "format": "jsonl", "rubric_version": v2.pk})
    assert response.status_code == 302
    assert Export.objects.get(project=project).filters["rubric_version"] == v2.pk
    # Another project's version is not a choice: refused with the field named, nothing created.
    foreign = RubricVersionFactory(rubric=other, number=2)
    refused = client.post(reverse("exports:create", args=[project.pk]),
                          {"kind": "sft", "format": "jsonl", "rubric_version": foreign.pk})
    assert refused.status_code == 400 and b"Select a valid choice" in refused.content
    assert Export.objects.filter(project=project).count() == 1


@pytest.mark.django_db
def test_jobs_and_runs_are_named_and_the_list_shows_filters_by_name(client, scored):
    project = scored["project"]
    job = GenerationJobFactory(project=project, task=scored["task"], model_name="smol-135m")
    run = TrainingRun.objects.create(project=project, name="grpo-arith-1", task=scored["task"],
                                     rubric_version=scored["version"], base_model="bundled")
    client.force_login(editor_of(project))
    html = client.get(reverse("exports:list", args=[project.pk])).content.decode()
    assert f"generation #{job.pk} · {scored['task'].name} · smol-135m" in options(html, "job")[str(job.pk)]
    assert options(html, "run")[str(run.pk)] == "grpo-arith-1"

    export_create(project=project, kind="rollouts", format="jsonl", enqueue=False,
                  filters={"task": scored["task"].pk, "rubric_version": scored["version"].pk, "run": run.pk})
    html = client.get(reverse("exports:list", args=[project.pk])).content.decode()
    row = re.search(r'<tr id="export-\d+">(.*?)</tr>', html, re.S).group(1)
    assert f"task: {scored['task'].name}" in row
    assert f"rubric version: {scored['version'].rubric.name} v1" in row
    assert "run: grpo-arith-1" in row
    assert f"task={scored['task'].pk}" not in row


@pytest.mark.django_db
def test_only_the_filters_of_the_chosen_kind_are_kept(client, scored):
    project = scored["project"]
    client.force_login(editor_of(project))
    url = reverse("exports:create", args=[project.pk])
    # A rollouts export does not read threshold, margin or preference source: ignored, even when not a number.
    response = client.post(url, {"kind": "rollouts", "format": "jsonl", "rubric_version": scored["version"].pk,
                                 "threshold": "0.7", "margin": "abc", "preference_source": "labels"})
    assert response.status_code == 302
    assert Export.objects.get(project=project).filters == {"rubric_version": scored["version"].pk}
    # Preferences read margin and the preference source, not the SFT threshold.
    client.post(url, {"kind": "preferences", "format": "jsonl", "rubric_version": scored["version"].pk,
                      "threshold": "0.7", "margin": "0.2", "preference_source": "reward"})
    assert Export.objects.filter(project=project).latest("id").filters == {
        "rubric_version": scored["version"].pk, "margin": 0.2, "preference_source": "reward"}
    # A field the kind reads is still checked.
    bad = client.post(url, {"kind": "sft", "format": "jsonl", "rubric_version": scored["version"].pk,
                            "threshold": "abc"})
    assert bad.status_code == 400 and b"Enter a number" in bad.content
    # The page tells the browser which kinds read each such field (static/js/export-form.js hides the others).
    html = client.get(reverse("exports:list", args=[project.pk])).content.decode()
    assert re.search(r'name="threshold"[^>]*data-export-kinds="sft"|data-export-kinds="sft"[^>]*name="threshold"',
                     html)
    assert "js/export-form.js" in html


@pytest.mark.django_db
def test_a_long_history_stays_one_select_newest_first_and_keeps_an_older_choice(client):
    from webapp.rollouts.pickers import PICKER_LIMIT, picker_choices

    project = ProjectFactory()
    tasks = TaskFactory.create_batch(PICKER_LIMIT + 3, project=project)
    choices = picker_choices(project=project, name="task")
    assert len(choices) == PICKER_LIMIT and choices[0][0] == tasks[-1].pk
    kept = picker_choices(project=project, name="task", include=[str(tasks[0].pk)])
    assert kept[-1] == (tasks[0].pk, tasks[0].name)
