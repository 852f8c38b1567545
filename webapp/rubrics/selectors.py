from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Max, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from webapp.core.models import Project
from webapp.rubrics.models import Rubric, RubricVersion
from webapp.rubrics.specs import SpecDiff, spec_diff
from webapp.tasks.models import Task


def rubric_list(project: Project) -> QuerySet[Rubric]:
    return (
        project.rubrics.select_related("task")
        .annotate(version_count=Count("versions"), latest_number=Max("versions__number"))
        .order_by("name")
    )


def rubric_get(project: Project, rubric_id: int) -> Rubric:
    return get_object_or_404(Rubric.objects.select_related("task"), project=project, pk=rubric_id)


def rubric_versions(rubric: Rubric) -> QuerySet[RubricVersion]:
    return rubric.versions.select_related("author").order_by("-number")


def rubric_versions_of_project(project: Project) -> QuerySet[RubricVersion]:
    """Every rubric version of the project, newest first, with its rubric (pickers, filters, selections)."""
    return RubricVersion.objects.filter(rubric__project=project).select_related("rubric").order_by("-id")


def rubric_version_get(project: Project, version_id: int) -> RubricVersion:
    return get_object_or_404(rubric_versions_of_project(project), pk=version_id)


def rubric_latest_version(rubric: Rubric) -> RubricVersion | None:
    return rubric.versions.select_related("author").order_by("-number").first()


def rubric_version_by_number(rubric: Rubric, number: int) -> RubricVersion:
    return get_object_or_404(RubricVersion.objects.select_related("author", "rubric"), rubric=rubric, number=number)


def rubric_task_choices(project: Project) -> QuerySet[Task]:
    """Tasks a rubric can be written for (the editor's task select)."""
    return Task.objects.filter(project=project).only("id", "name").order_by("name")


@dataclass
class VersionComparison:
    old: RubricVersion
    new: RubricVersion
    diff: SpecDiff


def rubric_version_diff(rubric: Rubric, old_number: int, new_number: int) -> VersionComparison:
    """Two versions of a rubric (one query) and the diff of their specs, criteria matched by key."""
    versions = {v.number: v for v in rubric.versions.select_related("author").filter(number__in=[old_number, new_number])}
    if old_number not in versions or new_number not in versions:
        raise Http404("No such version of this rubric.")
    old, new = versions[old_number], versions[new_number]
    return VersionComparison(old, new, spec_diff(old.spec, new.spec))


def rubrics_project_counts(project: Project) -> dict[str, int]:
    """This app's headline numbers on the project overview (registered with core in apps.py)."""
    return {
        "rubrics": Rubric.objects.filter(project=project).count(),
    }
