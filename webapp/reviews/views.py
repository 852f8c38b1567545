from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.core.models import Project
from webapp.core.permissions import Action, project_view
from webapp.reviews import selectors


@require_GET
@project_view(Action.VIEW)
def queue_list(request: HttpRequest, project: Project) -> HttpResponse:
    return render(request, "reviews/queue_list.html", {"queues": selectors.queue_list(project)[:100]})
