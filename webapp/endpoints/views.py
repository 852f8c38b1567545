from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.core.models import Project
from webapp.core.permissions import Action, project_view
from webapp.endpoints import selectors


@require_GET
@project_view(Action.VIEW)
def endpoint_list(request: HttpRequest, project: Project) -> HttpResponse:
    return render(request, "endpoints/endpoint_list.html", {"endpoints": selectors.endpoint_list(project)})
