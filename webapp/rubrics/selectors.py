from __future__ import annotations

from django.db.models import Count, Max, QuerySet
from django.shortcuts import get_object_or_404

from webapp.core.models import Project
from webapp.rubrics.models import Rubric, RubricVersion


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


def rubric_version_get(project: Project, version_id: int) -> RubricVersion:
    return get_object_or_404(RubricVersion.objects.select_related("rubric"), rubric__project=project, pk=version_id)
