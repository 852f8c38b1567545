from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.core.permissions import Action, project_view
from webapp.rubrics import selectors
from webapp.rubrics.services import rubric_spec_validate


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


@require_GET
@project_view(Action.VIEW)
def rubric_version_verifiers(request: HttpRequest, project: Project, version_id: int) -> HttpResponse:
    """The version's judge criteria as a verifiers v1 RubricJudge criteria file (JSON download)."""
    from training.rubrics.export import verifiers_criteria

    version = selectors.rubric_version_get(project, version_id)
    try:
        payload = verifiers_criteria(rubric_spec_validate(version.spec))
    except ValueError as error:
        raise ApplicationError(f"Cannot export to verifiers: {error}") from error
    response = JsonResponse(payload, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="rubric-{version.rubric_id}-v{version.number}-verifiers.json"'
    return response
