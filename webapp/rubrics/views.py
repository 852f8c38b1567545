from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.core.models import Project
from webapp.core.permissions import Action, project_view
from webapp.rubrics import selectors


@require_GET
@project_view(Action.VIEW)
def rubric_list(request: HttpRequest, project: Project) -> HttpResponse:
    return render(request, "rubrics/rubric_list.html", {"rubrics": selectors.rubric_list(project)})


@require_GET
@project_view(Action.VIEW)
def rubric_detail(request: HttpRequest, project: Project, rubric_id: int) -> HttpResponse:
    rubric = selectors.rubric_get(project, rubric_id)
    versions = list(selectors.rubric_versions(rubric))
    context = {"rubric": rubric, "versions": versions, "current": versions[0] if versions else None}
    return render(request, "rubrics/rubric_detail.html", context)
