from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.core.models import Project
from webapp.core.pagination import keyset_page, parse_cursor
from webapp.core.permissions import Action, project_view
from webapp.rollouts import selectors


@require_GET
@project_view(Action.VIEW)
def rollout_list(request: HttpRequest, project: Project) -> HttpResponse:
    task_id = parse_cursor(request.GET.get("task"))
    job_id = parse_cursor(request.GET.get("job"))
    rollouts = selectors.rollout_list(project, task_id=task_id, job_id=job_id)
    page = keyset_page(rollouts, before=parse_cursor(request.GET.get("before")))
    context = {"page": page, "jobs": selectors.generation_job_list(project)[:10], "task_id": task_id, "job_id": job_id}
    return render(request, "rollouts/rollout_list.html", context)


@require_GET
@project_view(Action.VIEW)
def rollout_detail(request: HttpRequest, project: Project, rollout_id: int) -> HttpResponse:
    return render(request, "rollouts/rollout_detail.html", {"rollout": selectors.rollout_get(project, rollout_id)})
