from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.core.models import Project
from webapp.core.pagination import keyset_page, parse_cursor
from webapp.core.permissions import Action, project_view
from webapp.tasks import selectors
from webapp.tasks.models import Split


@require_GET
@project_view(Action.VIEW)
def task_list(request: HttpRequest, project: Project) -> HttpResponse:
    return render(request, "tasks/task_list.html", {"tasks": selectors.task_list(project)})


@require_GET
@project_view(Action.VIEW)
def task_detail(request: HttpRequest, project: Project, task_id: int) -> HttpResponse:
    task = selectors.task_get(project, task_id)
    split = request.GET.get("split") if request.GET.get("split") in Split.values else None
    page = keyset_page(selectors.example_list(task, split=split), before=parse_cursor(request.GET.get("before")))
    context = {"task": task, "page": page, "split": split or "", "splits": Split.choices}
    template = "tasks/task_detail.html#examples" if request.htmx else "tasks/task_detail.html"
    return render(request, template, context)
