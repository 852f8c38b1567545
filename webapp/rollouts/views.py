from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.core.models import Project
from webapp.core.pagination import keyset_page, parse_cursor
from webapp.core.permissions import Action, project_view
from webapp.rollouts import selectors
from webapp.rollouts.forms import RolloutFilterForm


@require_GET
@project_view(Action.VIEW)
def rollout_list(request: HttpRequest, project: Project) -> HttpResponse:
    form = RolloutFilterForm(request.GET)
    filters = form.filters()
    page = keyset_page(selectors.rollout_browse(project, filters=filters), before=parse_cursor(request.GET.get("before")))
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "rubric_version_id": filters.get("rubric_version"),
        "tasks": project.tasks.order_by("name"),
        "versions": selectors.rubric_versions_with_scores(project)[:50],
        "jobs": selectors.generation_job_list(project)[:50],
    }
    template = "rollouts/rollout_list.html#results" if request.htmx else "rollouts/rollout_list.html"
    return render(request, template, context)


@require_GET
@project_view(Action.VIEW)
def rollout_detail(request: HttpRequest, project: Project, rollout_id: int) -> HttpResponse:
    rollout = selectors.rollout_get(project, rollout_id)
    context = {"rollout": rollout, "scores": selectors.rollout_scores(rollout), "rendered": request.GET.get("view") == "rendered"}
    return render(request, "rollouts/rollout_detail.html", context)


@require_GET
@project_view(Action.VIEW)
def rollout_group(request: HttpRequest, project: Project, group_key: str) -> HttpResponse:
    rollouts = selectors.rollout_group(project, group_key)
    if not rollouts:
        raise Http404("No such group.")
    criteria_keys = sorted({s.criterion_key for r in rollouts for s in r.criterion_scores.all()})
    context = {"rollouts": rollouts, "group_key": group_key, "first": rollouts[0], "criteria_keys": criteria_keys}
    return render(request, "rollouts/rollout_group.html", context)
